"""`edtalk export-onnx`: the generator's networks as ONNX graphs, one folder a model, plus
`edtalk_onnx.json` (opset, versions, each graph's inputs and outputs) at the top.

    OUT/edtalk_onnx.json
    OUT/EDTalk/           encoder, motion, source_terms, expression_maps, decoder .onnx (full model)
    OUT/EDTalk_lip_pose/  encoder, motion, decoder .onnx
    OUT/Audio2Lip/        audio2lip.onnx
    OUT/pose_flow/        pose_flow_step.onnx, audio2lip.onnx, pose_flow.json (when the checkpoint folder has one)
    OUT/audio2exp/        audio2exp.onnx, audio2lip.onnx, audio2exp.json (idem)
    OUT/presets/          the checkpoint folder's expression presets, copied

Exported with torch's dynamo exporter (`torch.onnx.export(dynamo=True)`), fp32, one file a graph.
"""
from __future__ import annotations

import copy
import inspect
import io
import json
import shutil
import tempfile
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..errors import CheckpointError, EDTalkError, InputError
from . import graphs

__all__ = ["OPSET", "METADATA_FILE", "FORMAT_VERSION", "export_onnx", "export_generator", "export_audio2lip",
           "export_pose_flow", "export_expression_predictor"]

OPSET = 18  # GridSample (16+) and every op used here; onnxruntime 1.14 and later run it
METADATA_FILE = "edtalk_onnx.json"
FORMAT_VERSION = 1
GENERATOR_PARTS = {"EDTalk": ("EDTalk.pt", "EDTalk"), "EDTalk_lip_pose": ("EDTalk_lip_pose.pt", "EDTalk_lip_pose")}
# Example sizes of the dynamic axes while tracing: distinct and above 1 (torch.export fixes size-1
# dimensions, and equal sizes would be taken for one axis).
EXAMPLE_BATCH, EXAMPLE_SOURCE = 3, 2


def _dynamic_shapes(module: torch.nn.Module, axes: Sequence[Optional[str]]):
    """torch.export's dynamic_shapes for forward's positional args; a `*rest` takes one tuple."""
    dims = {}

    def spec(name):
        if name is None:
            return None
        if name not in dims:
            dims[name] = torch.export.Dim(name, min=1)
        return {0: dims[name]}

    params = list(inspect.signature(module.forward).parameters.values())
    fixed = sum(p.kind == p.POSITIONAL_OR_KEYWORD for p in params)
    specs = [spec(a) for a in axes]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return tuple(specs[:fixed]) + (tuple(specs[fixed:]),)
    return tuple(specs)


@contextmanager
def _tracing():
    """Autograd on (the parameters are frozen): the layers' inference-only rewrites read data
    pointers, which torch.export cannot follow. The process-wide caches of constants (edtalk.nn.ops,
    edtalk.networks.synthesis) are put back as they were afterwards: a trace must leave none of its
    placeholder tensors there for later eager calls."""
    from ..networks import synthesis
    from ..nn import ops

    saved = [(cache, dict(cache)) for cache in (ops._SCALARS, synthesis._GRIDS)]
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for cache, content in saved:
            cache.clear()
            cache.update(content)


def _onnx_export(module, args, path: Path, inputs, outputs, shapes, opset: int) -> None:
    with _tracing(), redirect_stdout(io.StringIO()):  # the exporter prints its steps
        module(*args)  # an eager call first fills the caches of constants with real tensors
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_shapes=shapes,
                          opset_version=opset, dynamo=True, external_data=False, optimize=True, verbose=False)


