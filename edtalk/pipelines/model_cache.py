"""Loaded models kept for the next generation: the web page and `edtalk batch` load each checkpoint once.

`ModelCache.get(opts)` returns the (generator, Audio2Lip) pair `generate(opts, model=, audio2lip=)`
takes, loaded by the same rule as the CLI (`load_models`); `cached_loader` does the same for the
speech-driven networks (pose flow, audio/text-to-expression) that `generate` loads by path.
Keys hold each file's modification time, so a replaced checkpoint is loaded again.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional

from .generate import GenerateOptions, load_models, mode_of, resolve_audio2lip, resolve_checkpoint, resolve_device, \
    resolve_dtype


def file_stamp(path: Optional[Path]):
    """(resolved path, modification time) of a file or saved-model folder; None when it is absent."""
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    newest = max([path.stat().st_mtime_ns] + [p.stat().st_mtime_ns for p in path.glob("*")]) if path.is_dir() \
        else path.stat().st_mtime_ns
    return str(path.resolve()), newest


class LRU:
    """A small thread-safe least-recently-used map that builds a missing entry under its lock."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.entries: "OrderedDict[tuple, object]" = OrderedDict()
        self.loads = 0
        self.lock = threading.Lock()

    def get(self, key, build: Callable[[], object]):
        with self.lock:
            if key not in self.entries:
                self.entries[key] = build()
                self.loads += 1
                while len(self.entries) > self.capacity:
                    self.entries.popitem(last=False)
            self.entries.move_to_end(key)
            return self.entries[key]


class ModelCache(LRU):
    """Loaded (generator, Audio2Lip) pairs, loaded once per checkpoint file and kept (LRU).

    Audio2Lip is loaded with the generator whenever its file exists, so one entry serves every mode.
    """

    def __init__(self, capacity: int = 2):
        super().__init__(capacity)

    def get(self, opts: GenerateOptions):  # type: ignore[override]
        ckpt = resolve_checkpoint(opts)
        a2l = resolve_audio2lip(opts)
        need_audio = mode_of(opts) in ("audio", "dubbing") or a2l.exists()
        device = resolve_device(opts.device)
        dtype = resolve_dtype(opts.dtype, device)
        key = (file_stamp(ckpt), file_stamp(a2l) if need_audio else None, str(device), str(dtype))
        return super().get(key, lambda: load_models(opts, need_audio=need_audio, device=device, dtype=dtype))


_NETWORKS = LRU(capacity=4)


def cached_loader(load: Callable):
    """`load(path)` once per (function, path, modification time) in this process."""
    def cached(path, *args, **kwargs):
        key = (load.__module__, load.__qualname__, file_stamp(Path(path)), args, tuple(sorted(kwargs.items())))
        return _NETWORKS.get(key, lambda: load(path, *args, **kwargs))
    return cached


__all__ = ["ModelCache", "LRU", "cached_loader", "file_stamp"]
