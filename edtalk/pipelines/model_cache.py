"""Loaded models kept for the next generation: the web page and `edtalk batch` load each checkpoint once.

`ModelCache.get(opts)` returns the (generator, Audio2Lip) pair `generate(opts, model=, audio2lip=)`
takes, loaded by the same rule as the CLI (`load_models`); `cached_loader` does the same for the
speech-driven networks (pose flow, audio/text-to-expression) that `generate` loads by path.
Keys hold each file's modification time, so a replaced checkpoint is loaded again.
"""
from __future__ import annotations

from .generate import GenerateOptions, load_models, mode_of, resolve_audio2lip, resolve_checkpoint, resolve_device, \
    resolve_dtype
from .loader_cache import LRU, cached_loader, file_stamp  # noqa: F401 (part of this module's interface)


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


__all__ = ["ModelCache", "LRU", "cached_loader", "file_stamp"]