def _export_graph(module: torch.nn.Module, args: tuple, path: Path, inputs: List[str], outputs: List[str],
                  axes: Sequence[Optional[str]], opset: int) -> dict:
    """Export one graph; returns its entry of the metadata (file, inputs, outputs, dynamic axes)."""
    _onnx_export(module.eval(), args, path, inputs, outputs, _dynamic_shapes(module, axes), opset)
    return {"file": path.name, "inputs": inputs, "outputs": outputs,
            "dynamic_axes": {name: {"0": axis} for name, axis in zip(inputs, axes) if axis is not None}}


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A CPU fp32 copy to trace (tracing leaves entries in the layers' caches; the caller's model keeps none)."""
    return copy.deepcopy(model).float().cpu().eval().requires_grad_(False)


def export_generator(model, folder, opset: int = OPSET) -> dict:
    """The EDTalk generator (full or lip-pose) as encoder / motion / [source_terms, expression_maps] /
    decoder graphs in `folder`; returns its metadata entry."""
    model = _frozen_copy(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    levels = model.dec.levels
    feat_names = [f"feat_{k}" for k in range(levels)]
    torch.manual_seed(0)
    images = torch.rand(EXAMPLE_SOURCE, 3, cfg.size, cfg.size) * 2 - 1
    with torch.no_grad():
        latent, feats = model.encode(images)
        feats = [f.contiguous() for f in feats]
    heads = ["mouth", "pose"] + (["exp"] if model.has_expression else [])
    dims = {"mouth": cfg.mouth_dim, "pose": cfg.pose_dim, "exp": cfg.exp_dim}
    weights = [torch.randn(EXAMPLE_BATCH, dims[h]) * 0.5 for h in heads]
    out = {"graphs": {}}
    g = out["graphs"]
    g["encoder"] = _export_graph(graphs.EncoderGraph(model), (images,), folder / "encoder.onnx", ["images"],
                                 ["latent"] + feat_names, ["batch"], opset)
    g["motion"] = _export_graph(graphs.MotionGraph(model), (latent,), folder / "motion.onnx", ["latent"], heads,
                                ["batch"], opset)
    maps = feats
    if model.has_expression:
        term_names = [f"eem_{k}" for k in range(levels)]
        with torch.no_grad():
            terms = [t.contiguous() for t in graphs.SourceTermsGraph(model)(*feats)]
        g["source_terms"] = _export_graph(graphs.SourceTermsGraph(model), tuple(feats), folder / "source_terms.onnx",
                                          feat_names, term_names, ["source"] * levels, opset)
        exp_example = torch.randn(2 * EXAMPLE_SOURCE, cfg.exp_dim) * 0.5  # E: a multiple of S
        g["expression_maps"] = _export_graph(
            graphs.ExpressionMapsGraph(model), (exp_example, *feats, *terms), folder / "expression_maps.onnx",
            ["exp"] + feat_names + term_names, [f"map_{k}" for k in range(levels)],
            ["expression"] + ["source"] * (2 * levels), opset)
    map_names = [f"map_{k}" for k in range(levels)]
    g["decoder"] = _export_graph(graphs.DecoderGraph(model), (latent, *weights, *maps), folder / "decoder.onnx",
                                 ["latent"] + heads + map_names, ["frames"],
                                 ["source"] + ["batch"] * len(heads) + ["maps"] * levels, opset)
    out.update(variant=model.variant, config=_config_dict(cfg))
    return out


def export_audio2lip(audio2lip, folder, opset: int = OPSET, name: str = "audio2lip.onnx") -> dict:
    audio2lip = _frozen_copy(audio2lip)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mels = torch.randn(EXAMPLE_BATCH, 1, 80, 16)
    entry = _export_graph(graphs.Audio2LipGraph(audio2lip), (mels,), folder / name, ["mels"],
                          ["mouth", "embedding"], ["batch"], opset)
    return {"graphs": {"audio2lip": entry}, "audio2lip_config": _config_dict(audio2lip.config)}


def export_pose_flow(flow, audio2lip, folder, opset: int = OPSET) -> dict:
    """One sampling step of the audio-to-pose flow (the loop over frames runs in the caller) and the
    Audio2Lip encoder it reads; the flow's config and pose statistics go into the metadata."""
    flow = _frozen_copy(flow)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    c = flow.config
    lstm = flow.couplings[0].lstm
    example = [torch.randn(EXAMPLE_BATCH, 1, c.pose_dim), torch.randn(EXAMPLE_BATCH, 1, c.history * c.pose_dim),
               torch.randn(EXAMPLE_BATCH, 1, 2 * c.context + 1, c.audio_dim)]
    names_in, names_out = ["z", "history", "audio"], ["x"]
    for k in range(c.steps):
        for part in ("h", "c"):
            example.append(torch.randn(lstm.num_layers, EXAMPLE_BATCH, lstm.hidden_size) * 0.1)
            names_in.append(f"{part}_{k}")
            names_out.append(f"{part}_{k}_out")
    step = graphs.PoseFlowStepGraph(flow).eval()
    batch = torch.export.Dim("batch", min=1)
    # The LSTM states carry the batch on their second axis.
    shapes = ({0: batch}, {0: batch}, {0: batch}, tuple({1: batch} for _ in names_in[3:]))
    path = folder / "pose_flow_step.onnx"
    _onnx_export(step, tuple(example), path, names_in, names_out, shapes, opset)
    out = export_audio2lip(audio2lip, folder, opset)
    out["graphs"]["pose_flow_step"] = {"file": path.name, "inputs": names_in, "outputs": names_out,
                                       "dynamic_axes": {**{n: {"0": "batch"} for n in names_in[:3]},
                                                        **{n: {"1": "batch"} for n in names_in[3:]}}}
    out["pose_flow"] = {"config": _config_dict(c), "pose_mean": flow.pose_mean.tolist(),
                        "pose_std": flow.pose_std.tolist(), "lstm_layers": lstm.num_layers,
                        "lstm_hidden": lstm.hidden_size}
    return out


