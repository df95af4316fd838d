"""`edtalk evaluate`: pair, align, measure, summarise (docs/evaluation.md).

- **Pairing**: generated and ground-truth videos are paired by file name (stem).  The ground truth
  is a folder of videos or a MEAD/HDTF layout tree (``video/<name>.mp4``, ``audio/<name>.wav``;
  :mod:`edtalk.data.layout`), in which case its split is used.  ``--clip-list`` (a text file, a
  JSON list, or EAT's ``.npy`` of names) restricts the run to a fixed list.
- **Protocol** (``--protocol``): ``eat`` gives every metric its reference's inputs (EAT's aligned
  crops, frame pairing and sampling, face chips, syncnet_python's LSE); ``native`` measures the
  full frames as generated.  ``auto`` (the default) is ``eat`` for MEAD/HDTF names (the data the
  paper reports) and ``native`` otherwise.
- **Alignment**: both videos at 25 fps (resampled by frame selection otherwise).  Native: the same
  frame count (the longer one loses its last frames) and size (GT resized to the generated size).
  EAT: each video stays whole; frames are paired after cropping by ⌊linspace⌋, as EAT does.
- **Measurement**: :class:`edtalk.eval.metrics.MetricSuite` gives one row per clip; FID is one
  value over the clips' frames.
- **Summary**: PSNR/SSIM/LPIPS/CSIM are means over all frames; LMD and LSE means over the clips
  that have a value (the others are counted, with the reason); Acc_emo the share of videos whose
  predicted emotion is the MEAD name's.  Each metric carries its input steps next to its
  reference's; it is comparable to the paper only when all of them match.

:func:`generate_split` first generates a layout's test split with a checkpoint (EDTalk-V: the
ground-truth clip drives mouth, pose and expression; EDTalk-A: its audio drives the mouth, the
clip pose and expression), source = the clip's first frame.
"""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ..data.layout import MEAD_TEST_SPEAKERS, name_kind, parse_mead_name, read_split
from ..errors import InputError
from ..video import FPS, read_video, resample_fps
from .metrics import METRICS, MetricSettings, MetricSuite
from .metrics.reference import REFERENCE_FILES, clip_step
from .metrics.registry import PROTOCOLS, file_sha256

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi")
PROTOCOL_CHOICES = ("auto",) + PROTOCOLS
# EAT's emotion abbreviations (its clip names: <speaker>_<emo>_<level>_<nnn>)
EAT_EMOTIONS = {"ang": "angry", "con": "contempt", "dis": "disgusted", "fea": "fear", "hap": "happy",
                "neu": "neutral", "sad": "sad", "sur": "surprised"}


@dataclass
class Pair:
    name: str
    pred: Path
    gt: Path
    audio: Optional[Path] = None  # the driving audio when the generated video has none


@dataclass
class ClipSet:
    """Which clips were evaluated and how they were chosen (recorded in summary.json)."""

    how: str  # 'clip list FILE', 'split test of TREE', 'all videos in DIR', with '(first N)' when limited
    complete: bool = True  # False when --limit cut the selection
    listed: bool = False  # chosen by --clip-list


@dataclass
class EvaluationResult:
    rows: List[dict]
    summary: Dict[str, dict]
    kind: str  # 'mead', 'hdtf' or 'other'
    notes: List[str] = field(default_factory=list)
    protocol: str = "native"
    clips: List[dict] = field(default_factory=list)  # name + sha256 of both videos


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


def eat_name(name: str) -> str:
    """EAT's clip names (``M003_ang_3_001``, or ``M003_M003_ang_3_001`` in its 100-clip list) →
    this project's ``M003#angry#level_3#001``; other names pass through."""
    parts = str(name).split("_")
    if len(parts) == 5 and parts[0] == parts[1]:
        parts = parts[1:]
    if len(parts) == 4 and parts[1] in EAT_EMOTIONS and parts[2].isdigit():
        return f"{parts[0]}#{EAT_EMOTIONS[parts[1]]}#level_{int(parts[2])}#{int(parts[3]):03d}"
    return str(name)


