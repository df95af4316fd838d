"""Disentanglement measures give the known answers on perfect, random and leaky extractors."""

import numpy as np
import pytest

from edtalk.data import layout, synthtalk as st
from edtalk.errors import InputError
from edtalk.eval import disentangle as D

GROUPS = ("mouth", "pose", "expression")
EDTALK_DIMS = {"mouth": 20, "pose": 6, "expression": 10}


@pytest.fixture(scope="module")
def factors():
    """SynthTalk ground truth of 64 clips × 30 frames (sampled, not rendered)."""
    truth = {g: [] for g in GROUPS}
    groups = []
    for c in range(64):
        f = st.sample_factors(np.random.default_rng([11, c]), 30, layout.EMOTIONS[c % 8], 1 + c % 3)
        for g in GROUPS:
            truth[g].append(f[g])
        groups.append(np.full(30, c))
    return {g: np.concatenate(v) for g, v in truth.items()}, np.concatenate(groups)


def test_perfect_extractor_scores_one(factors):
    truth, groups = factors
    pred = D.perfect_extractor({g: truth[g] for g in GROUPS}, out_dims=EDTALK_DIMS, seed=3)(truth)
    assert {g: pred[g].shape[1] for g in GROUPS} == EDTALK_DIMS
    rep = D.disentanglement_report(pred, truth, groups)
    for g in GROUPS:
        assert rep["own"][g] > 0.99
        assert rep["leak"][g] < 0.05 and rep["floor"][g] < 0.05
    assert rep["summary"]["score"] > 0.95
    assert "held-out linear-probe" in rep["text"] and "score" in rep["text"]
    assert rep["n_test"] > 0 and rep["n_train"] > rep["n_test"]


def test_random_extractor_scores_zero(factors):
    truth, groups = factors
    pred = D.random_extractor(EDTALK_DIMS, seed=1)(truth)
    rep = D.disentanglement_report(pred, truth, groups)
    for g in GROUPS:
        assert rep["own"][g] < 0.1
        assert rep["leak"][g] < 0.1
    assert abs(rep["summary"]["score"]) < 0.1


def test_leaky_extractor_shows_leak(factors):
    truth, groups = factors
    pred = D.leaky_extractor({g: truth[g] for g in GROUPS}, leak=0.5, seed=2)(truth)
    rep = D.disentanglement_report(pred, truth, groups)
    assert max(rep["leak"].values()) > 0.3
    assert rep["summary"]["excess_leak_mean"] > 0.2 and rep["summary"]["score"] < 0.6
    # a weaker leak scores between the two
    weak = D.disentanglement_report(D.leaky_extractor({g: truth[g] for g in GROUPS}, leak=0.05, seed=2)(truth),
                                    truth, groups)
    assert rep["summary"]["score"] < weak["summary"]["score"] < 1.0


def test_correlated_truth_sets_the_floor():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((600, 2))
    truth = {"a": a, "b": a @ np.array([[1.0], [0.5]]) + 0.1 * rng.standard_normal((600, 1))}
    groups = np.repeat(np.arange(30), 20)
    rep = D.disentanglement_report(D.perfect_extractor(truth)(truth), truth, groups)
    assert rep["leak"]["a"] > 0.9 and rep["floor"]["a"] > 0.9 and rep["excess_leak"]["a"] < 0.02


def test_probe_holds_out_whole_clips():
    groups = np.repeat(np.arange(10), 5)
    mask = D.split_by_group(groups, test_fraction=0.3, seed=0)
    assert (~mask).sum() == 15
    for g in range(10):
        assert len(set(mask[groups == g])) == 1
    # a per-clip constant that the probe can only memorise: zero R² on held-out clips
    rng = np.random.default_rng(0)
    clip_code = rng.standard_normal((10, 8))[groups]
    truth = {"x": rng.standard_normal(10)[groups]}
    rep = D.probe_r2({"x": clip_code}, truth, groups)
    assert rep["own"]["x"] < 0.3
    with pytest.raises(InputError):
        D.split_by_group(np.zeros(5))
    with pytest.raises(InputError):
        D.probe_r2({"x": np.zeros((5, 2))}, {"x": np.zeros((6, 2))}, np.arange(5))
    with pytest.raises(InputError):
        D.probe_r2({"x": np.zeros((5, 2))}, {"x": np.zeros((5, 2))})


