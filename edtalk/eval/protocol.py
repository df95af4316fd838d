"""The paper's evaluation protocol in one call (spec §9): pair, align, measure, summarise.

- **Pairing**: generated and ground-truth videos are paired by file name (stem).  The ground truth
  is a folder of videos or a MEAD/HDTF layout tree (``video/<name>.mp4``, ``audio/<name>.wav``;
  :mod:`edtalk.data.layout`), in which case its test split is used.
- **Alignment**: both videos at 25 fps (resampled by frame selection otherwise), the same frame
  count (the longer one is cut, both from the start), the same size (GT resized to the
  generated size, bicubic) — generation from the layout's aligned crops makes the crops equal.
- **Measurement**: :class:`edtalk.eval.metrics.MetricSuite` gives one row per clip; FID is over
  all frames of all clips.
- **Summary**: PSNR/SSIM/LPIPS/CSIM are means over all frames; LMD and LSE means over videos;
  Acc_emo the share of videos whose predicted emotion is the intended MEAD label.

:func:`generate_split` first generates a layout's test split with a checkpoint (EDTalk-V: the
ground-truth clip drives mouth, pose and expression; EDTalk-A: its audio drives the mouth, the
clip pose and expression), source = the clip's first frame.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ..data.layout import MEAD_TEST_SPEAKERS, name_kind, parse_mead_name, read_split
from ..errors import InputError
from ..video import FPS, read_video, resample_fps
from .metrics import METRICS, MetricSettings, MetricSuite

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi")


@dataclass
class Pair:
    name: str
    pred: Path
    gt: Path
    audio: Optional[Path] = None  # the driving audio when the generated video has none


@dataclass
class EvaluationResult:
    rows: List[dict]
    summary: Dict[str, dict]
    kind: str  # 'mead', 'hdtf' or 'other'
    notes: List[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- pairing

def is_layout_tree(path: Path) -> bool:
    return (Path(path) / "video").is_dir() and (Path(path) / "test.json").is_file()


def _videos_in(folder: Path) -> Dict[str, Path]:
    return {p.stem: p for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in VIDEO_EXTS and p.is_file()}


def pair_videos(pred_dir, gt, split: str = "test") -> List[Pair]:
    """Pairs by name; `gt` is a folder of videos or a layout tree (then its `split` list)."""
    pred_dir, gt = Path(pred_dir), Path(gt)
    for folder, what in ((pred_dir, "--pred"), (gt, "--gt")):
        if not folder.is_dir():
            raise InputError(f"{what} folder does not exist: {folder}")
    preds = _videos_in(pred_dir)
    if not preds:
        raise InputError(f"no generated videos ({', '.join(VIDEO_EXTS)}) in {pred_dir}")
    if is_layout_tree(gt):
        names = read_split(gt, split)
        gts = {n: gt / "video" / f"{n}.mp4" for n in names if (gt / "video" / f"{n}.mp4").is_file()}
        audio = {n: gt / "audio" / f"{n}.wav" for n in names}
    else:
        gts, audio = _videos_in(gt), {}
    unmatched = sorted(set(preds) - set(gts))
    if unmatched:
        more = f" (and {len(unmatched) - 5} more)" if len(unmatched) > 5 else ""
        where = f"{gt / 'video'} listed in {gt / (split + '.json')}" if is_layout_tree(gt) else str(gt)
        raise InputError(f"generated videos without ground truth in {where}: {', '.join(unmatched[:5])}{more}")
    return [Pair(n, preds[n], gts[n], audio.get(n) if audio.get(n) and audio[n].is_file() else None)
            for n in sorted(preds)]


# ----------------------------------------------------------------------------- alignment

def _at_25fps(path: Path) -> np.ndarray:
    frames, fps = read_video(path)
    return resample_fps(frames, fps, FPS) if abs(fps - FPS) > 1e-3 else frames


def align_frames(pred: np.ndarray, gt: np.ndarray):
    """Same count (cut the longer from the end) and same size (GT resized to the generated size)."""
    n = min(len(pred), len(gt))
    pred, gt = pred[:n], gt[:n]
    if gt.shape[1:3] != pred.shape[1:3]:
        from PIL import Image

        h, w = pred.shape[1:3]
        gt = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in gt])
    return pred, gt


def clip_emotion(name: str) -> Optional[str]:
    try:
        return parse_mead_name(name).emotion
    except InputError:
        return None


def _driving_audio(pair: Pair) -> Optional[np.ndarray]:
    from ..audio import load_audio

    for source in (pair.pred, pair.audio, pair.gt):
        if source is None:
            continue
        try:
            return load_audio(source)
        except InputError:
            continue
    return None


def load_clip(pair: Pair, need_audio: bool = True):
    from .metrics import Clip

    pred, gt = _at_25fps(pair.pred), _at_25fps(pair.gt)
    if abs(len(pred) - len(gt)) > 2:
        warnings.warn(f"{pair.name}: {len(pred)} generated vs {len(gt)} ground-truth frames; using the first "
                      f"{min(len(pred), len(gt))}")
    pred, gt = align_frames(pred, gt)
    return Clip(pair.name, pred, gt, wav=_driving_audio(pair) if need_audio else None, emotion=clip_emotion(pair.name))


# ----------------------------------------------------------------------------- running

def dataset_kind(names) -> str:
    kinds = set()
    for n in names:
        try:
            kinds.add(name_kind(n))
        except InputError:
            kinds.add("other")
    return kinds.pop() if len(kinds) == 1 else "other"


def summarise(rows: List[dict], suite: MetricSuite, dataset_values: dict) -> Dict[str, dict]:
    """metric key → {'value', 'clips', 'ok', 'comparable', 'network', 'reason'}."""
    summary = {}
    for key, info in METRICS.items():
        st = suite.status.get(key)
        entry = {"value": None, "clips": 0, "ok": bool(st and st.ok), "comparable": bool(st and st.comparable),
                 "network": st.network if st else "", "reason": st.reason if st else "not computed"}
        if entry["ok"]:
            if info.reduce == "dataset":
                entry["value"], entry["clips"] = dataset_values.get(key), len(rows)
            else:
                have = [r for r in rows if r.get(key) is not None]
                entry["clips"] = len(have)
                if have:
                    values = np.array([r[key] for r in have], dtype=np.float64)
                    if info.reduce == "frames":
                        weights = np.array([r.get(f"{key}_frames", r["frames"]) for r in have], dtype=np.float64)
                        entry["value"] = float((values * weights).sum() / max(weights.sum(), 1))
                    elif info.reduce == "percent":
                        entry["value"] = float(values.mean() * 100)
                    else:
                        entry["value"] = float(values.mean())
            if entry["value"] is None:
                entry["ok"] = False
                entry["reason"] = entry["reason"] or _no_value_reason(key)
        summary[key] = entry
    return summary


def _no_value_reason(key: str) -> str:
    return {"acc_emo": "no clip has an emotion label (MEAD names <speaker>#<emotion>#…)",
            "lse_c": "no driving audio found (generated video, layout audio/, or GT video)",
            "lse_d": "no driving audio found (generated video, layout audio/, or GT video)",
            "m_lmd": "no face found by dlib in any frame", "f_lmd": "no face found by dlib in any frame",
            "csim": "no face found by dlib in the source or generated frames"}.get(key, "no value")


def protocol_notes(names, kind: str) -> List[str]:
    notes = []
    if kind == "mead":
        speakers = sorted({parse_mead_name(n).speaker for n in names})
        outside = [s for s in speakers if s not in MEAD_TEST_SPEAKERS]
        if outside:
            notes.append(f"speakers {', '.join(outside)} are not the paper's MEAD test speakers "
                         f"({', '.join(MEAD_TEST_SPEAKERS)}): numbers are not comparable")
    return notes


def evaluate_pairs(pairs: List[Pair], settings: Optional[MetricSettings] = None, suite: Optional[MetricSuite] = None,
                   progress: bool = True, on_row: Optional[Callable[[dict], None]] = None) -> EvaluationResult:
    suite = suite or MetricSuite(settings)
    need_audio = suite.sync is not None
    iterator = pairs
    if progress and len(pairs) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(pairs, desc="evaluating", unit="clip")
    rows = []
    for pair in iterator:
        row = suite.row(load_clip(pair, need_audio))
        rows.append(row)
        if on_row:
            on_row(row)
    names = [p.name for p in pairs]
    kind = dataset_kind(names)
    return EvaluationResult(rows, summarise(rows, suite, suite.finish()), kind, protocol_notes(names, kind))


# ----------------------------------------------------------------------------- generation

@dataclass
class GenerationPlan:
    checkpoint: str
    data: str
    out: str
    split: str = "test"
    mode: str = "video"  # 'video' (EDTalk-V) or 'audio' (EDTalk-A)
    audio2lip_checkpoint: Optional[str] = None
    device: str = "auto"
    limit: Optional[int] = None  # first N clips of the split (quick checks)
    progress: bool = True


def _save_first_frame(video: Path, png: Path) -> Path:
    from PIL import Image

    frames, _ = read_video(video, max_frames=1)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_suffix(".tmp.png")
    Image.fromarray(frames[0]).save(tmp)
    tmp.replace(png)
    return png


def generate_split(plan: GenerationPlan) -> Path:
    """Generate every clip of a layout's split into `<out>/pred/<name>.mp4`; returns that folder.

    The layout's 25 fps crops are used as they are (crop=False); source = the clip's first frame
    (saved as `<out>/sources/<name>.png`); V: the clip drives mouth, pose and expression; A: the
    clip's audio drives the mouth, the clip pose and expression.  Existing outputs are kept.
    """
    from ..pipelines.generate import GenerateOptions, generate, load_models, resolve_device, resolve_dtype

    data, out = Path(plan.data), Path(plan.out)
    if plan.mode not in ("video", "audio"):
        raise InputError(f"--mode must be video or audio, got {plan.mode!r}")
    if not is_layout_tree(data):
        raise InputError(f"--data {data} is not a MEAD/HDTF layout tree (needs video/ and {plan.split}.json)")
    names = read_split(data, plan.split)[: plan.limit]
    if not names:
        raise InputError(f"{data}/{plan.split}.json lists no clips")
    ckpt = Path(plan.checkpoint)
    # Audio2Lip.pt is looked for beside the generator unless given.
    base = GenerateOptions(source="", checkpoint=plan.checkpoint, audio2lip_checkpoint=plan.audio2lip_checkpoint,
                           checkpoint_dir=str(ckpt.parent if ckpt.is_file() else ckpt), device=plan.device,
                           crop=False, progress=False)
    device = resolve_device(plan.device)
    model, audio2lip = load_models(base, need_audio=plan.mode == "audio", device=device,
                                   dtype=resolve_dtype(base.dtype, device))
    pred_dir = out / "pred"
    iterator = names
    if plan.progress and len(names) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(names, desc=f"generating ({plan.mode}-driven)", unit="clip")
    for name in iterator:
        target = pred_dir / f"{name}.mp4"
        if target.is_file():
            continue
        video, wav = data / "video" / f"{name}.mp4", data / "audio" / f"{name}.wav"
        if plan.mode == "audio" and not wav.is_file():
            raise InputError(f"EDTalk-A needs the clip's audio: {wav} is missing")
        source = _save_first_frame(video, out / "sources" / f"{name}.png")
        # V: the lip video drives the mouth and the layout WAV is only the soundtrack (for LSE)
        opts = GenerateOptions(source=str(source), out=str(target), lip=str(video) if plan.mode == "video" else None,
                               audio=str(wav) if wav.is_file() else None, pose=str(video),
                               exp=str(video) if model.has_expression else "none", crop=False,
                               checkpoint=plan.checkpoint, device=plan.device, progress=False)
        generate(opts, model=model, audio2lip=audio2lip)
    return pred_dir



# ----------------------------------------------------------------------------- one command

@dataclass
class EvaluateRequest:
    """Everything `edtalk evaluate` takes (see README, "Evaluation")."""

    out: str = "results/eval"
    pred: Optional[str] = None
    gt: Optional[str] = None
    generation: Optional[GenerationPlan] = None  # generate a layout split first
    settings: MetricSettings = field(default_factory=MetricSettings)
    label: Optional[str] = None
    split: str = "test"  # the split list used when --gt is a layout tree
    progress: bool = True


def run_evaluate(req: EvaluateRequest):
    """Generate (optionally), evaluate and write the report; returns (EvaluationResult, files)."""
    from .report import write_report

    meta = {}
    if req.generation is not None:
        pred, gt = generate_split(req.generation), req.generation.data
        meta["generated"] = {"checkpoint": req.generation.checkpoint, "mode": req.generation.mode,
                             "split": req.generation.split}
        label = req.label or f"{'EDTalk-V' if req.generation.mode == 'video' else 'EDTalk-A'} (this run)"
        split = req.generation.split
    else:
        if not req.pred or not req.gt:
            raise InputError("give --pred DIR and --gt DIR, or --checkpoint FILE and --data TREE to generate first")
        pred, gt, label, split = req.pred, req.gt, req.label or "this run", req.split
    pairs = pair_videos(pred, gt, split)
    if req.generation is not None and req.generation.limit:
        pairs = pairs[: req.generation.limit]
    result = evaluate_pairs(pairs, req.settings, progress=req.progress)
    files = write_report(result, req.out, label, meta)
    return result, files


__all__ = ["Pair", "EvaluationResult", "GenerationPlan", "EvaluateRequest", "run_evaluate", "pair_videos", "align_frames", "load_clip",
           "evaluate_pairs", "summarise", "generate_split", "is_layout_tree"]
