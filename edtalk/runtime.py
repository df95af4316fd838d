"""Where and how models run: device and dtype choice (one rule for training and generation) and
process-level tuning for CPU inference."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Optional

import torch

from .errors import InputError

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
_MMAP_MAX = 32 * 1024 * 1024  # glibc's largest allowed mmap threshold on 64-bit

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str = "auto", local_rank: Optional[int] = None, auto_mps: bool = True,
                   option: str = "--device") -> torch.device:
    """The torch device for `name` (auto, cpu, cuda, cuda:N or mps); InputError when it is unknown
    or absent.  `auto` picks CUDA, then MPS (unless `auto_mps` is off: training), then the CPU.
    `local_rank` (a distributed run's process) picks the GPU of a bare `cuda`; `option` names
    the setting in errors."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif auto_mps and mps_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{option} cuda was requested but no CUDA GPU is available")
    if device.type == "mps" and not mps_available():
        raise InputError(f"{option} mps was requested but MPS is not available")
    if device.type == "cuda" and device.index is None and local_rank is not None:
        device = torch.device("cuda", local_rank)
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r} (use fp32, fp16 or bf16)")
    dtype = DTYPES[name]
    if dtype == torch.float16 and torch.device(device).type == "cpu":
        raise InputError("fp16 needs a GPU; use --dtype bf16 or fp32 on the CPU")
    return dtype


def default_batch_size(device) -> int:
    """CPU: 2 frames measured fastest (2 cores; larger batches fall out of cache); GPU: 8."""
    return 2 if torch.device(device).type == "cpu" else 8


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed activation buffers instead of returning them to the OS.

    Every rendered frame allocates and frees the same ~100 MB of activations; by default glibc
    unmaps large blocks on free, so each frame page-faults them in again (measured ~15% of CPU
    time at 256²). Returns False where this is not glibc (macOS, Windows, musl): nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, _MMAP_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 30))