def test_r2_score_values():
    y = np.arange(10.0)
    assert D.r2_score(y, y) == pytest.approx(1.0)
    assert D.r2_score(y, np.full(10, y.mean())) == pytest.approx(0.0)
    assert D.r2_score(y, -y) < 0
    assert np.isnan(D.r2_score(np.ones(5), np.zeros(5)))


def _pair(n=40):
    b = st.sample_factors(np.random.default_rng(10), n, "happy", 3)
    d = st.sample_factors(np.random.default_rng(11), n, "sad", 3)
    return {g: b[g] for g in GROUPS}, {g: d[g] for g in GROUPS}, b["blink"]


def test_swap_test_on_ideal_and_leaky_renderers():
    base, donor, _ = _pair()
    extract = D.perfect_extractor({g: base[g] for g in GROUPS}, out_dims=EDTALK_DIMS)
    res = D.swap_test(lambda drivers: drivers, extract, base, donor)
    for g in GROUPS:
        assert res["transfer"][g] == pytest.approx(1.0)
        assert res["leak_max"][g] == pytest.approx(0.0, abs=1e-12)
    # a renderer whose pose output also follows the mouth driver
    mix = np.random.default_rng(0).standard_normal((3, 6))

    def leaky_render(drivers):
        out = dict(drivers)
        out["pose"] = drivers["pose"] + 0.5 * drivers["mouth"] @ mix
        return out

    res = D.swap_test(leaky_render, extract, base, donor)
    assert res["leak"]["mouth"]["pose"] > 0.1 and res["leak"]["pose"]["mouth"] == pytest.approx(0.0, abs=1e-12)
    assert res["summary"]["leak_max"] == res["leak_max"]["mouth"]
    # an extractor that ignores its input transfers nothing
    res = D.swap_test(lambda d: d, lambda d: {g: np.zeros((40, 2)) for g in GROUPS}, base, donor)
    assert all(np.isnan(v) for v in res["transfer"].values())


def test_swap_test_on_synthtalk_landmarks():
    """SynthTalk's renderer is disentangled by construction; the geometric readout sees it."""
    base, donor, blink = _pair(60)
    ident = st.sample_identity(np.random.default_rng(3))

    def render(drivers):
        return st.make_clip(ident, 60, size=32, factors=dict(drivers, blink=blink))["landmarks"]

    res = D.swap_test(render, D.landmark_readout, base, donor)
    assert res["transfer"]["pose"] > 0.95 and res["transfer"]["expression"] > 0.9
    assert res["transfer"]["mouth"] > 0.7
    assert res["leak_max"]["mouth"] < 0.05 and res["leak_max"]["pose"] < 0.05
    # the crude readout confuses mouth corners (expression) with mouth width: visible, bounded
    assert res["leak"]["expression"]["pose"] < 0.05 and res["leak"]["expression"]["mouth"] < 0.4


def test_probes_on_a_generated_tree(tmp_path):
    """End to end: load_factors from a written tree, then perfect vs random extractors."""
    st.generate_mead(tmp_path / "mead", speakers=2, emotions=layout.EMOTIONS, levels=(1, 2, 3), frames=12, size=16,
                     mel=False, validate=False)
    truth, groups, names = st.load_factors(tmp_path / "mead")
    assert len(names) == 44 and truth["mouth"].shape == (44 * 12, 3) and truth["blink"].shape == (44 * 12, 1)
    keep = {g: truth[g] for g in GROUPS}
    perfect = D.disentanglement_report(D.perfect_extractor(keep, EDTALK_DIMS)(keep), keep, groups)
    rand = D.disentanglement_report(D.random_extractor(EDTALK_DIMS)(keep), keep, groups)
    assert perfect["summary"]["score"] > 0.95 and rand["summary"]["own_mean"] < 0.1
    # landmark readout of the written landmarks: mouth opening is linearly readable
    lm = np.concatenate([np.load(layout.clip_path(tmp_path / "mead", "landmark", n)) for n in names])
    read = D.landmark_readout(lm)
    rep = D.probe_r2({"mouth": read["mouth"]}, {"mouth": truth["mouth"][:, :1]}, groups)
    assert rep["own"]["mouth"] > 0.8
    with pytest.raises(InputError):
        D.landmark_readout(np.zeros((3, 5, 2)))
