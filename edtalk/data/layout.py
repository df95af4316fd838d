"""On-disk contract for training data (MEAD and HDTF style trees), docs/design.md §7.3.

Everything that prepares training data (`data_preprocess/`, SynthTalk) writes this layout and
everything that reads it (training loaders, metrics) checks it with :func:`validate_tree`.

Tree
----
::

    <root>/
      train.json              JSON list of clip names (the training split)
      test.json               JSON list of clip names (the held-out split)
      video/<name>.mp4        25 fps, square frames (256² for real data), H.264, AAC audio track
      audio/<name>.wav        16 kHz mono, exactly T·640 samples for a clip of T frames
      landmark/<name>.npy     [T,68,2] float32, dlib 68-point order, pixel coords of the frames
      bbox/<name>.npy         [T,4] int64 x1,y1,x2,y2 face box on the frames, clipped at 0
      mel/<name>.npy          [T,80,16] float32 per-frame Wav2Lip mel windows (optional)
      factors/<name>.npz      ground-truth factors (SynthTalk only, optional)

One row per video frame in every side file.  Audio and video are frame exact: T frames ⇔
T·640 samples (docs/design.md §3.2 bug 12).

Names
-----
- MEAD: ``<speaker>#<emotion>#level_<k>#<nnn>``: speaker like ``M003`` (letters then digits),
  emotion one of :data:`EMOTIONS`, k ∈ {1,2,3}, nnn three digits.  Real MEAD has neutral at
  level 1 only; other levels of neutral are accepted.  The split is by speaker: no speaker is in
  both lists (official test speakers :data:`MEAD_TEST_SPEAKERS`).
- HDTF: ``<video>#<k>``: 5 s clips (125 frames) of one video, k = 1, 2, … without gaps; every
  clip but the last of its video has exactly 125 frames, the last one (the kept short tail) at
  most 125.  The split is by video: no video is in both lists.

Names may not contain path separators; '#' is the only field separator.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Optional, Union

import numpy as np

from edtalk.audio import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME  # noqa: F401 (part of the layout contract)
from edtalk.errors import InputError
from edtalk.video import probe_video  # noqa: F401 (re-exported: part of the layout checks)

PathLike = Union[str, os.PathLike]

HDTF_CLIP_FRAMES = 5 * FPS  # 125
NUM_LANDMARKS = 68
MEL_SHAPE = (80, 16)

EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
LEVELS = (1, 2, 3)
MEAD_TEST_SPEAKERS = ("M003", "M030", "W009", "W015")

KINDS = ("mead", "hdtf")
REQUIRED_DIRS = ("video", "audio", "landmark", "bbox")
OPTIONAL_DIRS = ("mel", "factors")
EXTENSIONS = {"video": ".mp4", "audio": ".wav", "landmark": ".npy", "bbox": ".npy", "mel": ".npy",
              "factors": ".npz"}
SPLITS = ("train", "test")
# Per-frame arrays of a factors/<name>.npz (one row per frame); other keys are clip-level.
FACTOR_FRAME_KEYS = ("mouth", "pose", "expression", "blink")

_MEAD_RE = re.compile(r"^([A-Za-z]+[0-9]+)#([a-z]+)#level_([0-9])#([0-9]{3})$")
_HDTF_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)#([1-9][0-9]*)$")


class MeadName(NamedTuple):
    speaker: str
    emotion: str
    level: int
    index: int

    def __str__(self) -> str:
        return format_mead_name(self.speaker, self.emotion, self.level, self.index)


class HdtfName(NamedTuple):
    video: str
    clip: int

    def __str__(self) -> str:
        return format_hdtf_name(self.video, self.clip)


def parse_mead_name(name: str) -> MeadName:
    """``M003#angry#level_1#001`` → MeadName('M003', 'angry', 1, 1); InputError if malformed."""
    m = _MEAD_RE.match(str(name))
    if m is None:
        raise InputError(f"not a MEAD clip name (<speaker>#<emotion>#level_<k>#<nnn>): {name!r}")
    speaker, emotion, level, index = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    if emotion not in EMOTIONS:
        raise InputError(f"unknown MEAD emotion {emotion!r} in {name!r} (expected one of {', '.join(EMOTIONS)})")
    if level not in LEVELS:
        raise InputError(f"MEAD level must be 1, 2 or 3 in {name!r}")
    return MeadName(speaker, emotion, level, index)


