"""Held-out disentanglement probes of an EDTalk generator on a SynthTalk tree, in one place.

Every number is measured on the clips of one split of a SynthTalk tree (default ``test``: whole
speakers the model never trained on), so a run records how well it generalises, not what it
memorised.  :class:`TrainingProbe` runs them all from a trainer and returns a flat dict
``{"probe/<name>": float}``; :func:`write_probe_record` appends it to ``<run_dir>/probes.jsonl``.

Weight probes (features of each frame extracted from that frame alone, as a driver frame is at
inference; ridge fitted on 70 % of the split's clips, R² on the other 30 %, never a frame of a
fitting clip; see :mod:`edtalk.eval.disentangle`).  Each column's ridge penalty is picked from
:data:`RIDGE_ALPHAS` by leave-clips-out validation inside the fitting clips: the fixed 1e-3 of the
proof scripts scores an exact but ill-conditioned readout of roll or tx below 0, and a tiny one
overfits wa's 512 dimensions.  R² = 1: the factor is a linear function of the features; ≤ 0:
nothing linear.

- ``mouth_open_r2``: mouth weights α_m → the true mouth opening.
- ``yaw_r2 pitch_r2 roll_r2 tx_r2 ty_r2 scale_r2``: pose weights α_p → each pose factor.
- ``exp_<f>_r2`` for f in brow_raise, brow_furrow, eyelid, cheek, corner_curve, corner_asym:
  expression weights α_e → each expression factor (full model only).
- ``wa_<f>_r2`` for the mouth opening, every pose and every expression factor: the encoder's
  latent wa of the frame → that factor.  Stage 2 learns α_e as a map of wa, so an expression
  factor wa cannot read is one stage 2 cannot learn (issue 17).
- ``mouth_own_r2 pose_own_r2 exp_own_r2``: a group → all columns of its own factor (mean).
- ``leak_mouth leak_pose leak_exp``: excess leak, the largest R² of another factor (mouth, pose,
  expression) read from the group, above what the true factors explain of each other (≈ 0 on
  SynthTalk).  0 = clean.  ``score`` = mean own R² − mean excess leak.

Cross-driving probe (what a user does: identity, lip video and pose video from three different
speakers of the split).  Each of `triples` seeded (identity, lip, pose) clip triples is rendered
with the first identity frame as the source, α_m of the lip clip, α_p of the pose clip and, for the
full model, the source's own α_e (``--exp none``).  The SynthTalk factor net reads mouth and pose
off every output frame; the readings are regressed on the drivers' *true* factors, pooled over
all triples (one intercept):

- ``cross_mouth_r``: Pearson r of the output's mouth opening with the lip driver's.
- ``cross_mouth_coef``: coefficient of output opening on the lip driver's opening (1 = follows
  fully), from a joint fit on the lip and the pose driver's openings.
- ``cross_leak_mouth``: coefficient on the pose driver's opening / ``cross_mouth_coef`` (0 = the
  mouth ignores the pose video).
- ``cross_pose_coef_<c>`` for c in roll, tx, yaw: coefficient of output c on the pose driver's c,
  jointly fitted with the lip driver's c; ``cross_pose_coef`` is their mean.
- ``cross_leak_pose_<c>``: coefficient on the lip driver's c / on the pose driver's c;
  ``cross_leak_pose`` = Σ_c |lip coefficient| / Σ_c |pose coefficient| (0 = the pose ignores the
  lip video; absolute values so coefficients of opposite signs cannot cancel).
- ``cross_leak``: the larger of |cross_leak_mouth| and |cross_leak_pose|.

Self-driven mouth (splits a weak ``cross_mouth_r`` into drawing and transfer): each triple's lip
clip also drives itself, from its own first frame.

- ``self_mouth_r`` and ``self_mouth_coef``: Pearson r and slope of that output's opening on the
  true opening, within each clip (each clip's mean removed).  Low here too = the generator does
  not draw the mouth it is given; high here but low across speakers = α_m does not carry over to
  another identity.
- ``self_mouth_coef_closed`` and ``self_mouth_coef_open``: the same slope with the clip's most
  closed / most open frame as the source.  A warping generator closes a mouth by moving pixels but
  must draw the inside of an open one, so closed ≪ open says it copies and cannot draw.
- ``reader_mouth_coef``: the same slope with the true frames as the output, the reader's own
  bound (a perfect generator's ``self_mouth_coef*`` and ``cross_mouth_coef``).
- ``reader_pose_coef``: ``cross_pose_coef`` with the pose driver's true frames as the output, the
  reader's own bound for it.  A reader trained on another tree can sit below the 0.7 target: the
  shipped net reads 0.65 on the proof tree, whose own ceiling net reads 0.92.

Small splits make noisy R²: held-out R² is measured against the held-out clips' own mean, so a
factor that barely varies there (cheek when no held-out clip is happy) can score far below 0.
Give the probe ≥ 24 clips that span the tree's emotions; `alpha` fixes the ridge penalty instead.

Few triples make noisy coefficients: with the drivers' own frames as the output (a perfect
renderer) the pose leak reads 0.02–0.06 over 24 triples of a 12-clip split, but up to 0.19 over 8.

A ratio whose denominator is ~0 (a model that follows nothing) is NaN; the JSONL stores it as null.
Readings are bounded by the factor net's own ceiling: with the drivers' own frames as the output,
the shipped net (``checkpoints/synthtalk_factor_net``) gives cross_mouth_r 0.97, cross_mouth_coef
0.70–0.75 and cross_pose_coef 0.83–0.87 (roll ≈ 0.95, tx ≈ 0.85, yaw ≈ 0.75), so a perfect
generator scores about that, not 1.

Fractions of the ceiling.  What a generator's probe can reach is bounded by what is visible in
a frame at all: the *ceiling* of a tree is the held-out R² per factor that the SynthTalk factor
net reaches when it is trained, supervised, on that tree's train split
(:func:`edtalk.train.factor_net.measure_ceiling`, ``scripts/factor_ceiling.py``; a
``ceiling.json`` of ``{factor: R²}``).  :func:`relative_to_ceiling` turns every per-factor
``<name>_r2`` into ``<name>_frac`` = R² / the factor's ceiling (``mouth_open_r2``, ``wa_open_r2``
→ the mouth-opening ceiling, ``yaw_r2`` and ``wa_yaw_r2`` → the yaw ceiling, ``exp_cheek_r2`` and
``wa_cheek_r2`` → the cheek ceiling, ...).  A factor whose ceiling is below ``min_ceiling``
(default 0.05: it is not visible, so no fraction of it means anything) gets NaN; group means
(``*_own_r2``) and factors the ceiling lacks get no fraction.  ``TrainingProbe(ceiling=...)`` adds
the fractions to every record; by default it uses ``<root>/ceiling.json`` when the tree has one
(``scripts/factor_ceiling.py --into-tree`` puts it there), so a trainer's probe records carry
them with no config change.

For a trainer::

    probe = TrainingProbe(data_root, every=cfg.train.probe_every)
    if probe.due(step):
        values = probe(gen, step)              # {"probe/mouth_open_r2": ..., ...}
        write_probe_record(run_dir, step, values)
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..data import layout
from ..data.synthtalk import EXPRESSION_NAMES, MOUTH_NAMES, POSE_NAMES, load_factors
from ..errors import InputError
from ..pipelines.preprocess import frames_to_tensor
from ..video import read_video
from .disentangle import disentanglement_report, r2_score, ridge_fit, split_by_group

__all__ = ["GROUP_TO_FACTOR", "PROBE_FILE", "CROSS_POSE_COLUMNS", "RIDGE_ALPHAS", "extract_weights", "evaluate_model",
           "stage1_report", "ProbeData", "load_probe_data", "extract_features", "column_r2", "weight_probes",
           "choose_triples", "render_cross", "FactorReader", "cross_driving_stats", "cross_driving_probe",
           "TrainingProbe", "write_probe_record", "read_probe_records", "CEILING_FILE", "load_ceiling",
           "ceiling_factor", "relative_to_ceiling"]

# Our weight groups → SynthTalk factor names.
GROUP_TO_FACTOR = {"mouth": "mouth", "pose": "pose", "exp": "expression"}
FACTOR_COLUMNS = {"mouth": MOUTH_NAMES, "pose": POSE_NAMES, "expression": EXPRESSION_NAMES}
PROBE_FILE = "probes.jsonl"
CROSS_POSE_COLUMNS = ("roll", "tx", "yaw")  # the pose factors the factor net reads best at 64²


# --------------------------------------------------------------------------- whole-tree reports


@torch.no_grad()
def extract_weights(model, root, names: Sequence[str], batch_size: int = 16, progress: bool = True) -> Dict[str, np.ndarray]:
    """Per-frame navigation weights of every clip, keyed by SynthTalk factor name."""
    param = next(model.parameters())
    out: Dict[str, list] = {}
    iterator = names
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(names, desc="extracting weights", unit="clip", leave=False)
    for name in iterator:
        frames, _ = read_video(layout.clip_path(root, "video", name))
        images = frames_to_tensor(frames, model.config.size)
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(param.device, param.dtype)
            for group, w in model.motion_weights(batch).items():
                out.setdefault(GROUP_TO_FACTOR[group], []).append(w.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def evaluate_model(model, root, split: Optional[str] = None, batch_size: int = 16, progress: bool = True,
                   **report_options) -> dict:
    """Probe report (own R², leak, score) of `model` on the clips of a SynthTalk tree."""
    root = Path(root)
    truth, groups, names = load_factors(root, split=split)
    pred = extract_weights(model, root, names, batch_size, progress)
    truth = {k: v for k, v in truth.items() if k in pred}
    return disentanglement_report(pred, truth, groups=groups, **report_options)


def stage1_report(model, root, split: str = "test", batch_size: int = 64) -> dict:
    """The stage-1 proof run's probe: the full report plus the mouth-opening and yaw columns alone.

    Returns open_r2, yaw_r2, mouth_own, pose_own, mouth/pose_excess_leak, mouth/pose_leak_to,
    score, frames, clips and text (the printable table)."""
    truth, groups, names = load_factors(root, split=split)
    pred = extract_weights(model.eval(), root, names, batch_size=batch_size, progress=False)
    full = disentanglement_report(pred, truth, groups=groups)
    cols = column_r2(pred["mouth"], truth["mouth"][:, :1], groups, ["open"], alpha=1e-3)  # the proof's fixed ridge
    cols.update(column_r2(pred["pose"], truth["pose"][:, :1], groups, ["yaw"], alpha=1e-3))
    return {
        "open_r2": cols["open"], "yaw_r2": cols["yaw"],
        "mouth_own": full["own"]["mouth"], "pose_own": full["own"]["pose"],
        "mouth_excess_leak": full["excess_leak"]["mouth"], "pose_excess_leak": full["excess_leak"]["pose"],
        "mouth_leak_to": full["leak_to"]["mouth"], "pose_leak_to": full["leak_to"]["pose"],
        "score": full["summary"]["score"], "frames": int(len(groups)), "clips": len(names), "text": full["text"],
    }


# --------------------------------------------------------------------------- probe data


@dataclass
class ProbeData:
    """The clips a probe reads, held in memory so a trainer pays the video decoding once.

    frames[i]: uint8 [T_i,S,S,3]; truth[i]: {'mouth' [T_i,3], 'pose' [T_i,6], 'expression' [T_i,6]};
    speakers[i]: the clip's speaker (MEAD) or source video (HDTF)."""

    names: List[str]
    speakers: List[str]
    frames: List[np.ndarray]
    truth: List[Dict[str, np.ndarray]]

    def images(self, index: int, size: int) -> torch.Tensor:
        """Clip `index` as [T,3,size,size] in [-1,1]."""
        return frames_to_tensor(self.frames[index], size)

    def stacked_truth(self) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
        """({factor: [N,k]} over all clips, clip index per frame [N])."""
        truth = {k: np.concatenate([t[k] for t in self.truth]) for k in FACTOR_COLUMNS}
        groups = np.concatenate([np.full(len(t["mouth"]), i) for i, t in enumerate(self.truth)])
        return truth, groups


