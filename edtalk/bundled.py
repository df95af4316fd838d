"""The project's own SynthTalk-trained model and the inputs it ships with, and what `python demo.py`
(no arguments) runs.

    bundled_model_dir()   checkpoints/synthtalk of the repository ($EDTALK_BUNDLED_MODEL overrides): the
                          folder `scripts/train_synthtalk_model.py --out` writes (EDTalk.pt or EDTalk/,
                          Audio2Lip.pt or Audio2Lip/, pose_flow/, presets/, ...)
    bundled_inputs()      examples/synthtalk_face.png + examples/synthtalk_speech.wav
                          (scripts/make_synthtalk_examples.py writes them)
    default_demo(out)     the `edtalk generate` arguments of the no-argument demo: the released weights
                          ($EDTALK_CHECKPOINTS, else checkpoints/) on the bundled photo when they are there,
                          else the bundled model on the bundled SynthTalk face and speech, else one error
    own_inputs_demo(args) `python demo.py --source ... --audio ...`: the same choice of weights for the
                          user's own inputs (a one-line notice when it falls back to the bundled model)
    is_synthtalk_model(folder)  a model folder trained on SynthTalk (it knows cartoon faces only)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, NamedTuple, Optional

from .errors import CheckpointError

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "examples"
BUNDLED_MODEL_ENV = "EDTALK_BUNDLED_MODEL"
RELEASED_WEIGHTS_ENV = "EDTALK_CHECKPOINTS"
RELEASED_DEMO_FILES = ("EDTalk.pt", "Audio2Lip.pt")  # what the released-weights demo below needs
DEMO_OUT = "results/demo.mp4"
DEMO_PRESET = "happy"


class BundledInputs(NamedTuple):
    face: Path  # one 64x64 SynthTalk frame of an identity in no training tree
    speech: Path  # 4 s of SynthTalk speech, 16 kHz mono


class BundledModel(NamedTuple):
    folder: Path
    generator: Path  # EDTalk.pt (official format) or EDTalk/ (model.safetensors + config.json)
    audio2lip: Path  # Audio2Lip.pt or Audio2Lip/
    presets: Path


class DemoPlan(NamedTuple):
    argv: List[str]  # for edtalk.cli.main
    notice: str  # the one line saying which weights and inputs the demo uses


def bundled_model_dir() -> Path:
    return Path(os.environ.get(BUNDLED_MODEL_ENV) or REPO_ROOT / "checkpoints" / "synthtalk")


def bundled_inputs() -> BundledInputs:
    return BundledInputs(EXAMPLES_DIR / "synthtalk_face.png", EXAMPLES_DIR / "synthtalk_speech.wav")


def released_weights_dir() -> Path:
    """Where `edtalk download` puts the authors' weights (the `edtalk generate` default)."""
    return Path(os.environ.get(RELEASED_WEIGHTS_ENV) or "checkpoints")


def released_weights_present(folder: Path) -> bool:
    return all((folder / name).is_file() for name in RELEASED_DEMO_FILES)


def _model_part(folder: Path, name: str) -> Optional[Path]:
    from .checkpoints import find_model

    found = find_model(folder, "", (f"{name}.pt", name), named_only=True)  # the official file or a saved folder
    return found.path if found is not None else None


def _missing_bundled_parts(folder: Path) -> List[str]:
    needed = {"EDTalk.pt (or EDTalk/)": _model_part(folder, "EDTalk"),
              "Audio2Lip.pt (or Audio2Lip/)": _model_part(folder, "Audio2Lip"),
              "pose_flow/": (folder / "pose_flow" / "config.json").is_file() or None,
              f"presets/{DEMO_PRESET}.npy": (folder / "presets" / f"{DEMO_PRESET}.npy").is_file() or None}
    return [name for name, found in needed.items() if not found]


def find_bundled_model(folder: Optional[Path] = None) -> Optional[BundledModel]:
    """The bundled model when its folder holds every part the demo uses; None when the folder is absent.
    A folder that lacks a part is one CheckpointError naming what is missing."""
    folder = Path(folder) if folder is not None else bundled_model_dir()
    if not folder.is_dir():
        return None
    missing = _missing_bundled_parts(folder)
    if missing:
        raise CheckpointError(f"the bundled SynthTalk model in {folder} is incomplete: missing {', '.join(missing)}")
    return BundledModel(folder, _model_part(folder, "EDTalk"), _model_part(folder, "Audio2Lip"), folder / "presets")


def released_demo(weights: Path, out: str) -> DemoPlan:
    """The README demo: released weights, the bundled photo, speech, pose video and a preset."""
    argv = ["generate", "--checkpoint-dir", str(weights), "--source", str(EXAMPLES_DIR / "source_full.png"),
            "--audio", str(EXAMPLES_DIR / "speech.wav"), "--pose", str(EXAMPLES_DIR / "pose.mp4"),
            "--exp", DEMO_PRESET, "--out", out]
    return DemoPlan(argv, f"demo: released EDTalk weights in {weights}/ on examples/source_full.png")


