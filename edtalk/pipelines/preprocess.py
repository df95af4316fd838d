"""Inputs → model tensors (docs/design.md §5.4): crop, 25 fps, resize, [-1,1]; crop parameters kept for paste-back.

Videos are never held whole: `open_video` runs the face tube's first pass (detection on frames
decoded at ≤640 px, 25 fps by timestamps) keeping only boxes, and `VideoSource` then decodes
again batch by batch, cutting the tube box from each frame as it streams.
"""
from __future__ import annotations

import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..video import FPS, VideoReader

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif"}
DRIVER_MAX_SIDE = 1280
DETECT_MAX_SIDE = 640
DECODE_BATCH = 16
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
MAX_IMAGE_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit (~9459x9459); larger images are refused


class ImageTooLargeError(InputError):
    """An image with more than MAX_IMAGE_PIXELS pixels, refused before its pixels are decoded."""


def _too_large(path, megapixels: str) -> ImageTooLargeError:
    error = ImageTooLargeError(f"image is too large: {path} has {megapixels} megapixels "
                               f"(at most {MAX_IMAGE_PIXELS / 1e6:.0f})")
    error.megapixels = megapixels  # for messages that name the file their own way (the web page)
    return error


def _bomb_megapixels(exc: Exception) -> str:
    """Pillow refuses images over twice its limit at open, before their size is known to us."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(found.group(1)) / 1e6:.0f}" if found else f"more than {2 * MAX_IMAGE_PIXELS / 1e6:.0f}"


def is_video_path(path) -> bool:
    return Path(str(path)).suffix.lower() in VIDEO_EXTS


def load_image(path) -> np.ndarray:
    """RGB uint8 [H,W,3], upright (EXIF orientation applied: phone photos are often stored
    sideways); one clear error for missing, unreadable or empty images."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked just below
            with Image.open(path) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise _too_large(path, f"{im.width}x{im.height} = {im.width * im.height / 1e6:.0f}")
                image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise _too_large(path, _bomb_megapixels(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc.__class__.__name__}") from None
    if image.size == 0 or min(image.shape[:2]) < 8:
        raise InputError(f"image is empty or too small: {path} ({image.shape[1]}x{image.shape[0]})")
    return image


def image_to_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """PIL bicubic resize to size² if needed → /255 in float64 → float32 → (x−0.5)·2 (docs/design.md §3.1 #14)."""
    from PIL import Image

    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
    x = image.astype(np.float64) / 255.0
    t = torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]
    return (t - 0.5) * 2


