"""Video I/O with the ffmpeg bundled in imageio-ffmpeg (no system ffmpeg needed).

Frames are uint8 RGB arrays [T, H, W, 3]. Writing is atomic: the MP4 is written to a temporary
file beside the target and renamed only when ffmpeg succeeded, so a failure never leaves a
half-written output.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from .errors import EDTalkError, InputError

FPS = 25
PathLike = Union[str, os.PathLike]


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _downscale_filter(max_side: int) -> list:
    """ffmpeg filter: shrink so the longer side is at most max_side (even sizes, aspect kept)."""
    w = f"if(gte(iw,ih),min(iw,{max_side}),-2)"
    h = f"if(gte(iw,ih),-2,min(ih,{max_side}))"
    return ["-vf", f"scale='{w}':'{h}':flags=area"]


def read_video(path: PathLike, max_frames: Optional[int] = None,
               max_side: Optional[int] = None) -> Tuple[np.ndarray, float]:
    """Decode a video to RGB uint8 frames [T,H,W,3]; returns (frames, fps).

    `max_side` lets ffmpeg scale large videos down while decoding (memory: a 1080p frame is 6 MB).
    """
    import logging

    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise InputError(f"video not found: {path}")
    # imageio-ffmpeg logs a warning whenever the output size differs from the source: intended here.
    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24",
                                            output_params=_downscale_filter(max_side) if max_side else None)
        meta = next(reader)
        width, height = meta["size"]
        frames = []
        for raw in reader:
            frames.append(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3))
            if max_frames is not None and len(frames) >= max_frames:
                reader.close()
                break
    except (OSError, RuntimeError, StopIteration, KeyError) as exc:
        raise InputError(f"cannot read video {path}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}") from None
    if not frames:
        raise InputError(f"video has no frames: {path}")
    fps = float(meta.get("fps") or FPS)
    return np.stack(frames), fps


def resample_indices(num_frames: int, fps_in: float, fps_out: float = FPS) -> np.ndarray:
    """Source frame index for each output frame when converting fps_in → fps_out.

    Output frame j shows the source frame on screen at time j/fps_out (nearest-earlier, like
    ffmpeg's fps filter with round=down); the output spans the same duration.
    """
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    if abs(fps_in - fps_out) < 1e-6:
        return np.arange(num_frames)
    count = max(1, int(round(num_frames * fps_out / fps_in)))
    idx = np.floor(np.arange(count) * fps_in / fps_out + 1e-6).astype(np.int64)
    return np.clip(idx, 0, num_frames - 1)


def resample_fps(frames: np.ndarray, fps_in: float, fps_out: float = FPS) -> np.ndarray:
    """Resample a frame sequence to fps_out by frame selection (keeps the duration)."""
    return frames[resample_indices(len(frames), fps_in, fps_out)]


def _write_wav(path: PathLike, audio: np.ndarray, sample_rate: int) -> None:
    from scipy.io import wavfile

    pcm = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    wavfile.write(str(path), sample_rate, (pcm * 32767.0).astype(np.int16))


def write_video(
    path: PathLike,
    frames: np.ndarray,
    fps: float = FPS,
    audio: Union[None, PathLike, np.ndarray] = None,
    sample_rate: int = 16000,
    crf: int = 18,
) -> Path:
    """Write uint8 RGB frames [T,H,W,3] as H.264 (yuv420p) MP4, optionally with AAC audio.

    `audio` is a path to any audio file ffmpeg reads, or a mono float array in [-1,1] at
    `sample_rate`. The audio is trimmed to the video's duration. Even frame sizes are required
    by yuv420p; odd sizes are padded by one pixel.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty uint8 array [T,H,W,3], got {frames.dtype} {frames.shape}")
    if not path.parent.exists():
        raise InputError(f"output folder does not exist: {path.parent}")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"output folder is not writable: {path.parent}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    height, width = frames.shape[1:3]

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".edtalk-") as tmp:
        cmd = [ffmpeg_exe(), "-y", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps}", "-i", "-"]
        if audio is not None:
            if isinstance(audio, np.ndarray):
                wav = Path(tmp) / "audio.wav"
                _write_wav(wav, audio, sample_rate)
                audio = wav
            cmd += ["-i", str(audio)]
        cmd += ["-map", "0:v:0"]
        if audio is not None:
            cmd += ["-map", "1:a:0", "-c:a", "aac", "-b:a", "128k", "-shortest"]
        tmp_out = Path(tmp) / ("out" + (path.suffix or ".mp4"))
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), "-movflags", "+faststart", str(tmp_out)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc.stdin.write(np.ascontiguousarray(frames).tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.wait() != 0:
            raise EDTalkError(f"ffmpeg failed writing {path}: {err.strip().splitlines()[-1] if err.strip() else 'unknown error'}")
        os.replace(tmp_out, path)
    return path


def probe_video(path: PathLike) -> dict:
    """Exact facts of a media file from one ffmpeg stream copy (no decoding).

    Returns {'frames', 'fps', 'width', 'height', 'duration', 'audio', 'video',
    'num_video_streams', 'num_audio_streams'}; InputError if ffmpeg cannot read it.
    """
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-map", "0:v:0?",
                           "-c", "copy", "-f", "null", "-", "-progress", "pipe:1"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "unknown error"
        raise InputError(f"cannot read video {path}: {last}")
    source = proc.stderr.split("Output #0", 1)[0]  # the input's description only
    streams = [line for line in source.splitlines() if "Stream #" in line]
    video = [line for line in streams if "Video:" in line]
    info = {"frames": 0, "fps": 0.0, "width": 0, "height": 0, "duration": 0.0,
            "num_video_streams": len(video), "num_audio_streams": sum("Audio:" in line for line in streams)}
    info["video"], info["audio"] = info["num_video_streams"] > 0, info["num_audio_streams"] > 0
    if video:
        size = re.search(r"\b(\d{2,5})x(\d{2,5})\b", video[0])
        fps = re.search(r"([0-9.]+) fps", video[0])
        if size:
            info["width"], info["height"] = int(size.group(1)), int(size.group(2))
        if fps:
            info["fps"] = float(fps.group(1))
    duration = re.search(r"Duration: (\d+):(\d+):([0-9.]+)", source)
    if duration:
        h, m, sec = duration.groups()
        info["duration"] = int(h) * 3600 + int(m) * 60 + float(sec)
    frames = re.findall(r"^frame=(\d+)", proc.stdout, flags=re.M)
    if frames:
        info["frames"] = int(frames[-1])
    return info
