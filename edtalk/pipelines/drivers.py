"""Driver-length rules (docs/design.md §5.2) and the per-frame driver plan every generation path uses.

A driver with N frames drives L output frames. If N < L it is extended by ping-pong
(forward, then time-reversed, turn-around frames repeated): index(j) = m if m < N else 2N−1−m,
with m = j mod 2N. N = 1 gives a constant. Longer drivers are cut to their first L frames.
Expression videos longer than `exp_tail_trim` (20) frames first lose their last 20 frames
(MEAD clips end by returning to neutral). `rule="hold"` (repeat the last frame) exists only
to reproduce the official EDTalk-A/V pose behaviour in parity mode.

`plan_drivers` is the one place that decides, for each output frame, which frame of which driver
fills the mouth, pose and expression slots (and, in dubbing, which source-video frame is the
identity): `edtalk generate`, the benchmark and the tests all call it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import InputError

EXP_TAIL_TRIM = 20


def extend_indices(num_frames: int, length: int, rule: str = "pingpong", start: int = 0) -> np.ndarray:
    """Source frame index for each of output frames `start`..`length`−1 (each depends on its own
    index only, so a stream plans batch by batch)."""
    if num_frames <= 0:
        raise InputError("a driver has no frames")
    j = np.arange(start, length)
    if rule == "pingpong":
        m = j % (2 * num_frames)
        return np.where(m < num_frames, m, 2 * num_frames - 1 - m)
    if rule == "hold":
        return np.minimum(j, num_frames - 1)
    raise ValueError(f"unknown extension rule {rule!r}")


def expression_frame_count(num_frames: int, trim: int = EXP_TAIL_TRIM) -> int:
    """Frames of an expression video that are used: the last `trim` dropped only if N > trim."""
    return num_frames - trim if num_frames > trim else num_frames


MODES = ("audio", "video", "dubbing")


@dataclass(frozen=True)
class DriverPlan:
    """Index arrays [L] into each driver's frames, one entry per output frame.

    `pose` / `exp` are None where the slot is not driven by a frame sequence (the source's own
    pose, a preset, none); `source` is set in dubbing only (identity and pose come from it).
    """

    mode: str
    lip: np.ndarray
    pose: Optional[np.ndarray] = None
    exp: Optional[np.ndarray] = None
    source: Optional[np.ndarray] = None
    pose_rule: str = "pingpong"

    def __len__(self) -> int:
        return len(self.lip)


def pose_rule(mode: str, parity: bool, lip_pose_model: bool) -> str:
    """Official per-demo rule in parity mode: EDTalk-A/V hold the pose video's last frame; the
    lip-pose demos and dubbing ping-pong. The product rule is ping-pong everywhere."""
    if parity and mode in ("audio", "video") and not lip_pose_model:
        return "hold"
    return "pingpong"


def plan_drivers(mode: str, length: int, pose_frames: Optional[int] = None, exp_frames: Optional[int] = None,
                 source_frames: Optional[int] = None, parity: bool = False, lip_pose_model: bool = False,
                 exp_trim: int = EXP_TAIL_TRIM, first: int = 0) -> DriverPlan:
    """Which driver frame fills each slot of each of the `length` output frames.

    Args:
        mode: "audio", "video" (a mouth video) or "dubbing" (a source video, audio lips).
        length: L, the mouth driver's frame count (audio frames, or mouth-video frames at 25 fps).
        pose_frames: frames of a pose video (None: no pose video).
        exp_frames: frames of an expression sequence (None: constant or no expression).
        source_frames: frames of the dubbed source video (dubbing only).
        parity: the official per-demo extension rules (docs/design.md §5.2) instead of ping-pong everywhere.
        lip_pose_model: the lip-pose model is in use (its demos ping-pong the pose in parity mode).
        exp_trim: tail frames dropped from an expression sequence longer than this (0 for weights
            files, which are taken as given).
        first: plan output frames first..length−1 only (one batch of a stream whose length is not
            known yet; the same entries as those of the whole plan).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if length <= 0:
        raise InputError("the mouth driver has no frames")
    if mode == "dubbing":
        if source_frames is None:
            raise ValueError("dubbing needs the source video's frame count")
        if pose_frames is not None:
            raise InputError(DUBBING_POSE_ERROR)
    rule = pose_rule(mode, parity, lip_pose_model)
    pose = extend_indices(pose_frames, length, rule, first) if pose_frames is not None else None
    exp = None
    if exp_frames is not None:
        used = expression_frame_count(exp_frames, exp_trim) if exp_trim else exp_frames
        exp = extend_indices(used, length, start=first)
    source = extend_indices(source_frames, length, start=first) if mode == "dubbing" else None
    return DriverPlan(mode, np.arange(first, length), pose, exp, source, rule)


DUBBING_POSE_ERROR = ("--pose does not apply to dubbing: each frame of the source video gives the pose "
                      "(leave --pose out, or use a face image as --source to drive the pose)")
