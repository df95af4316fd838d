"""Disentanglement measures for any extractor of mouth / pose / expression weights.

On data whose factors are known (SynthTalk, :mod:`edtalk.data.synthtalk`) "disentangled" becomes
a number.  Everything here is model agnostic: you pass arrays (or callables), we never import a
network.

Definitions
-----------
Inputs are per-frame arrays: ``pred[g]`` [N,d_g], what a model extracts for group g (e.g. α_m
[N,20], α_p [N,6], α_e [N,10]), ``truth[h]`` [N,k_h], the known factors (SynthTalk: mouth [N,3],
pose [N,6], expression [N,6]), and ``groups`` [N], the clip of every frame.

**Linear probe R²(g→h)** — ridge regression (λ = `alpha`·N on standardised inputs, intercept)
from ``pred[g]`` to ``truth[h]``, fitted on the frames of the training clips, scored on the frames
of *held-out clips* (never a frame of a training clip, so memorised clips do not count):
R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)², ȳ the held-out mean, per truth column, averaged over the
columns that vary.  1 = the factor is a linear function of the weights; ≤ 0 = nothing linear.

- **own(g)** = R²(g→g): how well a group's weights predict their own factor.
- **leak(g)** = max over h ≠ g of max(0, R²(g→h)): the most of another factor that can be read out
  of g's weights; ``leak_mean`` averages instead of max.
- **floor(g)** = the same leak computed from truth[g] instead of pred[g]: what even a perfect
  extractor must show because the factors themselves correlate (≈ 0 on SynthTalk, whose factors
  are independent); **excess_leak** = max(0, leak − floor).
- **score** = mean_g own(g) − mean_g excess_leak(g) (1 = perfect, ≈ 0 = random).

Linear probes see linear information only: a non-linear leak stays invisible (document any
non-linear probe you add next to these numbers).

**Swap test** — render with base drivers, with donor drivers, and with base drivers whose group g
comes from the donor; extract every group from each output (e_h(·)).  Sums run over frames:

- transfer(g) = 1 − Σ‖e_g(swap_g) − e_g(donor)‖² / Σ‖e_g(base) − e_g(donor)‖²
  (1 = group g follows its driver fully, 0 = not at all);
- leak(g→h) = Σ‖e_h(swap_g) − e_h(base)‖² / Σ‖e_h(donor) − e_h(base)‖², h ≠ g
  (how far factor h moved when only g's driver changed, relative to how far it moves when h's
  own driver changes; 0 = untouched).

Helpers :func:`perfect_extractor`, :func:`random_extractor` and :func:`leaky_extractor` make
reference extractors with known answers; :func:`landmark_readout` measures crude geometric
mouth / pose / expression features from 68-point landmarks (apply a landmark detector to any
model's output frames, then use it as the ``extract_fn`` of a swap test).
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from edtalk.errors import InputError

__all__ = ["split_by_group", "ridge_fit", "r2_score", "probe_r2", "disentanglement_report", "format_report",
           "swap_test", "perfect_extractor", "random_extractor", "leaky_extractor", "landmark_readout"]


def _as2d(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise InputError(f"{name} must be [N,d], got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name} contains NaN or inf")
    return a


def split_by_group(groups, test_fraction: float = 0.3, seed: int = 0) -> np.ndarray:
    """Boolean train mask [N]: a seeded random ceil(G·test_fraction) of the G clips are held out."""
    groups = np.asarray(groups)
    uniq = np.unique(groups)
    if len(uniq) < 2:
        raise InputError("a held-out probe needs frames from at least two clips (groups)")
    n_test = min(len(uniq) - 1, max(1, int(np.ceil(len(uniq) * test_fraction))))
    test = np.random.default_rng(seed).permutation(uniq)[:n_test]
    return ~np.isin(groups, test)


def ridge_fit(X: np.ndarray, Y: np.ndarray, alpha: float = 1e-3):
    """Ridge with intercept on standardised X; returns predict(X') → Ŷ'."""
    mu, sd = X.mean(0), X.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    Xs = (X - mu) / sd
    ym = Y.mean(0)
    lam = alpha * len(X)
    W = np.linalg.solve(Xs.T @ Xs + lam * np.eye(X.shape[1]), Xs.T @ (Y - ym))
    return lambda Xn: ((np.asarray(Xn, np.float64) - mu) / sd) @ W + ym


def r2_score(y: np.ndarray, yhat: np.ndarray) -> float:
    """Mean over varying columns of 1 − SS_res/SS_tot (held-out mean); NaN when nothing varies."""
    y, yhat = _as2d(y, "y"), _as2d(yhat, "yhat")
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    ok = ss_tot > 1e-12 * len(y)
    if not ok.any():
        return float("nan")
    ss_res = ((y - yhat) ** 2).sum(0)
    return float(np.mean(1.0 - ss_res[ok] / ss_tot[ok]))


def _check(pred: Mapping, truth: Mapping, groups, train_mask):
    if not pred or not truth:
        raise InputError("pred and truth must be non-empty dicts of [N,d] arrays")
    P = {k: _as2d(v, f"pred[{k!r}]") for k, v in pred.items()}
    Tr = {k: _as2d(v, f"truth[{k!r}]") for k, v in truth.items()}
    n = {a.shape[0] for a in list(P.values()) + list(Tr.values())}
    if len(n) != 1:
        raise InputError(f"every array needs the same number of frames, got {sorted(n)}")
    N = n.pop()
    if train_mask is None:
        if groups is None:
            raise InputError("give groups (clip id per frame) or an explicit train_mask")
        if len(groups) != N:
            raise InputError(f"groups has {len(groups)} entries for {N} frames")
    else:
        train_mask = np.asarray(train_mask, bool)
        if train_mask.shape != (N,) or train_mask.all() or not train_mask.any():
            raise InputError("train_mask must be [N] bool with both train and test frames")
    return P, Tr, N, train_mask


def probe_r2(pred: Mapping, truth: Mapping, groups=None, train_mask=None, test_fraction: float = 0.3,
             alpha: float = 1e-3, seed: int = 0) -> dict:
    """Held-out linear-probe R² of every pred group → every truth group.

    Returns {"matrix": {g: {h: R²}}, "own": {g: R²(g→g)}, "leak": {g: max_{h≠g} max(0,R²)},
    "leak_mean": {g: mean_{h≠g} max(0,R²)}, "leak_to": {g: argmax h}, "n_train", "n_test"}.
    own/leak only cover groups present in both dicts.  `train_mask` overrides the clip split.
    """
    P, Tr, N, mask = _check(pred, truth, groups, train_mask)
    if mask is None:
        mask = split_by_group(groups, test_fraction, seed)
    matrix = {}
    for g, X in P.items():
        row = {}
        for h, Y in Tr.items():
            model = ridge_fit(X[mask], Y[mask], alpha)
            row[h] = r2_score(Y[~mask], model(X[~mask]))
        matrix[g] = row
    own, leak, leak_mean, leak_to = {}, {}, {}, {}
    for g in P:
        if g not in Tr:
            continue
        own[g] = matrix[g][g]
        others = {h: max(0.0, r) for h, r in matrix[g].items() if h != g and np.isfinite(r)}
        leak[g] = max(others.values()) if others else 0.0
        leak_mean[g] = float(np.mean(list(others.values()))) if others else 0.0
        leak_to[g] = max(others, key=others.get) if others else None
    return {"matrix": matrix, "own": own, "leak": leak, "leak_mean": leak_mean, "leak_to": leak_to,
            "n_train": int(mask.sum()), "n_test": int((~mask).sum())}


def disentanglement_report(pred: Mapping, truth: Mapping, groups=None, train_mask=None, test_fraction: float = 0.3,
                           alpha: float = 1e-3, seed: int = 0) -> dict:
    """Probe matrix plus the truth→truth leak floor, excess leak and one summary score.

    Returns probe_r2's dict plus "floor", "excess_leak" and "summary" {own_mean, leak_max,
    excess_leak_mean, score}, and "text" (a printable table).
    """
    rep = probe_r2(pred, truth, groups, train_mask, test_fraction, alpha, seed)
    keys = [g for g in pred if g in truth]
    if not keys:
        raise InputError("pred and truth share no group names (e.g. 'mouth', 'pose', 'expression')")
    floor_rep = probe_r2({g: truth[g] for g in keys}, truth, groups, train_mask, test_fraction, alpha, seed)
    rep["floor"] = floor_rep["leak"]
    rep["excess_leak"] = {g: max(0.0, rep["leak"][g] - rep["floor"][g]) for g in keys}
    own_mean = float(np.mean([max(0.0, rep["own"][g]) for g in keys]))
    exc = float(np.mean([rep["excess_leak"][g] for g in keys]))
    rep["summary"] = {"own_mean": own_mean, "leak_max": float(max(rep["leak"][g] for g in keys)),
                      "excess_leak_mean": exc, "score": own_mean - exc}
    rep["text"] = format_report(rep)
    return rep


def format_report(rep: dict) -> str:
    """Plain-text table of a probe / disentanglement report."""
    rows = list(rep["matrix"])
    cols = list(next(iter(rep["matrix"].values())))
    w = max(12, *(len(c) + 2 for c in cols))
    lines = ["held-out linear-probe R² (rows: extracted weights, columns: true factors)",
             " " * 14 + "".join(f"{c:>{w}}" for c in cols)]
    for r in rows:
        lines.append(f"{r:<14}" + "".join(f"{rep['matrix'][r][c]:>{w}.3f}" for c in cols))
    for g in rep["own"]:
        extra = f", floor {rep['floor'][g]:.3f}" if "floor" in rep else ""
        lines.append(f"{g}: own {rep['own'][g]:.3f}, leak {rep['leak'][g]:.3f} (to {rep['leak_to'][g]}){extra}")
    if "summary" in rep:
        s = rep["summary"]
        lines.append(f"score {s['score']:.3f} (own mean {s['own_mean']:.3f}, excess leak mean {s['excess_leak_mean']:.3f})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- swap test


def swap_test(render_fn: Callable[[dict], object], extract_fn: Callable[[object], Mapping], base: Mapping,
              donor: Mapping, keys: Optional[Sequence[str]] = None, eps: float = 1e-12) -> dict:
    """Change one driver at a time and measure how every extracted factor moves (module doc).

    render_fn(drivers: dict) → output (frames, landmarks, anything extract_fn takes);
    extract_fn(output) → {group: [N,d]}; base / donor: {group: driver} with the same keys.
    Returns {"transfer": {g}, "leak": {g: {h}}, "leak_max": {g}, "summary": {transfer_mean,
    leak_max}}; a ratio whose denominator is 0 (base and donor agree on h) is NaN.
    """
    keys = list(keys) if keys is not None else [k for k in base if k in donor]
    if not keys:
        raise InputError("base and donor share no driver groups")
    e_base = {k: _as2d(v, f"extract(base)[{k!r}]") for k, v in extract_fn(render_fn(dict(base))).items()}
    e_donor = {k: _as2d(v, f"extract(donor)[{k!r}]") for k, v in extract_fn(render_fn(dict(donor))).items()}
    measured = [k for k in keys if k in e_base]
    if not measured:
        raise InputError("extract_fn returned none of the swapped groups")

    def dist(a, b):
        return float(((a - b) ** 2).sum())

    transfer, leak, leak_max = {}, {}, {}
    for g in keys:
        drivers = dict(base)
        drivers[g] = donor[g]
        e_swap = {k: _as2d(v, f"extract(swap)[{k!r}]") for k, v in extract_fn(render_fn(drivers)).items()}
        if g in e_swap:
            den = dist(e_base[g], e_donor[g])
            transfer[g] = 1.0 - dist(e_swap[g], e_donor[g]) / den if den > eps else float("nan")
        leak[g] = {}
        for h in measured:
            if h == g:
                continue
            den = dist(e_donor[h], e_base[h])
            leak[g][h] = dist(e_swap[h], e_base[h]) / den if den > eps else float("nan")
        finite = [v for v in leak[g].values() if np.isfinite(v)]
        leak_max[g] = max(finite) if finite else float("nan")
    tr = [v for v in transfer.values() if np.isfinite(v)]
    lk = [v for v in leak_max.values() if np.isfinite(v)]
    return {"transfer": transfer, "leak": leak, "leak_max": leak_max,
            "summary": {"transfer_mean": float(np.mean(tr)) if tr else float("nan"),
                        "leak_max": float(max(lk)) if lk else float("nan")}}


# --------------------------------------------------------------------------- reference extractors


def _dims(truth_dims: Mapping) -> dict:
    return {k: (v if isinstance(v, int) else np.asarray(v).shape[-1]) for k, v in truth_dims.items()}


def perfect_extractor(truth_dims: Mapping, out_dims: Optional[Mapping] = None, seed: int = 0, noise: float = 0.0):
    """f(truth) → pred: each group through its own random full-rank linear map (+ bias).

    `truth_dims` {group: k} (or example arrays); `out_dims` {group: d ≥ k} (default d = k, so
    the map is invertible).  Own R² ≈ 1 and leak ≈ the truth's own correlation floor.
    """
    dims = _dims(truth_dims)
    out = dict(dims, **(_dims(out_dims) if out_dims else {}))
    rng = np.random.default_rng(seed)
    maps = {}
    for g, k in dims.items():
        d = out[g]
        if d < k:
            raise InputError(f"out_dims[{g!r}] = {d} < {k}: the map would not be invertible")
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        A = q[:k] * rng.uniform(0.5, 2.0, size=(1, d))  # [k,d], full row rank
        maps[g] = (A, rng.standard_normal(d))

    def extract(truth: Mapping) -> dict:
        res = {}
        for g, (A, b) in maps.items():
            x = _as2d(truth[g], f"truth[{g!r}]") @ A + b
            if noise:
                x = x + noise * np.random.default_rng([seed, len(x)]).standard_normal(x.shape)
            res[g] = x
        return res

    return extract


def random_extractor(out_dims: Mapping, seed: int = 0):
    """f(inputs) → pred: Gaussian noise of the right shape, unrelated to the inputs (R² ≈ 0)."""
    dims = _dims(out_dims)

    def extract(inputs: Mapping) -> dict:
        n = len(next(iter(inputs.values())))
        rng = np.random.default_rng([seed, n])
        return {g: rng.standard_normal((n, d)) for g, d in dims.items()}

    return extract


def leaky_extractor(truth_dims: Mapping, leak: float = 0.5, seed: int = 0):
    """Like :func:`perfect_extractor` but every group also carries `leak` × a random linear map of
    all the other groups (so other factors can be read out of it)."""
    dims = _dims(truth_dims)
    base = perfect_extractor(dims, seed=seed)
    rng = np.random.default_rng([seed, 1])
    mix = {g: {h: rng.standard_normal((dims[h], dims[g])) for h in dims if h != g} for g in dims}

    def extract(truth: Mapping) -> dict:
        res = base(truth)
        for g in dims:
            for h, B in mix[g].items():
                res[g] = res[g] + leak * (_as2d(truth[h], h) @ B)
        return res

    return extract


# --------------------------------------------------------------------------- geometric readout


def landmark_readout(landmarks) -> dict:
    """Crude geometric factors from 68-point landmarks [N,68,2] (any pixel scale).

    Points are normalised by the eye centres (origin at their midpoint, x along the eye line,
    unit = inter-ocular distance):

    - mouth [N,3]: inner-lip gap, corner-to-corner width, outer height / outer width;
    - pose [N,6]: yaw proxy (nose tip x relative to the jaw-end midpoint), pitch proxy (nose tip
      y), roll (eye-line angle), eye-midpoint x, y, inter-ocular distance (frame units);
    - expression [N,6]: brow height, inner-brow gap, eye opening, lower-lid height, mouth-corner
      lift relative to the lip centre, corner asymmetry.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise InputError(f"landmarks must be [N,68,2], got {lm.shape}")
    el, er = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)
    mid = 0.5 * (el + er)
    v = er - el
    iod = np.linalg.norm(v, axis=1) + 1e-9
    roll = np.arctan2(v[:, 1], v[:, 0])
    c, s = np.cos(-roll)[:, None], np.sin(-roll)[:, None]
    d = lm - mid[:, None]
    p = np.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1]], -1) / iod[:, None, None]
    y = p[..., 1]
    gap = y[:, 65:68].mean(1) - y[:, 61:64].mean(1)
    width = p[:, 54, 0] - p[:, 48, 0]
    outer_h = y[:, 56:59].mean(1) - y[:, 50:53].mean(1)
    mouth = np.stack([gap, width, outer_h / (np.abs(width) + 1e-6)], 1)
    jaw_mid = 0.5 * (p[:, 0] + p[:, 16])
    pose = np.stack([p[:, 30, 0] - jaw_mid[:, 0], p[:, 30, 1], roll, mid[:, 0], mid[:, 1], iod], 1)
    eye_y = 0.5 * (y[:, 36:42].mean(1) + y[:, 42:48].mean(1))
    brow = eye_y - y[:, 17:27].mean(1)
    inner_gap = p[:, 22, 0] - p[:, 21, 0]
    opening = 0.5 * ((y[:, [40, 41]].mean(1) - y[:, [37, 38]].mean(1)) + (y[:, [46, 47]].mean(1) - y[:, [43, 44]].mean(1)))
    lower_lid = 0.5 * (y[:, [40, 41]].mean(1) + y[:, [46, 47]].mean(1)) - eye_y
    lip_mid = 0.5 * (y[:, 62] + y[:, 66])
    corners = 0.5 * (y[:, 48] + y[:, 54])
    expression = np.stack([brow, inner_gap, opening, lower_lid, lip_mid - corners, y[:, 48] - y[:, 54]], 1)
    return {"mouth": mouth, "pose": pose, "expression": expression}