def _pick_clips(names: Sequence[str], speakers: Sequence[str], max_clips: Optional[int], seed: int) -> List[int]:
    """Seeded clip choice that takes speakers in turn, so a small budget still spans speakers."""
    order = np.random.default_rng(seed).permutation(len(names))
    queues: Dict[str, List[int]] = {}
    for i in order:
        queues.setdefault(speakers[i], []).append(int(i))
    picked: List[int] = []
    limit = len(names) if max_clips is None else min(int(max_clips), len(names))
    while len(picked) < limit:
        for queue in queues.values():
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return sorted(picked)  # tree order: same clips ⇒ same arrays, whatever the seed's order


def load_probe_data(root, split: str = "test", max_clips: Optional[int] = None, frames: Optional[int] = None,
                    seed: int = 0) -> ProbeData:
    """Clips of `split` (at most `max_clips`, seeded, spread over speakers; at most `frames` frames each)."""
    root = Path(root)
    names = layout.read_split(root, split)
    if not names:
        raise InputError(f"the {split} split of {root} lists no clips")
    if max_clips is not None and int(max_clips) < 2:
        raise InputError(f"a held-out probe needs at least 2 clips, got max_clips={max_clips}")
    speakers = [layout.group_of(n) for n in names]
    keep = _pick_clips(names, speakers, max_clips, seed)
    names, speakers = [names[i] for i in keep], [speakers[i] for i in keep]
    truth, groups, _ = load_factors(root, names=names)
    clips, per_clip = [], []
    for i, name in enumerate(names):
        video, _ = read_video(layout.clip_path(root, "video", name), max_frames=frames)
        n = min(len(video), int((groups == i).sum()), frames or len(video))  # video and factors agree
        clips.append(video[:n])
        per_clip.append({k: truth[k][groups == i][:n] for k in FACTOR_COLUMNS})
    return ProbeData(list(names), speakers, clips, per_clip)