def read_clip_list(path) -> List[str]:
    """Clip names from a text file (one a line), a JSON list, or a NumPy ``.npy`` array of strings
    (EAT's ``rand_sample_ours_mead100.npy``); EAT-style names are converted."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--clip-list file does not exist: {path}")
    try:
        if path.suffix == ".npy":
            names = [str(n) for n in np.load(path, allow_pickle=False).ravel()]
        elif path.suffix == ".json":
            names = [str(n) for n in json.loads(path.read_text())]
        else:
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"cannot read --clip-list {path}: {str(exc).splitlines()[0]}") from None
    if not names:
        raise InputError(f"--clip-list {path} names no clips")
    return [eat_name(n) for n in names]


def select_clips(pairs: List[Pair], names: List[str], source: str) -> List[Pair]:
    """The pairs named in a clip list, in the list's order; one error line when some are missing."""
    by_name = {p.name: p for p in pairs}
    missing = [n for n in names if n not in by_name]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise InputError(f"{len(missing)} clip(s) of {source} have no generated/GT pair: {', '.join(missing[:5])}{more}")
    return [by_name[n] for n in dict.fromkeys(names)]


# ----------------------------------------------------------------------------- alignment

def _at_25fps(path: Path) -> np.ndarray:
    frames, fps = read_video(path)
    return resample_fps(frames, fps, FPS) if abs(fps - FPS) > 1e-3 else frames


def align_frames(pred: np.ndarray, gt: np.ndarray):
    """Same count (the longer one loses its last frames) and same size (GT resized to the
    generated size, bicubic): the native protocol."""
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


def load_clip(pair: Pair, need_audio: bool = True, protocol: str = "native"):
    """A :class:`Clip`: native → cut and resized to match; eat → both videos whole (25 fps)."""
    from .metrics import Clip

    pred, gt = _at_25fps(pair.pred), _at_25fps(pair.gt)
    if protocol == "native":
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


def resolve_protocol(protocol: str, kind: str) -> str:
    """'auto' → 'eat' for the data the paper reports (MEAD, HDTF), 'native' otherwise."""
    if protocol == "auto":
        return "eat" if kind in ("mead", "hdtf") else "native"
    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol must be one of {', '.join(PROTOCOL_CHOICES)}, got {protocol!r}")
    return protocol


