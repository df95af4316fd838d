"""Driver-length rules (spec §5.2): one documented rule, ping-pong, everywhere.

A driver with N frames drives L output frames. If N < L it is extended by ping-pong
(forward, then time-reversed, turn-around frames repeated): index(j) = m if m < N else 2N−1−m,
with m = j mod 2N. N = 1 gives a constant. Longer drivers are cut to their first L frames.
Expression videos longer than `exp_tail_trim` (20) frames first lose their last 20 frames
(MEAD clips end by returning to neutral). `rule="hold"` (repeat the last frame) exists only
to reproduce the official EDTalk-A/V pose behaviour in parity mode.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

EXP_TAIL_TRIM = 20


def extend_indices(num_frames: int, length: int, rule: str = "pingpong") -> np.ndarray:
    """Source frame index for each of `length` output frames."""
    if num_frames <= 0:
        raise InputError("a driver has no frames")
    j = np.arange(length)
    if rule == "pingpong":
        m = j % (2 * num_frames)
        return np.where(m < num_frames, m, 2 * num_frames - 1 - m)
    if rule == "hold":
        return np.minimum(j, num_frames - 1)
    raise ValueError(f"unknown extension rule {rule!r}")


def expression_frame_count(num_frames: int, trim: int = EXP_TAIL_TRIM) -> int:
    """Frames of an expression video that are used: the last `trim` dropped only if N > trim."""
    return num_frames - trim if num_frames > trim else num_frames
