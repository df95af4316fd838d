"""Raw MEAD / HDTF downloads → training trees in the :mod:`edtalk.data.layout` format (docs/design.md §7.2, §7.3).

Raw input:

- MEAD (front camera): ``RAW/<ID>/video/front/<emotion>/level_<k>/<nnn>.mp4`` (1920×1080, 30 fps,
  with audio) → one clip ``<ID>#<emotion>#level_<k>#<nnn>`` each;
- HDTF: ``RAW/<video>.mp4`` → 5 s clips ``<video>#1``, ``<video>#2``, … (125 frames = 80,000
  samples each; the short tail is kept).

Per raw video:

1. face tube (:mod:`edtalk.face.tube`): detection on frames decoded at ≤640 px, one square box
   for the whole video (longest tube, end frame included);
2. frames decoded again at full size and resampled to a real 25 fps by timestamps (bug 4),
   the box cut and scaled to 256²;
3. dlib 68 landmarks (upsample 0) and a face box on every 256² crop — one row per frame, NaN
   where no face, then interpolated (bug 11); the box is dlib's widened towards S3FD framing;
4. audio decoded to 16 kHz mono and cut frame-exactly with the video: T frames ⇔ T·640
   samples (bug 12); Wav2Lip mel windows per frame (:func:`edtalk.audio.mel_windows`);
5. frames written at `size` (PIL bicubic from the 256² crop; landmarks and boxes scaled).

Each clip's files are written atomically (temporary name, then rename) and a source counts as
done only when ``OUT/.prepared/<source>.json`` lists its clips and they are all present, so an
interrupted run resumes where it stopped.  Sources run in parallel worker processes.  At the
end train.json/test.json are written: the official split shipped with the package
(:func:`official_split`) decides known speakers/videos; unknown MEAD speakers are test speakers
iff listed in :data:`edtalk.data.layout.MEAD_TEST_SPEAKERS`, unknown HDTF videos go to the test
split for a stable 20 % of video-name hashes.

Library::

    prepare("mead", raw_dir, out_dir, workers=4, size=256, lmdb=True)  # → PrepareSummary

CLI (edtalk/cli.py; data_preprocess/prepare.py runs it)::

    edtalk prepare-data --dataset mead|hdtf --raw DIR --out DIR [--workers N]
        [--size 256] [--lmdb] [--quiet]
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from edtalk.data import layout
from edtalk.errors import EDTalkError, FaceNotFoundError, InputError

__all__ = ["Source", "PrepareSummary", "find_sources", "official_split", "assign_split", "prepare_source",
           "prepare", "CROP_SIZE", "HDTF_TEST_FRACTION"]

CROP_SIZE = 256  # analysis size: landmarks and boxes are found on 256² crops whatever the output size
DETECT_SIDE = 640  # the tube's detection pass decodes at most this many pixels on the long side
HDTF_TEST_FRACTION = 0.2  # ~77 of 385 official videos
MARKERS = ".prepared"
_BATCH = 32


@dataclass(frozen=True)
class Source:
    """One raw video: its path, a key unique in the dataset, and the clip name(s) it makes."""

    kind: str
    key: str  # MEAD: the clip name; HDTF: the video name
    path: Path

    def clip_name(self, k: int) -> str:
        return self.key if self.kind == "mead" else layout.format_hdtf_name(self.key, k + 1)


@dataclass
class PrepareSummary:
    out: Path
    prepared: list = field(default_factory=list)  # source keys processed now
    skipped: list = field(default_factory=list)  # complete from an earlier run
    failed: dict = field(default_factory=dict)  # source key (or path) → reason
    clips: int = 0  # clips in the tree
    train: int = 0
    test: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"{self.out}: {self.clips} clips ({self.train} train / {self.test} test); "
                 f"{len(self.prepared)} sources prepared, {len(self.skipped)} skipped (already complete), "
                 f"{len(self.failed)} failed, {self.seconds:.1f} s"]
        for key, reason in sorted(self.failed.items())[:50]:
            lines.append(f"  failed {key}: {reason}")
        if len(self.failed) > 50:
            lines.append(f"  … and {len(self.failed) - 50} more (see {self.out / 'prepare_report.json'})")
        return "\n".join(lines)


# --------------------------------------------------------------------------- sources and splits


def find_sources(kind: str, raw: os.PathLike) -> Tuple[List[Source], dict]:
    """Raw videos of a MEAD or HDTF download; returns (sources, {path: why it is not usable})."""
    raw = Path(raw)
    if kind not in layout.KINDS:
        raise InputError(f"--dataset must be one of {', '.join(layout.KINDS)}, got {kind!r}")
    if not raw.is_dir():
        raise InputError(f"raw folder does not exist: {raw}")
    sources, rejected = [], {}
    if kind == "mead":
        for path in sorted(raw.glob("*/video/front/*/level_*/*.mp4")):
            speaker, emotion, level = path.parts[-6], path.parts[-3], path.parts[-2]
            try:
                name = layout.format_mead_name(speaker, emotion, int(level.split("_", 1)[1]), int(path.stem))
            except (InputError, ValueError) as exc:
                rejected[str(path)] = f"not a MEAD front-camera clip name ({exc})"
                continue
            sources.append(Source("mead", name, path))
    else:
        for path in sorted(raw.glob("*.mp4")):
            try:
                layout.format_hdtf_name(path.stem, 1)
            except InputError:
                rejected[str(path)] = "video name not usable in an HDTF clip name (letters, digits, _ . - only)"
                continue
            sources.append(Source("hdtf", path.stem, path))
    if not sources:
        pattern = "<ID>/video/front/<emotion>/level_<k>/<nnn>.mp4" if kind == "mead" else "<video>.mp4"
        raise InputError(f"no raw {kind.upper()} videos found in {raw} (expected {pattern})")
    return sources, rejected


@lru_cache(maxsize=1)
def official_split() -> dict:
    """{"train": [...], "test": [...]}: the official clip lists shipped in the package."""
    folder = Path(__file__).resolve().parent / "splits"
    return {split: json.loads((folder / f"{split}.json").read_text()) for split in layout.SPLITS}


@lru_cache(maxsize=2)
def _official_groups(kind: str) -> dict:
    groups = {}
    for split, names in official_split().items():
        for name in names:
            if layout.name_kind(name) == kind:
                groups[layout.group_of(name, kind)] = split
    return groups


def assign_split(name: str, kind: str) -> str:
    """'train' or 'test' for a clip: the official split of its speaker/video, else the fallback rule."""
    group = layout.group_of(name, kind)
    known = _official_groups(kind).get(group)
    if known is not None:
        return known
    if kind == "mead":
        return "test" if group in layout.MEAD_TEST_SPEAKERS else "train"
    digest = int(hashlib.sha1(group.encode("utf-8")).hexdigest()[:8], 16)
    return "test" if digest / 0x100000000 < HDTF_TEST_FRACTION else "train"


# --------------------------------------------------------------------------- one source


def _marker_path(out: Path, source: Source) -> Path:
    return out / MARKERS / f"{source.key}.json"


def _is_complete(out: Path, source: Source) -> bool:
    marker = _marker_path(out, source)
    if not marker.is_file():
        return False
    try:
        clips = json.loads(marker.read_text())["clips"]
    except (OSError, ValueError, KeyError):
        return False
    return all(layout.clip_path(out, part, name).is_file()
               for name in clips for part in layout.REQUIRED_DIRS + ("mel",))


def _face_rows(crops: np.ndarray, landmarker) -> Tuple[np.ndarray, np.ndarray]:
    """Per 256² crop: 68 landmarks and an S3FD-like face box of the largest dlib face; NaN if none."""
    from edtalk.face.landmarks import box_area
    from edtalk.face.tube import BOX_SCALE, scale_box

    lms = np.full((len(crops), 68, 2), np.nan)
    boxes = np.full((len(crops), 4), np.nan)
    for i, crop in enumerate(crops):
        found = landmarker.detect(crop, upsample=0)
        if not found:
            continue
        box = max(found, key=box_area)
        lms[i] = landmarker.landmarks(crop, box)
        boxes[i] = scale_box(box, *BOX_SCALE["dlib"])
    return lms, boxes


def _fill(rows: np.ndarray, what: str, key: str) -> np.ndarray:
    from edtalk.face.tube import fill_track

    flat = rows.reshape(len(rows), -1)
    try:
        return fill_track(flat).reshape(rows.shape)
    except FaceNotFoundError:
        raise FaceNotFoundError(f"no face {what} in any frame of {key}") from None


def _scale_points(points: np.ndarray, size: int) -> np.ndarray:
    from edtalk.data.datasets import scale_landmarks

    return scale_landmarks(points, CROP_SIZE, size)


def _clip_boxes(boxes: np.ndarray, size: int) -> np.ndarray:
    """256² boxes → int boxes at `size`, clipped to the frame, at least one pixel wide and high."""
    x1y1 = np.clip(np.floor(_scale_points(boxes[:, :2], size)), 0, size - 2)
    x2y2 = np.clip(np.ceil(_scale_points(boxes[:, 2:], size)), x1y1 + 1, size - 1)
    return np.concatenate([x1y1, x2y2], axis=1).astype(np.int64)


def _atomic_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    os.replace(tmp, path)


def _write_media(out: Path, name: str, frames: np.ndarray, wav: np.ndarray) -> None:
    import soundfile as sf

    from edtalk.video import write_video

    audio = layout.clip_path(out, "audio", name)
    tmp = audio.with_name(audio.name + ".tmp.wav")
    sf.write(str(tmp), wav, layout.SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, audio)
    write_video(layout.clip_path(out, "video", name), frames, fps=layout.FPS, audio=audio)


def _segment_audio(wav: np.ndarray, start: int, count: int) -> np.ndarray:
    """Samples of frames [start, start+count): exactly count·640, zero-padded past the end."""
    spf = layout.SAMPLES_PER_FRAME
    seg = wav[start * spf:(start + count) * spf]
    return np.pad(seg, (0, count * spf - len(seg))).astype(np.float32)


def _tube(source: Source, frame_shape: Tuple[int, int]):
    """Detection pass: stream the video at ≤640 px and 25 fps; the §7.2 tube for full-size frames."""
    from edtalk.face.tube import stream_face_tube
    from edtalk.video import iter_video

    for upsample in (0, 1):  # 1 finds faces half the size but is 4x slower: only when 0 finds none
        batches = iter_video(source.path, batch=_BATCH, max_side=DETECT_SIDE, fps=layout.FPS)
        try:
            return stream_face_tube(batches, frame_shape, "dlib", size=CROP_SIZE, upsample=upsample)
        except FaceNotFoundError:
            pass
    raise FaceNotFoundError(f"no face found in {source.path}")


def _write_side_files(out: Path, name: str, landmarks: np.ndarray, boxes: np.ndarray, size: int) -> None:
    from edtalk.audio import mel_windows

    wav = layout.clip_path(out, "audio", name)
    try:
        mel = mel_windows(str(wav))[:, 0].numpy().astype(np.float32)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    _atomic_npy(layout.clip_path(out, "mel", name), mel)
    _atomic_npy(layout.clip_path(out, "bbox", name), _clip_boxes(boxes, size))
    _atomic_npy(layout.clip_path(out, "landmark", name), _scale_points(landmarks, size).astype(np.float32))


def prepare_source(source: Source, out: os.PathLike, size: int = CROP_SIZE) -> list:
    """Write the clip(s) of one raw video into the tree at `out`; returns [(name, frames), …].

    Two decodes of the video, never all of it in memory: the detection pass at ≤640 px, then the
    full-size pass that crops, writes each clip's MP4 + WAV as soon as it is complete (HDTF: every
    125 frames) and keeps only per-frame landmark rows; the side files follow once the whole
    video's rows are known (faceless frames are interpolated across clip borders).
    """
    from edtalk.audio import load_audio
    from edtalk.face.landmarks import get_landmarker
    from edtalk.face.tube import crop_tube, resize_crops
    from edtalk.video import VideoReader

    out = Path(out)
    wav = load_audio(source.path)
    reader = VideoReader(source.path, fps=layout.FPS)
    tube = _tube(source, (reader.height, reader.width))
    landmarker = get_landmarker("dlib")
    segment = layout.HDTF_CLIP_FRAMES if source.kind == "hdtf" else None
    rows: list = []  # (landmarks, boxes) per written clip
    lengths: list = []
    pending: list = []

    def flush():
        crops = np.concatenate(pending)
        pending.clear()
        rows.append(_face_rows(crops, landmarker))
        frames = crops if size == CROP_SIZE else resize_crops(crops, size)
        _write_media(out, source.clip_name(len(lengths)), frames, _segment_audio(wav, sum(lengths), len(crops)))
        lengths.append(len(crops))

    for batch in reader.batches(_BATCH):
        crops = crop_tube(batch, tube)
        while len(crops):
            room = segment - sum(map(len, pending)) if segment else len(crops)
            pending.append(crops[:room])
            crops = crops[room:]
            if segment and sum(map(len, pending)) == segment:
                flush()
    if pending:
        flush()
    landmarks = _fill(np.concatenate([r[0] for r in rows]), "landmarks", source.key)
    boxes = _fill(np.concatenate([r[1] for r in rows]), "box", source.key)
    clips, start = [], 0
    for k, count in enumerate(lengths):
        name = source.clip_name(k)
        _write_side_files(out, name, landmarks[start:start + count], boxes[start:start + count], size)
        clips.append((name, count))
        start += count
    marker = _marker_path(out, source)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({"source": str(source.path), "clips": [c[0] for c in clips],
                               "frames": [c[1] for c in clips], "size": size}))
    os.replace(tmp, marker)
    return clips


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core: no oversubscription


def _run(job):
    source, out, size = job
    try:
        return source.key, prepare_source(source, out, size), None
    except EDTalkError as exc:
        return source.key, None, str(exc).splitlines()[0]
    except Exception as exc:  # noqa: BLE001 — one broken video must not stop a day-long run
        return source.key, None, f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- the whole dataset


def _prepared_clips(out: Path) -> list:
    names = []
    for marker in sorted((out / MARKERS).glob("*.json")):
        try:
            names += json.loads(marker.read_text())["clips"]
        except (OSError, ValueError, KeyError):
            continue
    return names


def prepare(dataset: str, raw: os.PathLike, out: os.PathLike, workers: Optional[int] = None, size: int = CROP_SIZE,
            lmdb: bool = False, progress: bool = True) -> PrepareSummary:
    """Prepare every raw video of a MEAD or HDTF download into a training tree (see the module doc).

    Sources already complete in `out` are skipped; failures are collected, not raised.  Writes
    train.json/test.json for all clips prepared so far and ``prepare_report.json``; with `lmdb`
    also the frame store (:func:`edtalk.data.store.build_frame_store`).
    """
    from tqdm.auto import tqdm

    t0 = time.time()
    out = Path(out)
    if int(size) < 16:
        raise InputError(f"--size must be at least 16, got {size}")
    size = int(size)
    sources, rejected = find_sources(dataset, raw)
    for part in layout.REQUIRED_DIRS + ("mel", MARKERS):
        (out / part).mkdir(parents=True, exist_ok=True)
    summary = PrepareSummary(out=out, failed=dict(rejected))
    done = {s.key for s in sources if _is_complete(out, s)}
    todo = [s for s in sources if s.key not in done]
    summary.skipped = sorted(done)
    workers = max(1, min(int(workers or os.cpu_count() or 1), len(todo) or 1))
    jobs = [(s, out, size) for s in todo]
    bar = tqdm(total=len(jobs), desc=f"prepare {dataset}", unit="video", disable=not progress)
    if workers == 1:
        results = map(_run, jobs)
        pool = None
    else:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(workers, initializer=_worker_init)
        results = pool.imap_unordered(_run, jobs)
    try:
        for key, clips, error in results:
            if error is None:
                summary.prepared.append(key)
            else:
                summary.failed[key] = error
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    names = _prepared_clips(out)
    splits = {s: [n for n in names if assign_split(n, dataset) == s] for s in layout.SPLITS}
    for split, members in splits.items():
        layout.write_split(out, split, members)
    summary.clips, summary.train, summary.test = len(names), len(splits["train"]), len(splits["test"])
    if lmdb and names:
        from edtalk.data.store import build_frame_store

        build_frame_store(out, progress=progress)
    summary.seconds = time.time() - t0
    report = {"dataset": dataset, "raw": str(raw), "size": size, "clips": summary.clips, "train": summary.train,
              "test": summary.test, "prepared": summary.prepared, "skipped": summary.skipped,
              "failed": summary.failed, "seconds": round(summary.seconds, 1)}
    (out / "prepare_report.json").write_text(json.dumps(report, indent=1))
    return summary


if __name__ == "__main__":  # the command moved into the `edtalk` command line
    print("edtalk: error: run `edtalk prepare-data ...` (or `python data_preprocess/prepare.py ...`)", file=sys.stderr)
    sys.exit(2)