def _finite(value):
    """JSON-safe number: inf/nan become the strings 'inf', '-inf', 'nan'."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def summarise(rows: List[dict], suite: MetricSuite, dataset_values: dict, clip_steps=None) -> Dict[str, dict]:
    """metric key → {'value', 'clips', 'skipped', 'ok', 'comparable', 'network', 'reason',
    'differences', 'steps', 'reference', 'weights'}."""
    summary = {}
    for key, info in METRICS.items():
        st = suite.status.get(key)
        steps = list(st.steps) + list(clip_steps or []) if st and st.ok else []
        entry = {"value": None, "clips": 0, "ok": bool(st and st.ok), "network": st.network if st else "",
                 "reason": st.reason if st else "not computed", "reference": REFERENCE_FILES[key],
                 "steps": [s.as_dict() for s in steps], "weights": dict(st.weights) if st else {}, "skipped": {}}
        entry["comparable"] = entry["ok"] and all(s.match for s in steps)
        entry["differences"] = "; ".join(s.describe() for s in steps if not s.match)
        if entry["ok"]:
            if info.reduce == "dataset":
                entry["value"] = dataset_values.get(key)
                entry["clips"] = sum(1 for r in rows if r.get(f"{key}_frames", 1))
            else:
                have = [r for r in rows if r.get(key) is not None]
                entry["clips"] = len(have)
                for r in rows:
                    if r.get(key) is None and key in r.get("skipped", {}):
                        entry["skipped"][r["name"]] = r["skipped"][key]
                if have:
                    values = np.array([r[key] for r in have], dtype=np.float64)
                    if info.reduce == "frames":
                        weights = np.array([r.get(f"{key}_frames", r["frames"]) for r in have], dtype=np.float64)
                        with np.errstate(invalid="ignore"):  # inf PSNR × weight stays inf
                            entry["value"] = float((values * weights).sum() / max(weights.sum(), 1))
                    elif info.reduce == "percent":
                        entry["value"] = float(values.mean() * 100)
                    else:
                        entry["value"] = float(values.mean())
            if entry["value"] is None:
                entry["ok"], entry["comparable"] = False, False
                entry["reason"] = entry["reason"] or _no_value_reason(key, entry["skipped"])
        summary[key] = entry
    return summary


def _no_value_reason(key: str, skipped: dict) -> str:
    if skipped:
        reasons = sorted(set(skipped.values()))
        return f"no clip has a value ({'; '.join(reasons)})"
    return {"acc_emo": "no clip has an emotion label (MEAD names <speaker>#<emotion>#…)",
            "lse_c": "no driving audio found (generated video, layout audio/, or GT video)",
            "lse_d": "no driving audio found (generated video, layout audio/, or GT video)",
            "fid": "no frame pair to measure",
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


def clip_set_step(names: List[str], kind: str, clip_set: Optional[ClipSet]):
    """The 'clips' step: the paper's test clips (all of the official MEAD/HDTF test split, or a
    fixed list such as EAT's 100), complete, from the paper's test speakers."""
    from ..data.preprocess_real import official_split

    how = clip_set.how if clip_set else "the given videos"
    ours = f"{len(names)} clips ({how})"
    if kind not in ("mead", "hdtf"):
        return clip_step(ours + ", not MEAD/HDTF names", False)
    official = [n for n in official_split()["test"] if dataset_kind([n]) == kind]
    outside = sorted(set(names) - set(official))
    if outside:
        return clip_step(f"{ours}; {len(outside)} not in the official {kind.upper()} test split", False)
    if clip_set is not None and not clip_set.complete:
        return clip_step(f"{ours}: a truncated selection (--limit)", False)
    if clip_set is not None and clip_set.listed:
        return clip_step(f"{ours} (the list is taken as the paper's; its sha256 is recorded)", True)
    if set(names) == set(official):
        return clip_step(f"{ours}: the whole official {kind.upper()} test split", True)
    return clip_step(f"{ours}: {len(names)} of the {len(official)} official {kind.upper()} test clips", False)


def clip_records(pairs: List[Pair]) -> List[dict]:
    return [{"name": p.name, "pred": str(p.pred), "pred_sha256": file_sha256(p.pred), "gt": str(p.gt),
             "gt_sha256": file_sha256(p.gt)} for p in pairs]


def names_sha256(names: List[str]) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def evaluate_pairs(pairs: List[Pair], settings: Optional[MetricSettings] = None, suite: Optional[MetricSuite] = None,
                   progress: bool = True, on_row: Optional[Callable[[dict], None]] = None,
                   clip_set: Optional[ClipSet] = None) -> EvaluationResult:
    suite = suite or MetricSuite(settings)
    need_audio = suite.sync is not None
    iterator = pairs
    if progress and len(pairs) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(pairs, desc=f"evaluating ({suite.protocol} protocol)", unit="clip")
    rows = []
    for pair in iterator:
        row = suite.row(load_clip(pair, need_audio, suite.protocol))
        rows.append(row)
        if on_row:
            on_row(row)
    names = [p.name for p in pairs]
    kind = dataset_kind(names)
    summary = summarise(rows, suite, suite.finish(), [clip_set_step(names, kind, clip_set)])
    return EvaluationResult(rows, summary, kind, protocol_notes(names, kind), suite.protocol, clip_records(pairs))


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
    names: Optional[List[str]] = None  # generate these clips (a --clip-list) instead of the split's


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
    from ..pipelines.pipeline import EDTalkPipeline

    data, out = Path(plan.data), Path(plan.out)
    if plan.mode not in ("video", "audio"):
        raise InputError(f"--mode must be video or audio, got {plan.mode!r}")
    if not is_layout_tree(data):
        raise InputError(f"--data {data} is not a MEAD/HDTF layout tree (needs video/ and {plan.split}.json)")
    names = (list(plan.names) if plan.names is not None else read_split(data, plan.split))[: plan.limit]
    if not names:
        raise InputError(f"{data}/{plan.split}.json lists no clips")
    ckpt = Path(plan.checkpoint)
    # Audio2Lip.pt is looked for beside the generator unless given; the generator is the one given, for every clip.
    pipe = EDTalkPipeline.from_pretrained(ckpt.parent if ckpt.is_file() else ckpt, checkpoint=ckpt,
                                          audio2lip=plan.audio2lip_checkpoint, device=plan.device)
    model, _ = pipe.models(expression=True, audio=plan.mode == "audio")
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
        pipe.write(target, source=source, lip=video if plan.mode == "video" else None,
                   audio=wav if wav.is_file() else None, pose=video, exp=video if model.has_expression else None,
                   crop=False, progress=False)
    return pred_dir



# ----------------------------------------------------------------------------- one command

@dataclass
class EvaluateRequest:
    """Everything `edtalk evaluate` takes (docs/evaluation.md)."""

    out: str = "results/eval"
    pred: Optional[str] = None
    gt: Optional[str] = None
    generation: Optional[GenerationPlan] = None  # generate a layout split first
    settings: MetricSettings = field(default_factory=MetricSettings)
    label: Optional[str] = None
    split: str = "test"  # the split list used when --gt is a layout tree
    progress: bool = True
    protocol: str = "auto"  # 'auto', 'eat' or 'native' (overrides settings.protocol)
    clip_list: Optional[str] = None  # evaluate exactly these clips


def _choose_pairs(req: EvaluateRequest):
    """(pairs, clip set, label, extra summary fields) for a request, generating first if asked."""
    meta = {}
    names = read_clip_list(req.clip_list) if req.clip_list else None
    if req.generation is not None:
        plan = req.generation
        if names is not None:  # generate only the listed clips
            plan = GenerationPlan(**{**plan.__dict__, "names": names})
        pred, gt = generate_split(plan), plan.data
        meta["generated"] = {"checkpoint": plan.checkpoint, "mode": plan.mode, "split": plan.split}
        label = req.label or f"{'EDTalk-V' if plan.mode == 'video' else 'EDTalk-A'} (this run)"
        split, where = plan.split, f"split {plan.split} of {plan.data}"
    else:
        if not req.pred or not req.gt:
            raise InputError("give --pred DIR and --gt DIR, or --checkpoint FILE and --data TREE to generate first")
        pred, gt, label, split = req.pred, req.gt, req.label or "this run", req.split
        where = f"split {split} of {gt}" if is_layout_tree(Path(gt)) else f"all videos in {pred}"
    pairs = pair_videos(pred, gt, split)
    limit = req.generation.limit if req.generation is not None else None
    if names is not None:
        pairs = select_clips(pairs, names, f"--clip-list {req.clip_list}")
        clip_set = ClipSet(f"clip list {req.clip_list}, sha256 {file_sha256(req.clip_list)}", listed=True)
    else:
        clip_set = ClipSet(where)
    if limit and len(pairs) > limit:
        pairs, clip_set.complete = pairs[:limit], False
        clip_set.how += f" (first {limit}, --limit)"
    return pairs, clip_set, label, meta


def run_evaluate(req: EvaluateRequest):
    """Generate (optionally), evaluate and write the report; returns (EvaluationResult, files)."""
    from .report import write_report

    pairs, clip_set, label, meta = _choose_pairs(req)
    names = [p.name for p in pairs]
    protocol = resolve_protocol(req.protocol, dataset_kind(names))
    settings = MetricSettings(**{**req.settings.__dict__, "protocol": protocol})
    result = evaluate_pairs(pairs, settings, progress=req.progress, clip_set=clip_set)
    meta.update(clip_selection=clip_set.how, clip_names_sha256=names_sha256(names),
                protocol_requested=req.protocol)
    files = write_report(result, req.out, label, meta)
    return result, files


__all__ = ["Pair", "ClipSet", "EvaluationResult", "GenerationPlan", "EvaluateRequest", "run_evaluate", "pair_videos",
           "align_frames", "load_clip", "evaluate_pairs", "summarise", "generate_split", "is_layout_tree",
           "read_clip_list", "resolve_protocol"]