def parse_hdtf_name(name: str) -> HdtfName:
    """``WDA_BarackObama_000#12`` → HdtfName('WDA_BarackObama_000', 12); InputError if malformed."""
    m = _HDTF_RE.match(str(name))
    if m is None:
        raise InputError(f"not an HDTF clip name (<video>#<k>, k from 1): {name!r}")
    return HdtfName(m.group(1), int(m.group(2)))


def format_mead_name(speaker: str, emotion: str, level: int, index: int) -> str:
    name = f"{speaker}#{emotion}#level_{int(level)}#{int(index):03d}"
    parse_mead_name(name)
    return name


def format_hdtf_name(video: str, clip: int) -> str:
    name = f"{video}#{int(clip)}"
    parse_hdtf_name(name)
    return name


def name_kind(name: str) -> str:
    """'mead' or 'hdtf' for a valid clip name; InputError otherwise."""
    try:
        parse_mead_name(name)
        return "mead"
    except InputError:
        pass
    parse_hdtf_name(name)
    return "hdtf"


def group_of(name: str, kind: Optional[str] = None) -> str:
    """The split unit of a clip: the speaker (MEAD) or the source video (HDTF)."""
    kind = kind or name_kind(name)
    return parse_mead_name(name).speaker if kind == "mead" else parse_hdtf_name(name).video


def clip_path(root: PathLike, part: str, name: str) -> Path:
    """Path of one side file: clip_path(root, 'landmark', name) → root/landmark/<name>.npy."""
    if part not in EXTENSIONS:
        raise ValueError(f"unknown part {part!r}; expected one of {sorted(EXTENSIONS)}")
    return Path(root) / part / f"{name}{EXTENSIONS[part]}"


def clip_paths(root: PathLike, name: str) -> dict:
    return {part: clip_path(root, part, name) for part in EXTENSIONS}


def read_split(root: PathLike, split: str) -> list:
    path = Path(root) / f"{split}.json"
    if not path.is_file():
        raise InputError(f"missing split list {path}")
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read split list {path}: {exc}") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{path} must be a JSON list of clip names")
    return names


def write_split(root: PathLike, split: str, names: Iterable[str]) -> Path:
    path = Path(root) / f"{split}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(sorted(names)))
    os.replace(tmp, path)
    return path


def list_clips(root: PathLike) -> list:
    """All clip names of a tree: train.json + test.json, in that order."""
    names = []
    for split in SPLITS:
        names += read_split(root, split)
    return names


# --------------------------------------------------------------------------- media probing


def probe_wav(path: PathLike) -> dict:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises its own RuntimeError subclasses
        raise InputError(f"cannot read audio {path}: {exc}") from None
    return {"sample_rate": int(info.samplerate), "channels": int(info.channels), "samples": int(info.frames)}


# --------------------------------------------------------------------------- validation


@dataclass
class TreeReport:
    """What :func:`validate_tree` found (only returned when there are no problems)."""

    root: Path
    kind: str
    train: list
    test: list
    frames: dict = field(default_factory=dict)  # name → T
    groups: dict = field(default_factory=dict)  # split → sorted speakers / videos
    has_mel: bool = False
    has_factors: bool = False
    media_checked: bool = False
    warnings: list = field(default_factory=list)

    @property
    def num_clips(self) -> int:
        return len(self.train) + len(self.test)

    @property
    def num_frames(self) -> int:
        return int(sum(self.frames.values()))

    def __str__(self) -> str:
        unit = "speakers" if self.kind == "mead" else "videos"
        return (f"{self.kind.upper()} tree {self.root}: {self.num_clips} clips ({len(self.train)} train / "
                f"{len(self.test)} test), {self.num_frames} frames, {unit} train={len(self.groups.get('train', []))} "
                f"test={len(self.groups.get('test', []))}, mel={'yes' if self.has_mel else 'no'}, "
                f"factors={'yes' if self.has_factors else 'no'}")