def export_expression_predictor(predictor, audio2lip, text_encoder: str, folder, opset: int = OPSET) -> dict:
    predictor = _frozen_copy(predictor)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    c = predictor.config
    example = (torch.randn(EXAMPLE_BATCH, c.audio_dim), torch.ones(EXAMPLE_BATCH, 1), torch.randn(EXAMPLE_BATCH, c.text_dim))
    out = export_audio2lip(audio2lip, folder, opset)
    out["graphs"]["audio2exp"] = _export_graph(graphs.ExpressionPredictorGraph(predictor), example,
                                               folder / "audio2exp.onnx", ["audio", "audio_present", "text"],
                                               ["exp", "emotion_logits"], ["batch"] * 3, opset)
    out.update(config=_config_dict(c), text_encoder=text_encoder)
    return out


def _config_dict(config) -> dict:
    import dataclasses

    data = dataclasses.asdict(config)
    return json.loads(json.dumps(data, default=str))


def _find(folder: Path, names) -> Optional[Path]:
    from ..checkpoints import find_model

    found = find_model(folder, "", names, named_only=True)
    return found.path if found is not None else None


def _sources(checkpoint_dir: Path, checkpoint=None, audio2lip=None) -> Dict[str, Path]:
    """Part name → the checkpoint it is exported from; CheckpointError when there is no generator."""
    parts: Dict[str, Path] = {}
    if checkpoint is not None:
        if not Path(checkpoint).exists():
            raise CheckpointError(f"checkpoint not found: {checkpoint}")
        parts["generator"] = Path(checkpoint)
    else:
        for part, names in GENERATOR_PARTS.items():
            found = _find(checkpoint_dir, names)
            if found is not None:
                parts[part] = found
    if not parts:
        raise CheckpointError(f"no EDTalk generator in {checkpoint_dir} (EDTalk.pt, EDTalk_lip_pose.pt or saved "
                              "folders EDTalk/, EDTalk_lip_pose/); give --checkpoint-dir or --checkpoint")
    a2l = Path(audio2lip) if audio2lip is not None else _find(checkpoint_dir, ("Audio2Lip.pt", "Audio2Lip"))
    if audio2lip is not None and not a2l.exists():
        raise CheckpointError(f"Audio2Lip checkpoint not found: {audio2lip}")
    if a2l is not None:
        parts["Audio2Lip"] = a2l
    for part in ("pose_flow", "audio2exp"):
        if (checkpoint_dir / part).is_dir():
            parts[part] = checkpoint_dir / part
    return parts


def _export_part(part: str, path: Path, work: Path, opset: int):
    """(folder name in the export, metadata entry) of one part of `_sources`."""
    from ..model import EDTalk
    from ..networks.audio2lip import Audio2Lip

    if part == "Audio2Lip":
        return part, export_audio2lip(Audio2Lip.from_pretrained(path), work / part, opset)
    if part == "pose_flow":
        from ..networks.pose_flow import load_pose_flow

        return part, export_pose_flow(*load_pose_flow(path), work / part, opset)
    if part == "audio2exp":
        from ..networks.expression_predictor import load_expression_predictor

        predictor, a2l, text_encoder = load_expression_predictor(path)
        return part, export_expression_predictor(predictor, a2l, text_encoder, work / part, opset)
    model = EDTalk.from_pretrained(path)  # a generator: its variant names its folder
    name = "EDTalk" if model.has_expression else "EDTalk_lip_pose"
    return name, export_generator(model, work / name, opset)


def _check_out(out: Path) -> None:
    """`out` may be new, empty or an earlier export (replaced whole); anything else is refused."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / METADATA_FILE).is_file())):
        raise InputError(f"--out {out} exists and is not an earlier ONNX export; give a new or empty folder")


def export_onnx(checkpoint_dir, out, checkpoint=None, audio2lip=None, opset: int = OPSET,
                log=print) -> dict:
    """Export every model of `checkpoint_dir` (or the given files) to `out`; returns the metadata.

    Written into a temporary folder beside `out` and moved into place at the end: an error leaves
    no half-written export."""
    from .. import __version__ as edtalk_version

    try:
        import onnx
        import onnxscript  # noqa: F401 (torch's exporter needs it)
    except ImportError as exc:
        raise EDTalkError(f"export-onnx needs {exc.name}: pip install 'edtalk[onnx]'") from None
    checkpoint_dir, out = Path(checkpoint_dir), Path(out)
    if opset < OPSET:
        raise InputError(f"--opset must be {OPSET} or later (GridSample and the exporter's operator set)")
    _check_out(out)
    sources = _sources(checkpoint_dir, checkpoint, audio2lip)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    models = {}
    try:
        for part, path in sources.items():
            log(f"exporting {part} from {path}")
            name, entry = _export_part(part, path, work, opset)
            models[name] = {**entry, "from": str(path)}
        presets = checkpoint_dir / "presets"
        if presets.is_dir():
            shutil.copytree(presets, work / "presets")
        metadata = {"format": FORMAT_VERSION, "opset": opset, "dtype": "float32", "edtalk": edtalk_version,
                    "torch": torch.__version__, "onnx": onnx.__version__, "exporter": "torch.onnx.export(dynamo=True)",
                    "models": models}
        (work / METADATA_FILE).write_text(json.dumps(metadata, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return metadata