def frames_to_tensor(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [T,H,W,3] → [T,3,size,size] in [-1,1]; bilinear on float tensors (no antialias)."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    t = (t - 0.5) * 2
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t


def crop_landmarks(params, size: int) -> Optional[np.ndarray]:
    """The crop's 68 landmarks in pixel coordinates of a `size`² crop (None if not known)."""
    points = getattr(params, "landmarks", None)
    return None if points is None else params.frame_to_crop(np.asarray(points, dtype=np.float64), size)


@dataclass
class PreparedImage:
    tensor: torch.Tensor  # [1,3,S,S] in [-1,1]
    original: np.ndarray  # the full input image, uint8
    crop: Any = None  # face-crop parameters (None when not cropped)

    def paste_back(self, frames: np.ndarray) -> np.ndarray:
        """Generated faces [n,S,S,3] back into the full source image (static background)."""
        if self.crop is None:
            return frames
        from ..face import paste_back

        return paste_back(self.original, frames, self.crop, landmarks=crop_landmarks(self.crop, frames.shape[1]))


@dataclass
class PreparedVideo:
    """Driver frames already in memory (uint8 crops [T,H,W,3] or float images [T,3,S,S] in
    [-1,1]), e.g. the benchmark's synthetic inputs. Same interface as VideoSource."""

    frames: Any
    fps_in: float = FPS
    size: Optional[int] = None  # model input size (for uint8 frames)
    latents: Optional[torch.Tensor] = field(default=None, repr=False)  # encoder latents, filled once

    def __len__(self):
        return len(self.frames)

    def images(self, index) -> torch.Tensor:
        """Model inputs [n,3,S,S] in [-1,1] for frames `index` (a slice or an index array)."""
        if isinstance(self.frames, torch.Tensor):
            return self.frames[index]
        return frames_to_tensor(self.frames[index], self.size)

    def image_batches(self, batch: int) -> Iterator[torch.Tensor]:
        for s in range(0, len(self), batch):
            yield self.images(slice(s, s + batch))


class VideoSource:
    """A video input at 25 fps, face-cropped by a fixed tube box, decoded again on every pass.

    `frames_for(index)` yields (model images, crops, full frames or None) in the order of `index`
    (a plan's index array): streamed straight from the decoder when the index runs forward, and
    through a temporary spool file on disk when it turns back (a source shorter than the audio is
    ping-ponged) — memory stays a few batches whatever the clip's length.
    """

    def __init__(self, path, size: int, crop: bool = True, backend: str = "dlib", keep_original: bool = False,
                 progress: bool = False):
        self.path, self.size, self.backend, self.keep_original = Path(path), int(size), backend, keep_original
        # Drivers decode at most DRIVER_MAX_SIDE (faces stay well above the crop); a source kept
        # for paste-back decodes at full size.
        self.max_side = None if keep_original or not crop else DRIVER_MAX_SIDE
        self.crop = None
        self.landmarker = None
        self.latents: Optional[torch.Tensor] = None
        if crop:
            self._find_tube(progress)
        else:
            self.num_frames = sum(len(b) for b in self._decode(max_side=self.size))

    # -- passes
    def _decode(self, max_side=-1) -> Iterator[np.ndarray]:
        reader = VideoReader(self.path, max_side=self.max_side if max_side == -1 else max_side, fps=FPS)
        self.frame_shape = (reader.height, reader.width)
        return reader.batches(DECODE_BATCH)

    def _find_tube(self, progress: bool) -> None:
        from ..face.landmarks import get_landmarker
        from ..face.tube import stream_face_tube

        shape_probe = VideoReader(self.path, max_side=self.max_side, fps=FPS)
        frame_shape = (shape_probe.height, shape_probe.width)
        shape_probe.close()
        self.landmarker = get_landmarker(self.backend)
        for upsample in (0, 1):  # dlib: small faces are found only with upsampling (4× slower)
            counter = _Counter()
            batches = counter.wrap(self._decode(max_side=DETECT_MAX_SIDE))
            try:
                self.crop = stream_face_tube(_progress(batches, progress, "finding the face"), frame_shape,
                                             self.landmarker, self.size, upsample=upsample)
                break
            except InputError:
                if upsample == 1 or self.landmarker.name != "dlib":
                    raise
        self.num_frames = counter.count
        self.frame_shape = frame_shape

    def __len__(self) -> int:
        return self.num_frames

    def _crops(self, frames: np.ndarray) -> np.ndarray:
        if self.crop is None:
            return frames
        from ..face.tube import crop_tube

        return crop_tube(frames, self.crop)

    def batches(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """(crops, full frames) for every frame in order, one decoded batch at a time."""
        for frames in self._decode():
            yield self._crops(frames), frames

    def image_batches(self, batch: int) -> Iterator[torch.Tensor]:
        """Model inputs [n,3,S,S] in [-1,1] for every frame in order."""
        for crops, _ in self.batches():
            for s in range(0, len(crops), batch):
                yield frames_to_tensor(crops[s:s + batch], self.size)

    def frames_for(self, index: np.ndarray, batch: int) -> Iterator[Tuple[np.ndarray, torch.Tensor, np.ndarray, Optional[np.ndarray]]]:
        """(frame indices, model images, crops, full frames or None) for frames `index`, `batch` at a time."""
        index = np.asarray(index)
        keep = self.keep_original
        if len(index) <= self.num_frames and np.array_equal(index, np.arange(len(index))):
            stream = _rebatch(self.batches(), batch, len(index))
        else:
            stream = _spooled(self.batches(), index, batch, keep)
        start = 0
        for crops, originals in stream:
            idx = index[start:start + len(crops)]
            start += len(crops)
            yield idx, frames_to_tensor(crops, self.size), crops, (originals if keep else None)

    def crop_landmarks(self, crops: np.ndarray, index: np.ndarray) -> Optional[np.ndarray]:
        """68 landmarks [n,68,2] (crop pixels) of crops of frames `index`, for the paste-back mask:
        the shape predictor runs in each frame's tracked face box (no second detection)."""
        if self.crop is None or self.landmarker is None:
            return None
        track = np.asarray(self.crop.track)[np.asarray(index)]
        corners = np.stack([track[:, :2], track[:, 2:]], axis=1).reshape(-1, 2)
        boxes = self.crop.frame_to_crop(corners, crops.shape[1]).reshape(-1, 4)
        return np.asarray([self.landmarker.landmarks(crop, tuple(box) + (1.0,)) for crop, box in zip(crops, boxes)],
                          dtype=np.float64)


class _Counter:
    def __init__(self):
        self.count = 0

    def wrap(self, batches):
        for b in batches:
            self.count += len(b)
            yield b


def _progress(batches, on: bool, desc: str):
    if not on:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=desc, unit="batch", leave=False)


def _rebatch(batches, size: int, limit: int):
    """Regroup (crops, frames) batches into `size`-frame batches, stopping after `limit` frames."""
    crops_buf, frames_buf, have = [], [], 0
    for crops, frames in batches:
        take = min(len(crops), limit - have)
        crops_buf.append(crops[:take])
        frames_buf.append(frames[:take])
        have += take
        while sum(len(c) for c in crops_buf) >= size:
            c, f = np.concatenate(crops_buf), np.concatenate(frames_buf)
            yield c[:size], f[:size]
            crops_buf, frames_buf = [c[size:]], [f[size:]]
        if have >= limit:
            break
    if crops_buf and sum(len(c) for c in crops_buf):
        yield np.concatenate(crops_buf), np.concatenate(frames_buf)


class _Spool:
    """Fixed-size uint8 frames in a temporary file, written in order and read back by index."""

    def __init__(self, folder: str):
        self.file = tempfile.TemporaryFile(dir=folder)
        self.shape = None

    def append(self, frames: np.ndarray) -> None:
        self.shape = frames.shape[1:]
        self.file.write(np.ascontiguousarray(frames).tobytes())

    def read(self, index: np.ndarray) -> np.ndarray:
        frame_bytes = int(np.prod(self.shape))
        out = np.empty((len(index),) + tuple(self.shape), dtype=np.uint8)
        for n, i in enumerate(index):
            self.file.seek(int(i) * frame_bytes)
            self.file.readinto(memoryview(out[n]).cast("B"))
        return out


def _spooled(batches, index: np.ndarray, size: int, keep_originals: bool):
    with tempfile.TemporaryDirectory(prefix="edtalk-spool-") as folder:
        crops, frames = _Spool(folder), (_Spool(folder) if keep_originals else None)
        for c, f in batches:
            crops.append(c)
            if frames is not None:
                frames.append(f)
        for s in range(0, len(index), size):
            idx = index[s:s + size]
            yield crops.read(idx), (frames.read(idx) if frames is not None else None)


def prepare_image(path_or_array, size: int, crop: bool = True, backend: str = "dlib") -> PreparedImage:
    image = path_or_array if isinstance(path_or_array, np.ndarray) else load_image(path_or_array)
    params = None
    if crop:
        from ..face import crop_image

        face, params = crop_image(image, landmarker=backend)
        image_for_model = face
    else:
        image_for_model = image
    return PreparedImage(image_to_tensor(image_for_model, size), image, params)


def open_video(path, size: int, crop: bool = True, backend: str = "dlib", keep_original: bool = False,
               progress: bool = False) -> VideoSource:
    """A video input, 25 fps by timestamps, rotation applied, its face tube found (first pass)."""
    return VideoSource(path, size, crop=crop, backend=backend, keep_original=keep_original, progress=progress)


__all__ = ["VIDEO_EXTS", "IMAGE_EXTS", "is_video_path", "load_image", "image_to_tensor", "frames_to_tensor",
           "PreparedImage", "PreparedVideo", "VideoSource", "prepare_image", "open_video"]
