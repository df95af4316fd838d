"""Video I/O with the ffmpeg bundled in imageio-ffmpeg (no system ffmpeg needed).

Frames are uint8 RGB arrays [T, H, W, 3]. Writing is atomic: the MP4 is written to a temporary
file beside the target and renamed only when ffmpeg succeeded, so a failure never leaves a
half-written output.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import numpy as np

from .errors import EDTalkError, InputError

FPS = 25
PathLike = Union[str, os.PathLike]


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _decode_filters(max_side: Optional[int], fps: Optional[float]) -> list:
    """ffmpeg -vf chain: resample by presentation timestamps, then shrink.

    `fps=N:round=up` gives output frame j the input frame on screen at time j/N (nearest earlier),
    so variable-frame-rate (phone) clips land at the right times; ffmpeg applies the stream's
    rotation (display matrix) before these filters (autorotate is on by default).
    """
    chain = []
    if fps:
        chain.append(f"fps={fps:g}:round=up")
    if max_side:
        w = f"if(gte(iw,ih),min(iw,{max_side}),-2)"
        h = f"if(gte(iw,ih),-2,min(ih,{max_side}))"
        chain.append(f"scale='{w}':'{h}':flags=area")
    return ["-vf", ",".join(chain)] if chain else []


class VideoReader:
    """Decode a video batch by batch (RGB uint8 [n,H,W,3]); nothing is held beyond one batch.

    `fps` resamples by timestamps (None keeps every decoded frame); `max_side` lets ffmpeg scale
    large videos down while decoding (memory: a 1080p frame is 6 MB).
    """

    def __init__(self, path: PathLike, max_side: Optional[int] = None, fps: Optional[float] = None):
        import logging

        import imageio_ffmpeg

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"video not found: {self.path}")
        # imageio-ffmpeg logs a warning whenever the output size differs from the source: intended here.
        logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)
        try:
            self._reader = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24",
                                                      output_params=_decode_filters(max_side, fps) or None)
            meta = next(self._reader)
        except (OSError, RuntimeError, StopIteration, KeyError) as exc:
            raise self._error(exc) from None
        self.width, self.height = meta["size"]
        self.fps = float(fps or meta.get("fps") or FPS)

    def _error(self, exc) -> InputError:
        text = str(exc).strip()
        return InputError(f"cannot read video {self.path}: {text.splitlines()[-1] if text else exc}")

    def close(self) -> None:
        self._reader.close()

    def batches(self, size: int = 16, max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
        """Consecutive frames, `size` at a time (the last batch may be shorter)."""
        batch, count = [], 0
        try:
            for raw in self._reader:
                batch.append(np.frombuffer(raw, dtype=np.uint8).reshape(self.height, self.width, 3))
                count += 1
                if len(batch) == size:
                    yield np.stack(batch)
                    batch = []
                if max_frames is not None and count >= max_frames:
                    break
        except (OSError, RuntimeError) as exc:
            raise self._error(exc) from None
        finally:
            self._reader.close()
        if batch:
            yield np.stack(batch)
        if count == 0:
            raise InputError(f"video has no frames: {self.path}")


def iter_video(path: PathLike, batch: int = 16, max_side: Optional[int] = None,
               fps: Optional[float] = FPS) -> Iterator[np.ndarray]:
    """Frame batches of a video, resampled to `fps` by timestamps (25 by default)."""
    return VideoReader(path, max_side=max_side, fps=fps).batches(batch)


def read_video(path: PathLike, max_frames: Optional[int] = None,
               max_side: Optional[int] = None, fps: Optional[float] = None) -> Tuple[np.ndarray, float]:
    """Decode a whole video to RGB uint8 frames [T,H,W,3]; returns (frames, fps).

    `fps` resamples by presentation timestamps (None: every decoded frame at the nominal rate).
    """
    reader = VideoReader(path, max_side=max_side, fps=fps)
    frames = np.concatenate(list(reader.batches(64, max_frames)))
    return frames[:max_frames] if max_frames else frames, reader.fps


def resample_indices(num_frames: int, fps_in: float, fps_out: float = FPS) -> np.ndarray:
    """Source frame index for each output frame when converting a constant fps_in → fps_out.

    Output frame j shows the source frame on screen at time j/fps_out (nearest-earlier, like
    ffmpeg's `fps=…:round=up`, which the decoders use on real timestamps); the output spans the
    same duration.
    """
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    if abs(fps_in - fps_out) < 1e-6:
        return np.arange(num_frames)
    count = max(1, int(round(num_frames * fps_out / fps_in)))
    idx = np.floor(np.arange(count) * fps_in / fps_out + 1e-6).astype(np.int64)
    return np.clip(idx, 0, num_frames - 1)


def resample_fps(frames: np.ndarray, fps_in: float, fps_out: float = FPS) -> np.ndarray:
    """Resample a constant-rate frame sequence to fps_out by frame selection (keeps the duration)."""
    return frames[resample_indices(len(frames), fps_in, fps_out)]


def _write_wav(path: PathLike, audio: np.ndarray, sample_rate: int) -> None:
    from scipy.io import wavfile

    pcm = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    wavfile.write(str(path), sample_rate, (pcm * 32767.0).astype(np.int16))


class VideoWriter:
    """Stream uint8 RGB frames [n,H,W,3] into an H.264 (yuv420p) MP4 through ffmpeg's stdin.

    Frames go to ffmpeg as they come (nothing is held). `audio` is a media file whose first audio
    stream is encoded as AAC at its own sample rate and channel count (`audio_bitrate`), or a mono
    float array at `sample_rate`. With `num_frames` the sound is cut or padded with silence to
    exactly num_frames/fps seconds. The file is written beside the target and renamed only when
    ffmpeg succeeded (`close`); `abort` (or an exception inside `with`) leaves no output.
    """

    def __init__(self, path: PathLike, width: int, height: int, fps: float = FPS,
                 audio: Union[None, PathLike, np.ndarray] = None, sample_rate: int = 16000,
                 num_frames: Optional[int] = None, crf: int = 18, audio_bitrate: str = "192k"):
        self.path = Path(path)
        if not self.path.parent.exists():
            raise InputError(f"output folder does not exist: {self.path.parent}")
        if not os.access(self.path.parent, os.W_OK):
            raise InputError(f"output folder is not writable: {self.path.parent}")
        self._tmp = tempfile.TemporaryDirectory(dir=self.path.parent, prefix=".edtalk-")
        self._tmp_out = Path(self._tmp.name) / ("out" + (self.path.suffix or ".mp4"))
        self._start(width, height, fps, audio, sample_rate, num_frames, crf, audio_bitrate,
                    ["-movflags", "+faststart", str(self._tmp_out)], stdout=None)

    def _start(self, width, height, fps, audio, sample_rate, num_frames, crf, audio_bitrate, output: list,
               stdout) -> None:
        """Start ffmpeg: raw frames on its stdin (+ the sound), H.264 + AAC into `output` (its last flags)."""
        self.size = (int(height), int(width))
        self.pad = (self.size[0] % 2, self.size[1] % 2)  # yuv420p needs even sizes: pad by one pixel
        self.frames_written = 0
        if isinstance(audio, np.ndarray):
            wav = Path(self._tmp.name) / "audio.wav"
            _write_wav(wav, audio, sample_rate)
            audio = wav
        out_h, out_w = self.size[0] + self.pad[0], self.size[1] + self.pad[1]
        cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{out_w}x{out_h}", "-r", f"{fps}", "-i", "-"]
        if audio is not None:
            cmd += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", audio_bitrate,
                    "-af", "apad"]  # pad short sound with silence, then cut to the video's length
            cmd += ["-t", f"{num_frames / fps:.6f}"] if num_frames else ["-shortest"]
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), *output]
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=stdout, stderr=self._err)

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or \
                tuple(frames.shape[1:3]) != self.size:
            raise ValueError(f"frames must be uint8 [n,{self.size[0]},{self.size[1]},3], got {frames.dtype} {frames.shape}")
        if any(self.pad):
            frames = np.pad(frames, ((0, 0), (0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frames).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg died: close() reports its error
        self.frames_written += len(frames)

    def close(self) -> Path:
        """Finish the file and move it into place; EDTalkError if ffmpeg failed."""
        try:
            self._finish()
            os.replace(self._tmp_out, self.path)
        finally:
            self._cleanup()
        return self.path

    def _finish(self) -> None:
        """Let ffmpeg end the file; EDTalkError if it failed."""
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        code = self._proc.wait()
        self._err.seek(0)
        err = self._err.read().decode(errors="replace").strip()
        if code != 0 or self.frames_written == 0:
            reason = err.splitlines()[-1] if err else ("no frames" if not self.frames_written else "unknown error")
            raise EDTalkError(f"ffmpeg failed writing {self.path}: {reason}")

    def abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        for stream in (self._proc.stdin, self._err):
            try:
                stream.close()
            except (OSError, BrokenPipeError):
                pass
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


class StreamVideoWriter(VideoWriter):
    """:class:`VideoWriter` into an open binary stream (a pipe, stdout) instead of a file: a
    fragmented MP4 (the header, then a fragment per keyframe, one a second, with no B-frames or
    look-ahead) that a player or another program reads while it is written; the sound keeps its
    sync (the header's edit list skips the AAC priming). What has been written
    cannot be taken back: a failure ends the stream short."""

    def __init__(self, stream, width: int, height: int, fps: float = FPS,
                 audio: Union[None, PathLike, np.ndarray] = None, sample_rate: int = 16000,
                 num_frames: Optional[int] = None, crf: int = 18, audio_bitrate: str = "192k"):
        self.path = Path("-")
        self._tmp = tempfile.TemporaryDirectory(prefix="edtalk-")  # the sound of an array, as a WAV
        stream.flush()  # what was written to it before goes first
        # delay_moov: the header waits for the first fragment, so its edit list can skip the AAC
        # encoder's priming (with empty_moov the sound plays 1024 samples late: 64 ms at 16 kHz).
        output = ["-g", str(int(round(fps))), "-tune", "zerolatency", "-f", "mp4",
                  "-movflags", "frag_keyframe+delay_moov+default_base_moof", "pipe:1"]
        self._start(width, height, fps, audio, sample_rate, num_frames, crf, audio_bitrate, output,
                    stdout=stream.fileno())

    def close(self) -> Path:
        try:
            self._finish()
        finally:
            self._cleanup()
        return self.path


@contextmanager
def stdout_for_video():
    """This process's stdout as a binary stream for a video (`StreamVideoWriter`), while anything
    else written to stdout meanwhile — Python's prints, native libraries, child processes — goes to
    stderr, so nothing mixes into the video's bytes. Refuses a terminal."""
    if os.isatty(1):
        raise InputError("--out - writes the video's bytes to stdout: pipe it into a player or a file "
                         "(e.g. `| ffplay -`)", field="out", plain="the video goes to stdout: pipe it somewhere")
    sys.stdout.flush()
    original = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(os.dup(original), "wb") as video:
            yield video
    finally:
        sys.stdout.flush()
        os.dup2(original, 1)
        os.close(original)


def write_video(
    path: PathLike,
    frames: np.ndarray,
    fps: float = FPS,
    audio: Union[None, PathLike, np.ndarray] = None,
    sample_rate: int = 16000,
    crf: int = 18,
) -> Path:
    """Write uint8 RGB frames [T,H,W,3] as H.264 (yuv420p) MP4, optionally with AAC audio.

    `audio` is a path to any media file ffmpeg reads (kept at its own rate and channels), or a
    mono float array in [-1,1] at `sample_rate`; it is cut or padded to the video's duration.
    Odd frame sizes are padded by one pixel.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty uint8 array [T,H,W,3], got {frames.dtype} {frames.shape}")
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps, audio, sample_rate, len(frames), crf) as writer:
        writer.write(frames)
    return Path(path)


def probe_audio(path: PathLike) -> dict:
    """The first audio stream of a media file, decoded: {'sample_rate', 'channels', 'samples', 'duration'}."""
    info = probe_video(path)
    if not info["audio"]:
        raise InputError(f"{path} has no audio track")
    proc = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le",
                           "-acodec", "pcm_f32le", "-"], capture_output=True)
    if proc.returncode != 0:
        raise InputError(f"cannot decode audio from {path}")
    rate, channels = info["sample_rate"], info["channels"]
    samples = len(proc.stdout) // (4 * channels)
    return {"sample_rate": rate, "channels": channels, "samples": samples, "duration": samples / rate}


def probe_video(path: PathLike) -> dict:
    """Exact facts of a media file from one ffmpeg stream copy (no decoding).

    Returns {'frames', 'fps', 'width', 'height', 'duration', 'audio', 'video', 'num_video_streams',
    'num_audio_streams', 'sample_rate', 'channels'} (the last two of the first audio stream; 0 without
    one); InputError if ffmpeg cannot read it.
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
    sound = [line for line in streams if "Audio:" in line]
    info["sample_rate"], info["channels"] = 0, 0
    if sound:
        rate = re.search(r"(\d+) Hz, ([^,]+)", sound[0])
        if rate:
            info["sample_rate"] = int(rate.group(1))
            info["channels"] = _channel_count(rate.group(2).strip())
    duration = re.search(r"Duration: (\d+):(\d+):([0-9.]+)", source)
    if duration:
        h, m, sec = duration.groups()
        info["duration"] = int(h) * 3600 + int(m) * 60 + float(sec)
    frames = re.findall(r"^frame=(\d+)", proc.stdout, flags=re.M)
    if frames:
        info["frames"] = int(frames[-1])
    return info


def _channel_count(layout: str) -> int:
    """ffmpeg's channel layout name → channel count ('mono', 'stereo', '5.1(side)', '3 channels')."""
    named = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "6.1": 7, "7.1": 8}
    match = re.match(r"(\d+) channels", layout)
    if match:
        return int(match.group(1))
    return named.get(layout.split("(")[0], 0)
