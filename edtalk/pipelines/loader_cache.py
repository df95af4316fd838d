"""Loaded networks kept for the next call, keyed on their file's modification time (a replaced
checkpoint is loaded again): the parts of :mod:`edtalk.pipelines.model_cache` that generation's own
modules use too, kept apart from it so they import nothing of `generate` (no import circle).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional


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


_NETWORKS = LRU(capacity=4)


def cached_loader(load: Callable):
    """`load(path)` once per (function, path, modification time) in this process."""
    def cached(path, *args, **kwargs):
        key = (load.__module__, load.__qualname__, file_stamp(Path(path)), args, tuple(sorted(kwargs.items())))
        return _NETWORKS.get(key, lambda: load(path, *args, **kwargs))
    return cached


__all__ = ["LRU", "cached_loader", "file_stamp"]