# --------------------------------------------------------------------------- weight probes


def _param(model) -> torch.Tensor:
    return next(model.parameters())


@torch.no_grad()
def extract_features(model, data: ProbeData, batch_size: int = 64) -> Dict[str, np.ndarray]:
    """Per-frame wa and α of every probe frame: {'wa', 'mouth', 'pose', 'expression' (full model)}."""
    param = _param(model)
    out: Dict[str, list] = {}
    for i in range(len(data.frames)):
        images = data.images(i, model.config.size)
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(param.device, param.dtype)
            wa = model.encode_latent(batch)
            out.setdefault("wa", []).append(wa.float().cpu().numpy())
            for group, w in model.motion_weights(latent=wa).items():
                out.setdefault(GROUP_TO_FACTOR[group], []).append(w.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


RIDGE_ALPHAS = (1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _ridge_predictions(X: np.ndarray, Y: np.ndarray, X_new: np.ndarray, alphas: Sequence[float]) -> List[np.ndarray]:
    """Ridge predictions for X_new at every penalty, as :func:`edtalk.eval.disentangle.ridge_fit`
    fits them (standardised X, intercept, λ = alpha·N), from one SVD instead of one solve each."""
    mu, sd = X.mean(0), X.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    U, s, Vt = np.linalg.svd((X - mu) / sd, full_matrices=False)
    ym = Y.mean(0)
    UtY, BV = U.T @ (Y - ym), ((X_new - mu) / sd) @ Vt.T
    return [BV @ ((s / (s * s + a * len(X)))[:, None] * UtY) + ym for a in alphas]


def _cv_alphas(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, folds: int = 3) -> np.ndarray:
    """Per column, the index in RIDGE_ALPHAS of the penalty with the least leave-clips-out error on
    the fitting frames alone (a fixed penalty either drowns small factors such as tx or overfits wa)."""
    clips = np.unique(groups)
    if len(clips) < 2:  # nothing to validate on: the proof scripts' penalty
        return np.full(Y.shape[1], RIDGE_ALPHAS.index(1e-3))
    fold_of = dict(zip(np.random.default_rng(0).permutation(clips), np.arange(len(clips)) % min(folds, len(clips))))
    fold = np.array([fold_of[g] for g in groups])
    errors = np.zeros((len(RIDGE_ALPHAS), Y.shape[1]))
    for k in np.unique(fold):
        inner = fold != k
        for a, pred in enumerate(_ridge_predictions(X[inner], Y[inner], X[~inner], RIDGE_ALPHAS)):
            errors[a] += ((Y[~inner] - pred) ** 2).sum(0)
    return errors.argmin(0)


def column_r2(features, targets, groups, names: Sequence[str], test_fraction: float = 0.3,
              alpha: Optional[float] = None, seed: int = 0) -> Dict[str, float]:
    """Held-out ridge R² of `features` [N,d] → each target column [N,k], keyed by `names`.

    Fitted on the frames of a seeded 70 % of the clips, scored on the rest; NaN for a column that
    does not vary on the held-out frames.  `alpha` None: each column's penalty is chosen by
    leave-clips-out validation inside the fitting clips (never looking at the held-out ones)."""
    X = np.asarray(features, np.float64)
    Y = np.asarray(targets, np.float64).reshape(len(X), -1)
    if Y.shape[1] != len(names):
        raise InputError(f"{len(names)} names for {Y.shape[1]} target columns")
    groups = np.asarray(groups)
    train = split_by_group(groups, test_fraction, seed)
    if alpha is not None:
        yhat = ridge_fit(X[train], Y[train], alpha)(X[~train])
    else:
        best = _cv_alphas(X[train], Y[train], groups[train])
        paths = _ridge_predictions(X[train], Y[train], X[~train], RIDGE_ALPHAS)
        yhat = np.stack([paths[a][:, j] for j, a in enumerate(best)], 1)
    y = Y[~train]
    return {name: r2_score(y[:, j], yhat[:, j]) for j, name in enumerate(names)}


def _factor_r2(x, factor: str, truth, groups, alpha) -> float:
    """Mean held-out R² over the factor's columns that vary (NaN if none does)."""
    r = column_r2(x, truth[factor], groups, FACTOR_COLUMNS[factor], alpha=alpha)
    finite = [v for v in r.values() if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _excess_leaks(pred: Mapping[str, np.ndarray], truth, groups, alpha) -> Tuple[dict, dict]:
    """own R² and excess leak of every group (the definitions of :mod:`edtalk.eval.disentangle`,
    on mouth / pose / expression, with this module's ridge)."""
    def leak(x, g):
        others = [_factor_r2(x, h, truth, groups, alpha) for h in FACTOR_COLUMNS if h != g]
        return max([0.0] + [max(0.0, r) for r in others if np.isfinite(r)])

    own = {g: _factor_r2(x, g, truth, groups, alpha) for g, x in pred.items()}
    excess = {g: max(0.0, leak(x, g) - leak(truth[g], g)) for g, x in pred.items()}  # minus the truth's floor
    return own, excess


def weight_probes(features: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray], groups,
                  alpha: Optional[float] = None) -> Dict[str, float]:
    """The weight-probe numbers of the module doc from extracted features and the true factors
    (`alpha`: a fixed ridge penalty, or None to validate one per column; see :func:`column_r2`)."""
    def r2(x, factor, names, prefix=""):
        cols = np.asarray(truth[factor])[:, :len(names)]
        return {f"{prefix}{k}_r2": v for k, v in column_r2(x, cols, groups, names, alpha=alpha).items()}

    values = r2(features["mouth"], "mouth", ["mouth_open"])
    values.update(r2(features["pose"], "pose", POSE_NAMES))
    if "expression" in features:
        values.update(r2(features["expression"], "expression", EXPRESSION_NAMES, "exp_"))
    if "wa" in features:  # opening: the one mouth factor that matters first
        for factor, names in (("mouth", ["open"]), ("pose", POSE_NAMES), ("expression", EXPRESSION_NAMES)):
            values.update(r2(features["wa"], factor, names, "wa_"))
    pred = {g: features[g] for g in ("mouth", "pose", "expression") if g in features}
    own, excess = _excess_leaks(pred, truth, groups, alpha)
    short = {"mouth": "mouth", "pose": "pose", "expression": "exp"}
    for g in pred:
        values[f"{short[g]}_own_r2"] = own[g]
        values[f"leak_{short[g]}"] = excess[g]
    values["score"] = float(np.mean([max(0.0, own[g]) for g in pred]) - np.mean([excess[g] for g in pred]))
    return values


# --------------------------------------------------------------------------- cross-driving probe


CROSS_SPEAKERS = 3  # identity, lip and pose each from a different speaker


def choose_triples(speakers: Sequence[str], count: int, seed: int = 0) -> List[Tuple[int, int, int]]:
    """`count` seeded (identity, lip, pose) clip indices, the three from three different speakers."""
    by_speaker: Dict[str, List[int]] = {}
    for i, s in enumerate(speakers):
        by_speaker.setdefault(s, []).append(i)
    keys = sorted(by_speaker)
    if len(keys) < CROSS_SPEAKERS:
        raise InputError(f"cross-driving needs clips of {CROSS_SPEAKERS} different speakers, "
                         f"the probe clips have {len(keys)}")
    rng = np.random.default_rng(seed)
    triples = []
    for _ in range(int(count)):
        trio = rng.choice(len(keys), size=3, replace=False)
        triples.append(tuple(int(rng.choice(by_speaker[keys[k]])) for k in trio))
    return triples


@torch.no_grad()
def render_cross(model, source: torch.Tensor, lip: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Frames [T,3,S,S] in [-1,1]: appearance of `source` [1,3,S,S], mouth of `lip` [T,...], pose of
    `pose` [T,...]; the full model keeps the source's own expression (as ``--exp none``)."""
    wa, feats = model.encode(source)
    mouth = model.motion_weights(lip, parts=("mouth",))["mouth"]
    head = model.motion_weights(pose, parts=("pose",))["pose"]
    exp = model.motion_weights(latent=wa, parts=("exp",)).get("exp")
    return model.render(wa, feats, mouth, head, exp).clamp(-1.0, 1.0)


class FactorReader:
    """A trained SynthTalk factor net as a reader of frames [B,3,S,S] in [-1,1] → {group: [B,k]} numpy
    (frames are resized to the net's size; the net follows the frames' device)."""

    def __init__(self, net, batch_size: int = 256):
        self.net = net.eval().requires_grad_(False)
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Dict[str, np.ndarray]:
        self.net.to(images.device)
        size = self.net.config.size
        out: Dict[str, list] = {}
        for start in range(0, len(images), self.batch_size):
            x = images[start:start + self.batch_size].float()
            if x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            for group, v in self.net.predict(x).items():
                out.setdefault(group, []).append(v.float().cpu().numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    @classmethod
    def load(cls, path=None) -> "FactorReader":
        """From a saved factor net folder (default: $EDTALK_FACTOR_NET, else the shipped one)."""
        from ..networks.factor_net import FactorNet, default_factor_net_dir

        return cls(FactorNet.from_pretrained(Path(path) if path is not None else default_factor_net_dir()))


def _ratio(num: float, den: float, eps: float = 1e-8) -> float:
    return float(num / den) if np.isfinite(den) and abs(den) > eps else float("nan")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return _ratio(float((a * b).sum()), math.sqrt(float((a * a).sum() * (b * b).sum())), 1e-12)


def _joint_coefficients(y: np.ndarray, own: np.ndarray, other: np.ndarray) -> Tuple[float, float]:
    """Least-squares coefficients (b_own, b_other) of y ≈ c + b_own·own + b_other·other."""
    X = np.stack([np.ones_like(own), own, other], 1).astype(np.float64)
    if min(own.std(), other.std()) < 1e-9:  # a driver that never moves explains nothing
        return float("nan"), float("nan")
    coef, *_ = np.linalg.lstsq(X, np.asarray(y, np.float64), rcond=None)
    return float(coef[1]), float(coef[2])


def cross_driving_stats(read: Mapping[str, np.ndarray], lip: Mapping[str, np.ndarray],
                        pose: Mapping[str, np.ndarray]) -> Dict[str, float]:
    """The cross-driving numbers of the module doc from per-frame arrays: `read` = what the factor
    net read off the outputs, `lip` / `pose` = the true factors of the lip / pose driver frames
    ({'mouth' [N,3], 'pose' [N,6]} each, row n = output frame n)."""
    out_open, lip_open, pose_open = (np.asarray(d["mouth"], np.float64)[:, 0] for d in (read, lip, pose))
    values = {"cross_mouth_r": _pearson(out_open, lip_open)}
    b_mouth, b_mouth_from_pose = _joint_coefficients(out_open, lip_open, pose_open)
    values["cross_mouth_coef"] = b_mouth
    values["cross_leak_mouth"] = _ratio(b_mouth_from_pose, b_mouth)
    own, other = [], []
    for name in CROSS_POSE_COLUMNS:
        j = POSE_NAMES.index(name)
        col = (np.asarray(d["pose"], np.float64)[:, j] for d in (read, pose, lip))
        b_pose, b_pose_from_lip = _joint_coefficients(*col)
        values[f"cross_pose_coef_{name}"] = b_pose
        values[f"cross_leak_pose_{name}"] = _ratio(b_pose_from_lip, b_pose)
        own.append(b_pose)
        other.append(b_pose_from_lip)
    values["cross_pose_coef"] = float(np.mean(own))
    values["cross_leak_pose"] = _ratio(float(np.abs(other).sum()), float(np.abs(own).sum()))
    leaks = [abs(values[k]) for k in ("cross_leak_mouth", "cross_leak_pose") if np.isfinite(values[k])]
    values["cross_leak"] = max(leaks) if len(leaks) == 2 else float("nan")  # the worse direction, or unknown
    return values


def _slope(y: np.ndarray, x: np.ndarray) -> float:
    """Least-squares slope of y on x (with an intercept); NaN when x never moves."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return _ratio(float(((x - x.mean()) * (y - y.mean())).sum()), float(((x - x.mean()) ** 2).sum()), 1e-12)


SELF_SOURCES = ("first", "closed", "open")  # the self-driven source frame: the clip's first, most closed, most open


def self_source_index(true_open: np.ndarray, which: str) -> int:
    """Index of the self-driven source frame in a clip with true mouth openings `true_open`."""
    if which not in SELF_SOURCES:
        raise ValueError(f"self-driven source must be one of {SELF_SOURCES}, got {which!r}")
    return 0 if which == "first" else int(np.argmin(true_open) if which == "closed" else np.argmax(true_open))


def self_driving_stats(read_open: Mapping[str, Sequence[np.ndarray]], reader_open: Sequence[np.ndarray],
                       true_open: Sequence[np.ndarray]) -> Dict[str, float]:
    """The self-driven numbers of the module doc from per-clip lists of per-frame mouth openings:
    `read_open` = {source: read off the outputs self-driven from that source frame}, `reader_open` =
    read off the true frames, `true_open` = the truth.  Each clip's mean is removed first: the
    question is whether the mouth moves with the driver inside a clip, and an output frozen at its
    source frame must score 0."""
    def centred(parts):
        return np.concatenate([np.asarray(p, np.float64) - np.mean(p) for p in parts])

    true = centred(true_open)
    values = {"reader_mouth_coef": _slope(centred(reader_open), true)}
    for which, parts in read_open.items():
        read = centred(parts)
        if which == "first":
            values.update(self_mouth_r=_pearson(read, true), self_mouth_coef=_slope(read, true))
        else:
            values[f"self_mouth_coef_{which}"] = _slope(read, true)
    return values


def cross_driving_probe(model, data: ProbeData, reader: Callable[[torch.Tensor], Mapping[str, np.ndarray]],
                        triples: int = 24, frames: Optional[int] = None, seed: int = 0,
                        render: Callable = render_cross, self_driven: bool = True) -> Dict[str, float]:
    """Render `triples` seeded cross-driven clips (at most `frames` frames each), read them, score them;
    with `self_driven`, also each lip clip driven by itself from its first, most closed and most open
    frame, and the reader on the drivers' true frames (``self_mouth_*``, ``reader_mouth_coef``,
    ``reader_pose_coef``)."""
    param, size = _param(model), model.config.size
    read, lip_truth, pose_truth, truth_read, pose_read = [], [], [], [], []
    self_read: Dict[str, list] = {which: [] for which in SELF_SOURCES}
    for ident, lip, pose in choose_triples(data.speakers, triples, seed):
        n = min(len(data.frames[lip]), len(data.frames[pose]), frames or len(data.frames[lip]))
        lip_frames = data.images(lip, size)[:n].to(param.device, param.dtype)
        source = data.images(ident, size)[:1].to(param.device, param.dtype)
        pose_frames = data.images(pose, size)[:n].to(param.device, param.dtype)
        out = render(model, source, lip_frames, pose_frames)
        read.append(reader(out))
        lip_truth.append({k: data.truth[lip][k][:n] for k in ("mouth", "pose")})
        pose_truth.append({k: data.truth[pose][k][:n] for k in ("mouth", "pose")})
        if self_driven:
            for which, parts in self_read.items():
                k = self_source_index(lip_truth[-1]["mouth"][:, 0], which)
                parts.append(reader(render(model, lip_frames[k:k + 1], lip_frames, lip_frames))["mouth"][:, 0])
            truth_read.append(reader(lip_frames)["mouth"][:, 0])
            pose_read.append(reader(pose_frames))

    def stack(parts):
        return {k: np.concatenate([p[k] for p in parts]) for k in ("mouth", "pose")}

    values = cross_driving_stats(stack(read), stack(lip_truth), stack(pose_truth))
    if self_driven:
        values.update(self_driving_stats(self_read, truth_read, [t["mouth"][:, 0] for t in lip_truth]))
        values["reader_pose_coef"] = cross_driving_stats(stack(pose_read), stack(lip_truth),
                                                         stack(pose_truth))["cross_pose_coef"]
    return values


# --------------------------------------------------------------------------- fractions of the ceiling

CEILING_FILE = "ceiling.json"  # as edtalk.train.factor_net.measure_ceiling writes it
# Short names of the probes (wa_open) and of the synthtalk factor lists → the ceiling's keys.
_CEILING_ALIASES = {"open": "mouth_open", "width": "mouth_width", "round": "mouth_round"}


def load_ceiling(ceiling) -> Dict[str, float]:
    """A ceiling as {factor: R²}: a mapping, a ``ceiling.json`` path, or a folder holding one.
    ``null`` values (a factor that did not vary) become NaN; anything else is one InputError line."""
    if isinstance(ceiling, Mapping):
        data, where = ceiling, "the ceiling"
    else:
        path = Path(ceiling)
        if path.is_dir():
            path = path / CEILING_FILE
        if not path.is_file():
            raise InputError(f"no ceiling file at {path} (write one with scripts/factor_ceiling.py)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not a ceiling JSON file ({getattr(exc, 'msg', exc)})") from None
        where = str(path)
    if not isinstance(data, Mapping) or not data:
        raise InputError(f"{where} must be a non-empty JSON object {{factor: R²}}")
    out = {}
    for key, value in data.items():
        if value is None:
            value = float("nan")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise InputError(f"{where}: the ceiling of {key!r} must be a number, got {value!r}")
        out[_CEILING_ALIASES.get(str(key), str(key))] = float(value)
    return out


def ceiling_factor(name: str) -> str:
    """The ceiling key of a probe's R² name: ``probe/wa_open_r2`` → ``mouth_open``,
    ``exp_cheek_r2`` → ``cheek``, ``yaw_r2`` → ``yaw`` (prefix ``probe/``, suffix ``_r2`` and the
    feature qualifiers ``wa_`` / ``exp_`` dropped)."""
    name = name.split("/", 1)[-1]
    if name.endswith("_r2"):
        name = name[:-3]
    for prefix in ("wa_", "exp_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return _CEILING_ALIASES.get(name, name)


def relative_to_ceiling(values: Mapping[str, float], ceiling, min_ceiling: float = 0.05) -> Dict[str, float]:
    """``{"probe/<name>_r2": r}`` → ``{"probe/<name>_frac": r / ceiling[factor]}`` for every name
    whose factor (:func:`ceiling_factor`) the ceiling has; NaN where that ceiling is below
    `min_ceiling` or not finite.  Keys keep their own prefix (``probe/`` or none); entries that
    are no per-factor R² (``score``, ``*_own_r2``, leaks, cross-driving) are left out.
    `ceiling`: anything :func:`load_ceiling` takes."""
    ceil = load_ceiling(ceiling)
    out = {}
    for key, value in values.items():
        if not key.endswith("_r2") or key.split("/", 1)[-1].endswith("_own_r2"):
            continue
        factor = ceiling_factor(key)
        if factor not in ceil:
            continue
        c = ceil[factor]
        ok = math.isfinite(c) and c >= float(min_ceiling) and c > 0.0
        out[key[:-3] + "_frac"] = float(value) / c if ok else float("nan")
    return out


# --------------------------------------------------------------------------- for the trainer


def _unwrap(model):
    """The generator itself under a DDP (`.module`) or torch.compile (`._orig_mod`) wrapper."""
    for attr in ("module", "_orig_mod"):
        model = getattr(model, attr, model)
    return model


def _make_reader(factor_net):
    """A FactorNet, any callable reader (images → {group: array}), or a saved folder (None: shipped)."""
    if isinstance(factor_net, torch.nn.Module):
        return FactorReader(factor_net)
    if callable(factor_net):
        return factor_net
    return FactorReader.load(factor_net)


class TrainingProbe:
    """All probes of one split, for a trainer: ``values = probe(gen, step)`` every `every` steps.

    The split's clips (at most `max_clips`, `frames` frames each) are decoded once, here.  The
    cross-driving probe renders `triples` seeded triples (the same ones at every step, so curves
    compare) and reads them with `factor_net` (a FactorNet, a saved folder, or None for the
    shipped one); `cross=False`, or a split with fewer than 3 speakers, leaves it out.  With
    `run_dir`, every call also appends its record to ``run_dir/probes.jsonl``.

    `ceiling`: the tree's ceiling ({factor: R²}, a ``ceiling.json`` or a folder with one); every
    record then also holds ``probe/<name>_frac`` (:func:`relative_to_ceiling`).  ``"auto"`` (the
    default) uses ``<root>/ceiling.json`` when the tree has one; None never adds fractions.
    """

    def __init__(self, root, split: str = "test", every: int = 1000, factor_net=None, max_clips: int = 24,
                 frames: Optional[int] = 32, triples: int = 24, cross: bool = True, seed: int = 0, batch_size: int = 64,
                 alpha: Optional[float] = None, run_dir=None, ceiling="auto"):
        if int(every) < 0:
            raise InputError(f"probe every must be >= 0 steps (0 = never), got {every}")
        if isinstance(ceiling, str) and ceiling == "auto":
            ceiling = Path(root) / CEILING_FILE if (Path(root) / CEILING_FILE).is_file() else None
        self.ceiling = load_ceiling(ceiling) if ceiling is not None else None
        self.every, self.triples, self.seed = int(every), int(triples), int(seed)
        self.frames = int(frames) if frames else None  # None: whole clips
        self.batch_size, self.alpha, self.run_dir = int(batch_size), alpha, run_dir
        self.data = load_probe_data(root, split, max_clips=max_clips, frames=frames, seed=seed)
        self.truth, self.groups = self.data.stacked_truth()
        self.reader = None
        speakers = len(set(self.data.speakers))
        if cross and speakers < CROSS_SPEAKERS:  # too small a split must not stop a training run
            warnings.warn(f"probe: cross-driving left out, the {split} split has {speakers} speaker(s), "
                          f"it needs {CROSS_SPEAKERS}")
        elif cross:
            self.reader = _make_reader(factor_net)

    def due(self, step: int) -> bool:
        """Whether `step` is a probe step (every > 0 and step a positive multiple of it)."""
        return self.every > 0 and step > 0 and step % self.every == 0

    def __call__(self, gen_model, step: int) -> Dict[str, float]:
        """{'probe/<name>': float} for the generator as it is now (its train/eval mode is restored)."""
        model = _unwrap(gen_model)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                features = extract_features(model, self.data, self.batch_size)
                values = weight_probes(features, self.truth, self.groups, self.alpha)
                if self.reader is not None:
                    values.update(cross_driving_probe(model, self.data, self.reader, self.triples, self.frames,
                                                      self.seed))
        finally:
            model.train(was_training)
        values = {f"probe/{k}": float(v) for k, v in values.items()}
        if self.ceiling is not None:
            values.update(relative_to_ceiling(values, self.ceiling))
        if self.run_dir is not None:
            write_probe_record(self.run_dir, step, values)
        return values


def write_probe_record(run_dir, step: int, values: Mapping[str, float]) -> Path:
    """Append ``{"step", "time", **values}`` as one JSON line to run_dir/probes.jsonl (NaN → null)."""
    path = Path(run_dir) / PROBE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"step": int(step), "time": round(time.time(), 3)}
    for key, value in values.items():
        value = float(value)
        record[str(key)] = value if math.isfinite(value) else None  # strict JSON has no NaN
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, allow_nan=False) + "\n")
    return path


def read_probe_records(run_dir) -> List[dict]:
    """Every record of run_dir/probes.jsonl, in order ([] when there is none yet)."""
    path = Path(run_dir) / PROBE_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number} is not a JSON record ({exc.msg})") from None
    return records
