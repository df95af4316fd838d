"""Pipelines kept for the next generation: the web page and `edtalk batch` load each network once.

`ModelCache.get(opts)` returns the :class:`EDTalkPipeline` for the options' model setting (model
folder, checkpoints, engine, device, dtype, presets), made once and kept; the pipeline itself loads
each network on first use and again only when its file changes (its keys hold modification times).
"""
from __future__ import annotations

import threading
from collections import Counter, OrderedDict

from ..runtime import resolve_device
from .engine import ModelFiles
from .generate import GenerateOptions, pipeline_for, pipeline_settings
from .loader_cache import LRU, cached_loader, file_stamp  # noqa: F401 (part of this module's interface)
from .pipeline import EDTalkPipeline


class ModelCache:
    """One EDTalkPipeline per model setting, the `capacity` most recently used kept."""

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self.pipelines: "OrderedDict[tuple, EDTalkPipeline]" = OrderedDict()
        self.lock = threading.Lock()

    def get(self, opts: GenerateOptions) -> EDTalkPipeline:
        """The pipeline of generate's options (its model folder, checkpoints, engine, device, dtype, presets)."""
        return self._kept(pipeline_settings(opts), lambda: pipeline_for(opts))

    def pipeline(self, files: ModelFiles, device: str = "auto", dtype: str = "fp32", presets=None) -> EDTalkPipeline:
        """The pipeline of a model folder's networks (`files`) on `device` in `dtype`."""
        key = (files, str(resolve_device(device)), dtype, str(presets) if presets else None)
        return self._kept(key, lambda: EDTalkPipeline(files, device, dtype, presets=presets))

    def _kept(self, key, make) -> EDTalkPipeline:
        with self.lock:
            if key not in self.pipelines:
                self.pipelines[key] = make()
                while len(self.pipelines) > self.capacity:
                    self.pipelines.popitem(last=False)
            self.pipelines.move_to_end(key)
            return self.pipelines[key]

    @property
    def loads(self) -> Counter:
        """How often each network was read from disk by the pipelines kept, e.g. {"EDTalk": 1,
        "Audio2Lip": 1} (once per file, unless the file changed)."""
        return sum((p.loads for p in self.pipelines.values()), Counter())


__all__ = ["ModelCache", "LRU", "cached_loader", "file_stamp"]
