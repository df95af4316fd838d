"""Inputs → model tensors (spec §5.4): crop, 25 fps, resize, [-1,1]; crop parameters kept for paste-back."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..video import FPS, read_video, resample_fps

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif"}
DRIVER_MAX_SIDE = 1280
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def is_video_path(path) -> bool:
    return Path(str(path)).suffix.lower() in VIDEO_EXTS


def load_image(path) -> np.ndarray:
    """RGB uint8 [H,W,3]; one clear error for missing, unreadable or empty images."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc.__class__.__name__}") from None
    if image.size == 0 or min(image.shape[:2]) < 8:
        raise InputError(f"image is empty or too small: {path} ({image.shape[1]}x{image.shape[0]})")
    return image


def image_to_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """PIL bicubic resize to size² if needed → /255 in float64 → float32 → (x−0.5)·2 (spec §3.1 #14)."""
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


@dataclass
class PreparedImage:
    tensor: torch.Tensor  # [1,3,S,S] in [-1,1]
    original: np.ndarray  # the full input image, uint8
    crop: Any = None  # face-crop parameters (None when not cropped)

    def paste_back(self, frames: np.ndarray) -> np.ndarray:
        """Generated faces [T,S,S,3] back into the full source image (static background)."""
        if self.crop is None:
            return frames
        from ..face import paste_back

        originals = np.broadcast_to(self.original, (len(frames),) + self.original.shape)
        return paste_back(originals, frames, self.crop)


@dataclass
class PreparedVideo:
    """A driver (or dubbed source) video at 25 fps, face-cropped.

    `frames` holds uint8 crops [T,H,W,3] (4× less memory than float images; converted a batch at
    a time by `images`) or, for callers that already have them, float images [T,3,S,S] in [-1,1].
    """

    frames: Any
    fps_in: float
    original: Optional[np.ndarray] = None  # full frames at 25 fps (for paste-back)
    crop: Any = None
    size: Optional[int] = None  # model input size (for uint8 frames)
    latents: Optional[torch.Tensor] = field(default=None, repr=False)  # encoder latents, filled once

    def __len__(self):
        return len(self.frames)

    def images(self, index) -> torch.Tensor:
        """Model inputs [n,3,S,S] in [-1,1] for frames `index` (a slice or an index array)."""
        if isinstance(self.frames, torch.Tensor):
            return self.frames[index]
        return frames_to_tensor(self.frames[index], self.size)

    def paste_back(self, frames: np.ndarray) -> np.ndarray:
        if self.crop is None or self.original is None:
            return frames
        from ..face import paste_back
        from .drivers import extend_indices

        originals = self.original[extend_indices(len(self.original), len(frames))]
        return paste_back(originals, frames, self.crop)


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


def prepare_video(path, size: int, crop: bool = True, backend: str = "dlib", keep_original: bool = False) -> PreparedVideo:
    """Decode, crop a stable face tube, resample to 25 fps, scale to the model size.

    Drivers are decoded at most DRIVER_MAX_SIDE pixels wide/high (faces stay well above the 256²
    crop; memory stays bounded); a source kept for paste-back is decoded at full size.
    """
    frames, fps = read_video(path, max_side=None if keep_original or not crop else DRIVER_MAX_SIDE)
    frames = resample_fps(frames, fps, FPS)
    params = None
    cropped = frames
    if crop:
        from ..face import crop_video

        cropped, params = crop_video(frames, landmarker=backend)
    return PreparedVideo(cropped, fps, frames if keep_original else None, params, size=size)
