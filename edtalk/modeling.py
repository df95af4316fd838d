"""The model core: one way to save and load every model of the package.

A model class mixes in :class:`PretrainedModel` and gets

- ``save_pretrained(folder)``: ``model.safetensors`` + ``config.json`` = ``{"model_type": ...,
  **init arguments}``, the init arguments as JSON (config dataclasses as their fields), so
  ``cls(**arguments)`` rebuilds the architecture;
- ``from_pretrained(path)``: `path` may be a saved folder, an official-format ``.pt`` file, a
  folder holding models (a checkpoint directory) or a training run / its ``export/``
  (:func:`edtalk.checkpoints.locate_model` decides which); eval mode, strict weights;
- ``from_official(path or state dict)``: the class's reader from :mod:`edtalk.convert`, if any.

Folders saved before this schema keep loading: their config.json had the config's fields at the
top level (no ``"config"`` entry); :meth:`PretrainedModel.arguments_from_saved` reads them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple

import torch

from .checkpoints import load_state_dict_strict, locate_model, read_saved_folder, write_saved_folder
from .errors import CheckpointError

__all__ = ["PretrainedModel", "config_to_dict", "config_from_dict"]

Reader = Callable[[Any], Tuple[dict, Dict[str, torch.Tensor]]]


def config_to_dict(config) -> dict:
    """A config dataclass as JSON-ready fields (its `model_type` field, if any, is left out:
    config.json names the type once)."""
    data = dataclasses.asdict(config)
    data.pop("model_type", None)
    return data


def config_from_dict(config_class, data: dict):
    """`config_class(**data)`; unknown fields are one clear error, a `model_type` entry is ignored."""
    if not isinstance(data, dict):
        raise ValueError(f"{config_class.__name__} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(data) - names - {"model_type"}
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} fields: {sorted(unknown)}")
    return config_class(**{k: v for k, v in data.items() if k in names and k != "model_type"})


class PretrainedModel:
    """Mixin for ``torch.nn.Module`` models (see the module docstring).

    Subclasses set `model_type`, `label` (used in errors), `config_classes` (init argument →
    config dataclass), optionally `default_names` (how the model is named in a checkpoint folder
    or a run's export/) and `official_reader`; they override :meth:`init_arguments` when their
    constructor takes more than `config`.
    """

    model_type: ClassVar[str]
    label: ClassVar[str] = "model"
    config_classes: ClassVar[Dict[str, type]] = {}
    default_names: ClassVar[Tuple[str, ...]] = ()
    official_reader: ClassVar[Optional[Reader]] = None
    missing_hint: ClassVar[str] = ""  # appended to "not found" errors (how to get one)

    # ------------------------------------------------------------------ the schema

    def init_arguments(self) -> Dict[str, Any]:
        """The constructor's keyword arguments that rebuild this architecture."""
        return {"config": self.config}

    @classmethod
    def from_init_arguments(cls, arguments: Dict[str, Any]):
        kwargs = {name: config_from_dict(cls.config_classes[name], value) if name in cls.config_classes else value
                  for name, value in arguments.items()}
        return cls(**kwargs)

    @classmethod
    def arguments_from_saved(cls, data: dict, tensors: Dict[str, torch.Tensor]) -> Dict[str, Any]:
        """Init arguments from a config.json: today's schema, or the older flat one (the config's
        fields beside `model_type`).  Subclasses fill in arguments older folders lack."""
        arguments = {k: v for k, v in data.items() if k != "model_type"}
        if "config" not in arguments:
            arguments = {"config": arguments}
        return arguments

    # ------------------------------------------------------------------ saving / loading

    def save_pretrained(self, directory) -> Path:
        """`directory/model.safetensors` + `directory/config.json`; returns the folder."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        arguments = {name: config_to_dict(value) if dataclasses.is_dataclass(value) else value
                     for name, value in self.init_arguments().items()}
        return write_saved_folder(directory, self.model_type, arguments, tensors)

    @classmethod
    def from_pretrained(cls, path, device=None, prefer_official: bool = False):
        """The model at `path` (a saved folder, an official `.pt`, a checkpoint folder, a run or its
        export/), in eval mode on `device` (CPU by default)."""
        location = locate_model(path, cls.model_type, cls.default_names, prefer_official, cls.label, cls.missing_hint)
        if location.official:
            return cls.from_official(location.path, device)
        data, tensors = read_saved_folder(location.path, cls.model_type, cls.label)
        return cls._assemble(cls.arguments_from_saved(data, tensors), tensors, device, location.path)

    @classmethod
    def from_official(cls, path_or_state_dict, device=None):
        """An official-format checkpoint (a path or its loaded dict), read by `official_reader`."""
        reader = cls.official_reader
        if reader is None:
            raise CheckpointError(f"{path_or_state_dict if not isinstance(path_or_state_dict, dict) else 'that dict'}: "
                                  f"a {cls.label} has no official .pt format; pass a saved model folder")
        arguments, state_dict = reader(path_or_state_dict)
        return cls._assemble(arguments, state_dict, device, "checkpoint")

    @classmethod
    def _assemble(cls, arguments: dict, state_dict: Dict[str, torch.Tensor], device, source):
        try:
            model = cls.from_init_arguments(arguments)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: its config does not describe a valid {cls.__name__} ({exc})") from None
        load_state_dict_strict(model, state_dict, cls.label)
        return model.to(device or "cpu").eval()