def _load_npy(path: Path, problems: list):
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        problems.append(f"{path}: unreadable ({exc})")
        return None


def validate_tree(root: PathLike, kind: str = "mead", check_media: bool = True, require_mel: bool = False,
                  require_factors: bool = False, max_problems: int = 50) -> TreeReport:
    """Check a MEAD/HDTF tree against the contract above; raise InputError listing every problem.

    Checks: split lists exist, are disjoint, hold valid names of `kind`, split by speaker/video;
    every listed clip has video/audio/landmark/bbox (and mel/factors when required or present);
    landmark [T,68,2] float finite, bbox [T,4] integer with x1<x2, y1<y2, ≥0; mel [T,80,16];
    factors arrays with T rows; HDTF clip numbering and 125-frame clips.  With `check_media`:
    WAV 16 kHz mono with exactly T·640 samples, MP4 at 25 fps with T frames, square, with audio.
    T is the landmark row count (or the video's frame count when `check_media`).
    """
    root = Path(root)
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    if not root.is_dir():
        raise InputError(f"data root does not exist: {root}")
    problems: list = []
    warnings: list = []
    splits = {}
    for split in SPLITS:
        try:
            splits[split] = read_split(root, split)
        except InputError as exc:
            problems.append(str(exc))
            splits[split] = []
    for d in REQUIRED_DIRS:
        if not (root / d).is_dir():
            problems.append(f"missing folder {root / d}")
    parse = parse_mead_name if kind == "mead" else parse_hdtf_name
    parsed = {}
    seen = {}
    for split in SPLITS:
        for name in splits[split]:
            if name in seen:
                problems.append(f"{name!r} listed twice ({seen[name]} and {split})")
                continue
            seen[name] = split
            try:
                parsed[name] = parse(name)
            except InputError as exc:
                problems.append(str(exc))
    groups = {s: sorted({group_of(n, kind) for n in splits[s] if n in parsed}) for s in SPLITS}
    both = set(groups["train"]) & set(groups["test"])
    if both:
        unit = "speakers" if kind == "mead" else "videos"
        problems.append(f"{unit} in both train and test: {', '.join(sorted(both))}")
    if not seen:
        problems.append("no clips listed in train.json / test.json")

    has_mel = (root / "mel").is_dir()
    has_factors = (root / "factors").is_dir()
    frames = {}
    for name in parsed:
        paths = clip_paths(root, name)
        missing = [p for p in REQUIRED_DIRS if not paths[p].is_file()]
        if require_mel or has_mel:
            missing += ["mel"] if not paths["mel"].is_file() else []
        if require_factors or has_factors:
            missing += ["factors"] if not paths["factors"].is_file() else []
        if missing:
            problems.append(f"{name}: missing {', '.join(missing)}")
        n_frames = None
        video_info = None
        if check_media and paths["video"].is_file():
            try:
                video_info = probe_video(paths["video"])
                n_frames = video_info["frames"]
            except InputError as exc:
                problems.append(str(exc))
        if paths["landmark"].is_file():
            lm = _load_npy(paths["landmark"], problems)
            if lm is not None:
                if lm.ndim != 3 or lm.shape[1:] != (NUM_LANDMARKS, 2):
                    problems.append(f"{name}: landmark shape {lm.shape}, expected [T,68,2]")
                elif lm.dtype.kind != "f" or not np.isfinite(lm).all():
                    problems.append(f"{name}: landmarks must be finite floats (got {lm.dtype})")
                if lm.ndim >= 1:
                    if n_frames is None:
                        n_frames = lm.shape[0]
                    elif lm.shape[0] != n_frames:
                        problems.append(f"{name}: landmark has {lm.shape[0]} rows, video has {n_frames} frames")
        if n_frames is None:
            continue
        if n_frames == 0:
            problems.append(f"{name}: empty clip")
            continue
        frames[name] = n_frames
        if paths["bbox"].is_file():
            bb = _load_npy(paths["bbox"], problems)
            if bb is not None:
                if bb.ndim != 2 or bb.shape != (n_frames, 4):
                    problems.append(f"{name}: bbox shape {bb.shape}, expected [{n_frames},4]")
                elif bb.dtype.kind not in "iu":
                    problems.append(f"{name}: bbox must be integers (got {bb.dtype})")
                elif (bb < 0).any() or (bb[:, 2] <= bb[:, 0]).any() or (bb[:, 3] <= bb[:, 1]).any():
                    problems.append(f"{name}: bbox rows must satisfy 0 ≤ x1 < x2, 0 ≤ y1 < y2")
        if paths["mel"].is_file():
            mel = _load_npy(paths["mel"], problems)
            if mel is not None and (mel.shape != (n_frames,) + MEL_SHAPE or mel.dtype != np.float32):
                problems.append(f"{name}: mel {mel.dtype} {mel.shape}, expected float32 [{n_frames},80,16]")
        if paths["factors"].is_file():
            try:
                with np.load(paths["factors"], allow_pickle=False) as fz:
                    for key in fz.files:
                        if key not in FACTOR_FRAME_KEYS:
                            continue
                        arr = fz[key]
                        if key in FACTOR_FRAME_KEYS and (arr.ndim < 1 or arr.shape[0] != n_frames):
                            problems.append(f"{name}: factor {key} has {arr.shape[0]} rows, expected {n_frames}")
            except Exception as exc:
                problems.append(f"{paths['factors']}: unreadable ({exc})")
        if check_media and paths["audio"].is_file():
            try:
                info = probe_wav(paths["audio"])
                if info["sample_rate"] != SAMPLE_RATE:
                    problems.append(f"{name}: audio at {info['sample_rate']} Hz, expected {SAMPLE_RATE}")
                if info["channels"] != 1:
                    problems.append(f"{name}: audio has {info['channels']} channels, expected mono")
                if info["samples"] != n_frames * SAMPLES_PER_FRAME:
                    problems.append(f"{name}: audio has {info['samples']} samples, expected "
                                    f"{n_frames}·{SAMPLES_PER_FRAME} = {n_frames * SAMPLES_PER_FRAME}")
            except InputError as exc:
                problems.append(str(exc))
        if video_info is not None:
            if abs(video_info["fps"] - FPS) > 1e-3:
                problems.append(f"{name}: video at {video_info['fps']} fps, expected {FPS}")
            if video_info["width"] != video_info["height"]:
                problems.append(f"{name}: video is {video_info['width']}x{video_info['height']}, expected square")
            if not video_info["audio"]:
                warnings.append(f"{name}: video has no audio track")
        if len(problems) >= max_problems:
            break

    if kind == "hdtf" and len(problems) < max_problems:
        by_video: dict = {}
        for name, p in parsed.items():
            by_video.setdefault(p.video, []).append(p.clip)
        for video, ks in sorted(by_video.items()):
            ks = sorted(ks)
            if ks != list(range(1, len(ks) + 1)):
                problems.append(f"HDTF video {video}: clip numbers {ks} are not 1..{len(ks)}")
                continue
            for k in ks:
                t = frames.get(format_hdtf_name(video, k))
                if t is None:
                    continue
                if t > HDTF_CLIP_FRAMES or (k < len(ks) and t != HDTF_CLIP_FRAMES):
                    problems.append(f"{video}#{k}: {t} frames; HDTF clips are {HDTF_CLIP_FRAMES} frames "
                                    f"(only the last clip of a video may be shorter)")
    if problems:
        shown = problems[:max_problems]
        more = "\n  … and more" if len(problems) > max_problems else ""
        raise InputError(f"{kind.upper()} tree {root} failed validation ({len(problems)} problem(s)):\n  "
                         + "\n  ".join(shown) + more)
    return TreeReport(root=root, kind=kind, train=list(splits["train"]), test=list(splits["test"]), frames=frames,
                      groups=groups, has_mel=has_mel, has_factors=has_factors, media_checked=check_media,
                      warnings=warnings)
