"""Rendered frames → pixels → an MP4 with the driving sound (or frames in memory).

Every batch the engine renders goes through the same steps: float frames → uint8 (clamped, or the
official per-clip min–max), optional face restoration (`--face-sr`), paste-back into the full
frame, then either a video piped into ffmpeg batch by batch (memory stays flat) or a list in memory
(`EDTalkPipeline.__call__`). A failed run leaves neither a video nor a frames folder behind.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import torch

from .. import audio as audio_lib
from ..errors import InputError
from .engine import legacy_minmax_uint8, to_uint8

Sound = Union[None, str, Path, np.ndarray]  # a media file (kept at its own quality) or 16 kHz mono samples
OUTPUT_SUFFIXES = (".mp4", ".mov", ".mkv")


@dataclass
class GenerationResult:
    """What a generation written to a file was: its path, mode, frame count and generator variant."""

    path: Path
    mode: str
    num_frames: int
    variant: str
    info: Dict[str, str] = field(default_factory=dict)


class Extremes:
    """Running min/max of rendered frames (first pass of --legacy-normalize)."""

    def __init__(self):
        self.lo, self.hi = float("inf"), float("-inf")

    def update(self, frames: torch.Tensor, paste=None) -> None:
        self.lo = min(self.lo, float(frames.float().min()))
        self.hi = max(self.hi, float(frames.float().max()))


class Pixels:
    """Float frames → uint8 images: the mapping, then face restoration, then paste-back."""

    def __init__(self, mapping: Callable[[torch.Tensor], np.ndarray] = to_uint8, restore=None):
        self.mapping, self.restore = mapping, restore

    @classmethod
    def legacy(cls, extremes: Extremes, restore=None) -> "Pixels":
        return cls(lambda frames: legacy_minmax_uint8(frames, extremes.lo, extremes.hi), restore)

    def __call__(self, frames: torch.Tensor, paste=None) -> np.ndarray:
        images = self.mapping(frames)
        if self.restore is not None:
            images = self.restore(images)
        if paste is not None:
            images = paste(images)
        return images


class MemorySink:
    """Collects the clip's uint8 frames [T,H,W,3] (or, with `pixels=None`, the model's own frames
    [T,3,H,W] where they are)."""

    def __init__(self, pixels: Optional[Pixels]):
        self.pixels = pixels
        self.parts: List = []

    def write(self, frames: torch.Tensor, paste=None) -> None:
        self.parts.append(self.pixels(frames, paste) if self.pixels is not None else frames.detach())

    def frames(self):
        if self.pixels is None:
            return torch.cat(self.parts)
        return np.concatenate(self.parts) if self.parts else np.zeros((0, 0, 0, 3), np.uint8)


class VideoSink:
    """Rendered batches → pixels → MP4 (piped to ffmpeg) and optional PNGs (`save_frames`).

    `out` is a path, or an open binary stream (`is_binary_stream`: stdout, a pipe) that gets a
    fragmented MP4 as the frames are made. The video is opened at the first batch (its size is
    known then). Leaving the `with` block by an exception leaves neither a video file nor a frames
    folder behind (a stream ends short).
    """

    def __init__(self, out, num_frames: int, sound: Sound, pixels: Pixels, save_frames=None):
        self.out = out if is_binary_stream(out) else Path(out)
        self.num_frames, self.sound, self.pixels = num_frames, sound, pixels
        self.save_frames = Path(save_frames) if save_frames else None
        self.writer = None
        self.count = 0
        self.png_dir = None
        if self.save_frames is not None:
            self.save_frames.parent.mkdir(parents=True, exist_ok=True)
            self.png_dir = Path(tempfile.mkdtemp(dir=self.save_frames.parent, prefix=".frames-"))

    def write(self, frames: torch.Tensor, paste=None) -> None:
        self.write_images(self.pixels(frames, paste))

    def write_images(self, images: np.ndarray) -> None:
        from ..video import StreamVideoWriter, VideoWriter

        if self.writer is None:
            kind = StreamVideoWriter if is_binary_stream(self.out) else VideoWriter
            self.writer = kind(self.out, images.shape[2], images.shape[1], fps=audio_lib.FPS, audio=self.sound,
                               num_frames=self.num_frames)
        self.writer.write(images)
        if self.png_dir is not None:
            from PIL import Image

            for image in images:
                Image.fromarray(image).save(self.png_dir / f"{self.count:06d}.png")
                self.count += 1

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.writer.close()
            if self.png_dir is not None:
                if self.save_frames.exists():
                    shutil.rmtree(self.save_frames)
                os.replace(self.png_dir, self.save_frames)
        else:
            if self.writer is not None:
                self.writer.abort()
            if self.png_dir is not None:
                shutil.rmtree(self.png_dir, ignore_errors=True)
        return False


def write_frames(out, frames: np.ndarray, sound: Sound = None, batch: int = 64) -> Path:
    """uint8 frames [T,H,W,3] → an MP4 at 25 fps with `sound` cut or padded to the clip (atomic)."""
    out = Path(out)
    check_output_path(out)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise InputError(f"frames must be uint8 [T,H,W,3] with T > 0, got {frames.dtype} {frames.shape}",
                         field="frames")
    with VideoSink(out, len(frames), sound, Pixels()) as sink:
        for start in range(0, len(frames), batch):
            sink.write_images(frames[start:start + batch])
    return out


def is_binary_stream(out) -> bool:
    """An open binary stream with a file descriptor (stdout, a pipe, an open file) rather than a path."""
    if isinstance(out, (str, os.PathLike)) or not hasattr(out, "write") or not hasattr(out, "fileno"):
        return False
    try:
        out.fileno()
    except (OSError, ValueError):  # io.BytesIO and friends have no descriptor
        return False
    return "b" in getattr(out, "mode", "b")


def has_audio_track(path) -> bool:
    from ..video import probe_video

    return probe_video(path)["audio"]


def check_output_path(out: Path) -> None:
    """A writable video path (its folder made); an InputError about `out` otherwise."""
    out = Path(out)
    if out.exists() and out.is_dir():
        raise InputError(f"output path is a directory: {out}", field="out")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {parent}: {exc.strerror}", field="out") from None
    if not os.access(parent, os.W_OK):
        raise InputError(f"output folder is not writable: {parent}", field="out")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"output must be a video file (.mp4), got {out.name}", field="out")


__all__ = ["GenerationResult", "Extremes", "Pixels", "MemorySink", "VideoSink", "write_frames", "has_audio_track",
           "check_output_path", "is_binary_stream", "Sound"]