def bundled_demo(model: BundledModel, out: str, released: Path) -> DemoPlan:
    """The bundled model on the bundled SynthTalk face: mouth from the speech, the face's own head pose.
    (The bundled pose flow learned the wide head turns of its training tree: `--pose audio` swings the
    head far, so the first thing a newcomer sees keeps it still.)"""
    inputs = bundled_inputs()
    argv = ["generate", "--checkpoint", str(model.generator), "--audio2lip-checkpoint", str(model.audio2lip),
            "--checkpoint-dir", str(model.folder), "--presets", str(model.presets), "--no-crop",
            "--source", str(inputs.face), "--audio", str(inputs.speech), "--exp", DEMO_PRESET,
            "--out", out]
    notice = (f"demo: no released weights in {released}/, so the bundled SynthTalk model ({model.folder}; it knows "
              "cartoon faces only) runs on a bundled SynthTalk face and speech")
    return DemoPlan(argv, notice)


def shown_path(path: Path) -> str:
    """`path` relative to the working folder when it is inside it (as a user would type it)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def has_generator(folder: Path) -> bool:
    return any(_model_part(Path(folder), name) is not None for name in ("EDTalk", "EDTalk_lip_pose"))


def complete_bundled_model() -> Optional[BundledModel]:
    """The bundled model when it is there and whole; None otherwise (never an error)."""
    try:
        return find_bundled_model()
    except CheckpointError:
        return None


def bundled_model_hint(missing: Path) -> str:
    """For a checkpoint-not-found error: how to run the bundled model instead ('' when it is absent or
    is the folder that lacks the file)."""
    model = complete_bundled_model()
    if model is None or Path(missing).resolve().is_relative_to(model.folder.resolve()):
        return ""
    return (f"; or run the bundled SynthTalk model ({_size_words(model)}cartoon faces only) with "
            f"--checkpoint-dir {shown_path(model.folder)}")


def saved_model_size(generator: Optional[Path]) -> Optional[int]:
    """The frame size a saved generator folder's config.json records (None for an official .pt file)."""
    try:
        from .checkpoints import saved_config

        return int(saved_config(generator)["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _size_words(model: BundledModel) -> str:
    size = saved_model_size(model.generator)
    return f"{size}x{size}, " if size else ""


def is_synthtalk_model(folder) -> bool:
    """True for the bundled model's folder and for any folder scripts/train_synthtalk_model.py wrote
    (its training.json records the SynthTalk data it learned from)."""
    folder = Path(folder)
    model = complete_bundled_model()
    if model is not None and folder.resolve() == model.folder.resolve():
        return True
    try:
        return "synthtalk_args" in json.loads((folder / "training.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


CHECKPOINT_FLAGS = ("--checkpoint", "--checkpoint-dir", "--audio2lip-checkpoint")


def _names_weights(args: List[str]) -> bool:
    return any(a.split("=", 1)[0] in CHECKPOINT_FLAGS for a in args)


def own_inputs_demo(args: List[str]) -> DemoPlan:
    """`edtalk generate` arguments for the user's own inputs: as given when they name weights (or ask for
    help); else the released weights when they are there; else the bundled model, with a notice."""
    argv = ["generate", *args]
    if _names_weights(args) or {"-h", "--help"} & set(args):
        return DemoPlan(argv, "")
    weights = released_weights_dir()
    if has_generator(weights):
        return DemoPlan(["generate", "--checkpoint-dir", str(weights), *args], "")
    model = find_bundled_model()
    if model is None:
        return DemoPlan(argv, "")  # generate's own error says what is missing
    notice = (f"demo: no released weights in {shown_path(weights)}/, so the bundled SynthTalk model "
              f"({shown_path(model.folder)}; {_size_words(model)}it knows cartoon faces only) runs; `edtalk download` gets "
              "the weights for real faces")
    return DemoPlan(["generate", "--checkpoint-dir", str(model.folder), *args], notice)


def default_demo(out: str = DEMO_OUT) -> DemoPlan:
    """Released weights first, then the bundled model; neither is one CheckpointError saying how to get weights."""
    weights = released_weights_dir()
    if released_weights_present(weights):
        return released_demo(weights, out)
    model = find_bundled_model()
    if model is not None:
        return bundled_demo(model, out, weights)
    raise CheckpointError(f"no weights: {weights}/ lacks {' and '.join(RELEASED_DEMO_FILES)} and there is no bundled "
                          f"SynthTalk model at {bundled_model_dir()}; run `edtalk download` (see checkpoints/README.md)")


__all__ = ["BUNDLED_MODEL_ENV", "RELEASED_WEIGHTS_ENV", "BundledInputs", "BundledModel", "DemoPlan", "bundled_model_dir",
           "bundled_inputs", "released_weights_dir", "released_weights_present", "find_bundled_model", "released_demo",
           "bundled_demo", "default_demo", "own_inputs_demo", "bundled_model_hint", "is_synthtalk_model",
           "has_generator", "complete_bundled_model", "shown_path"]
