"""Pair options that teach each stage its job (issue 17, item 2): stage-1 cross-clip identity
frames, SynthTalk's wider within-clip pose and within-clip expression changes, stage-2
expression pairs under a pose gap."""

import json
import shutil

import numpy as np
import pytest
import torch

from edtalk.cli import main as edtalk_main
from edtalk.data import layout, synthtalk as st
from edtalk.data.datasets import POSE_SPAN, Stage1Items, Stage2Items, pose_distance, to_tensor
from edtalk.errors import InputError


def _group(name):
    return layout.group_of(name)


# --------------------------------------------------------------------------- stage 1: cross-clip sources


def _todays_stage1_plan(ds, index):
    """Stage-1 plan as it was before cross_clip_rate, written out draw by draw."""
    rng = np.random.default_rng([ds.seed, ds.epoch, index])
    a = index if ds.length is None else int(rng.integers(len(ds.names)))
    group = ds.group_names[int(rng.integers(len(ds.group_names)))]
    b = ds.groups[group][int(rng.integers(len(ds.groups[group])))]
    na, nb = ds.names[a], ds.names[b]
    frames = lambda n: ds._tree_of[n].store.num_frames(n)  # noqa: E731
    return {"a_id": (na, int(rng.integers(frames(na)))), "a": (na, int(rng.integers(frames(na)))),
            "b_id": (nb, int(rng.integers(frames(nb)))), "b": (nb, int(rng.integers(frames(nb))))}


@pytest.mark.parametrize("kind", ["mead", "hdtf"])
def test_cross_clip_rate_gives_that_fraction_of_other_clip_sources(synth_trees, kind):
    root = synth_trees[kind]
    n = 1500
    base = Stage1Items(root, seed=4, length=n)
    zero = Stage1Items(root, seed=4, length=n, cross_clip_rate=0.0)
    base.set_epoch(2)
    zero.set_epoch(2)
    plans0 = [zero.plan(i) for i in range(n)]
    # Rate 0 is today's plan, draw for draw, and never crosses clips.
    assert plans0 == [_todays_stage1_plan(base, i) for i in range(n)]
    assert all(p["a_id"][0] == p["a"][0] and p["b_id"][0] == p["b"][0] for p in plans0)
    for rate in (0.3, 0.8):
        ds = Stage1Items(root, seed=4, length=n, cross_clip_rate=rate)
        ds.set_epoch(2)
        crossed = []
        for i in range(n):
            plan = ds.plan(i)
            for src, tgt in (("a_id", "a"), ("b_id", "b")):
                # the target and the other item never move; a source is its target's clip or another
                # clip of the same speaker (MEAD) / video (HDTF), never another person
                assert plan[tgt] == plans0[i][tgt]
                assert _group(plan[src][0]) == _group(plan[tgt][0])
                crossed.append(plan[src][0] != plan[tgt][0])
                if not crossed[-1]:
                    assert plan[src] == plans0[i][src]
                else:
                    assert 0 <= plan[src][1] < ds._tree_of[plan[src][0]].store.num_frames(plan[src][0])
        # every group of these trees has at least two train clips, so the fraction is the rate
        assert abs(np.mean(crossed) - rate) < 0.04, (rate, np.mean(crossed))
    # deterministic per (seed, epoch, index), and the epoch changes it
    again = Stage1Items(root, seed=4, length=n, cross_clip_rate=0.8)
    again.set_epoch(2)
    assert [again.plan(i) for i in range(50)] == [ds.plan(i) for i in range(50)]
    again.set_epoch(3)
    assert [again.plan(i) for i in range(50)] != [ds.plan(i) for i in range(50)]


def test_cross_clip_items_load_the_other_clips_frame(synth_trees):
    ds = Stage1Items(synth_trees["mead"], seed=1, length=40, cross_clip_rate=1.0)
    i = next(i for i in range(40) if ds.plan(i)["a_id"][0] != ds.plan(i)["a"][0])
    item, plan = ds[i], ds.plan(i)
    assert torch.equal(item["a_id"], to_tensor(ds._image(*plan["a_id"])))
    assert not torch.equal(item["a_id"], to_tensor(ds._image(plan["a"][0], plan["a_id"][1] % 10)))


def test_a_speaker_with_one_clip_keeps_same_clip_sources(synth_trees, tmp_path):
    root = tmp_path / "mead"
    shutil.copytree(synth_trees["mead"], root)
    train = layout.read_split(root, "train")
    speakers = sorted({_group(n) for n in train})
    lone = [n for n in train if _group(n) == speakers[0]][:1]  # one clip of the first speaker
    layout.write_split(root, "train", lone + [n for n in train if _group(n) != speakers[0]])
    ds = Stage1Items(root, seed=0, length=300, cross_clip_rate=1.0)
    plans = [ds.plan(i) for i in range(300)]
    for p in plans:
        for src, tgt in (("a_id", "a"), ("b_id", "b")):
            assert (p[src][0] == p[tgt][0]) == (p[tgt][0] == lone[0])
    assert any(p["a"][0] == lone[0] for p in plans)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "often", True])
def test_cross_clip_rate_must_be_a_probability(synth_trees, bad):
    with pytest.raises(InputError, match="cross_clip_rate"):
        Stage1Items(synth_trees["mead"], cross_clip_rate=bad)


# --------------------------------------------------------------------------- SynthTalk: pose range


def _within_std(T=32, **kw):
    return np.mean([st.sample_pose(np.random.default_rng([8, c]), T, **kw).std(0) for c in range(300)], 0)


def test_pose_range_scales_the_within_clip_pose_std():
    base = _within_std()
    for k in (0.5, 2.0, 3.0):
        ratio = _within_std(pose_range=k) / base
        assert np.all(np.abs(ratio[:5] / k - 1) < 0.06), (k, ratio)  # yaw, pitch, roll, tx, ty × K
        assert abs(ratio[5] - 1) < 0.02, (k, ratio)                  # scale is left alone
    # it composes with --pose-drift: the two multiply
    both = _within_std(drift=2.0, pose_range=2.0) / base
    assert np.all(np.abs(both[:5] / 4 - 1) < 0.08) and abs(both[5] / 2 - 1) < 0.1, both
    # K = 1 is the original sampler; wide motion stays inside the limits without piling up there
    rng = lambda: np.random.default_rng(11)  # noqa: E731
    assert np.array_equal(st.sample_pose(rng(), 40), st.sample_pose(rng(), 40, 1.0, 1.0))
    wide = np.stack([st.sample_pose(np.random.default_rng([9, c]), 32, 1.0, 3.0) for c in range(200)])
    assert (wide >= st.POSE_LOW - 1e-12).all() and (wide <= st.POSE_HIGH + 1e-12).all()
    # a clip whose wider motion would cross a limit is moved inwards until it touches it (one frame),
    # not cut flat along it (plain clipping flattens 18 % of these clip × factor tracks at K = 3)
    at_limit = (np.isclose(wide, st.POSE_LOW) | np.isclose(wide, st.POSE_HIGH))[..., :5].sum(1)
    assert np.mean(at_limit > 1) < 0.06, np.mean(at_limit > 1)
    # within-clip yaw gaps grow with K (what stage 1 needs: a source/driver gap like between clips)
    gap = lambda p: np.median(np.abs(p[:, :, None, 0] - p[:, None, :, 0]))  # noqa: E731
    one = np.stack([st.sample_pose(np.random.default_rng([9, c]), 32) for c in range(200)])
    assert 2.5 < gap(wide) / gap(one) < 3.5
    with pytest.raises(InputError, match="pose range"):
        st.sample_pose(rng(), 10, 1.0, -1.0)


# --------------------------------------------------------------------------- SynthTalk: expression change


def test_exp_change_blends_the_per_frame_expression_into_another_label():
    T = 48
    changed = 0
    for c in range(200):
        rng = lambda: np.random.default_rng([21, c])  # noqa: E731
        plain = st.sample_factors(rng(), T, "happy", 3)
        f = st.sample_factors(rng(), T, "happy", 3, exp_change=0.4)
        for key in ("mouth", "pose", "blink"):  # independent streams: untouched
            assert np.array_equal(f[key], plain[key])
        ch = f["change"]
        if ch is None:
            assert np.array_equal(f["expression"], plain["expression"])
            continue
        changed += 1
        assert (ch["emotion"], ch["level"]) != ("happy", 3) and ch["emotion"] in st.EMOTION_VECTORS
        w = ch["weight"]
        start, frames = ch["start"], ch["frames"]
        assert 4 <= frames <= 8 and T // 4 <= start <= T - T // 4 - frames
        assert np.all(w[:start] == 0) and np.all(w[start + frames:] == 1) and np.all(np.diff(w) >= 0)
        assert 0 < w[start] < 1  # a smooth transition, not a jump
        # the factors are the truth per frame: same jitter, base blended by w
        a = st.EMOTION_VECTORS["happy"] * st.LEVEL_SCALE[3]
        b = st.EMOTION_VECTORS[ch["emotion"]] * st.LEVEL_SCALE[ch["level"]]
        jitter_only = plain["expression"].astype(np.float64) - a
        expect = np.clip((1 - w[:, None]) * a + w[:, None] * b + jitter_only, st.EXPRESSION_LOW, st.EXPRESSION_HIGH)
        inside = (plain["expression"] > st.EXPRESSION_LOW) & (plain["expression"] < st.EXPRESSION_HIGH)
        assert np.allclose(f["expression"][inside], expect[inside], atol=1e-5)
        # and the expression really changes within the clip, towards the new label
        before, after = f["expression"][:start].mean(0), f["expression"][start + frames:].mean(0)
        step = np.clip(b, st.EXPRESSION_LOW, 1) - np.clip(a, st.EXPRESSION_LOW, 1)
        if np.abs(step).max() > 0.5:
            assert np.dot(after - before, step) / np.dot(step, step) > 0.5
    assert abs(changed / 200 - 0.4) < 0.1, changed
    # neutral clips never change; rate 0 adds nothing; targets come from the given labels
    for c in range(30):
        assert st.sample_factors(np.random.default_rng(c), 32, "neutral", 1, exp_change=1.0)["change"] is None
        f = st.sample_factors(np.random.default_rng(c), 32, "sad", 2, exp_change=1.0,
                              change_targets=[("sad", 2), ("fear", 1)])
        assert (f["change"]["emotion"], f["change"]["level"]) == ("fear", 1)
    assert "change" not in st.sample_factors(np.random.default_rng(0), 32, "sad", 2)
    with pytest.raises(InputError, match="expression change"):
        st.sample_factors(np.random.default_rng(0), 32, "sad", 2, exp_change=1.2)


def test_tree_with_long_clips_wide_pose_and_expression_changes(tmp_path):
    kw = dict(speakers=1, emotions=("neutral", "happy", "sad"), levels=(1, 3), frames=96, size=24, mel=False,
              test_fraction=0.0, validate=True)
    rep = st.generate_mead(tmp_path / "new", pose_range=2.0, exp_change=1.0, **kw)
    assert set(rep.frames.values()) == {96}
    manifest = json.loads((tmp_path / "new" / "synthtalk.json").read_text())
    assert manifest["pose_range"] == 2.0 and manifest["exp_change"] == 1.0
    labels = {(e, lv) for e in kw["emotions"] for lv in kw["levels"] if e != "neutral" or lv == 1}
    changes = 0
    for name in rep.train:
        with np.load(layout.clip_path(tmp_path / "new", "factors", name)) as fz:
            p = layout.parse_mead_name(name)
            exp, w = fz["expression"], fz["exp_change_weight"]
            assert w.shape == (96,) and fz["pose"].shape == (96, 6)
            if str(fz["exp_change_emotion"]) == "":
                assert p.emotion == "neutral" and int(fz["exp_change_start"]) == -1 and not w.any()
                continue
            changes += 1
            to = (str(fz["exp_change_emotion"]), int(fz["exp_change_level"]))
            assert to in labels and to != (p.emotion, p.level)  # the tree's own label set
            start, frames = int(fz["exp_change_start"]), int(fz["exp_change_frames"])
            a = np.clip(st.EMOTION_VECTORS[p.emotion] * st.LEVEL_SCALE[p.level], st.EXPRESSION_LOW, 1)
            b = np.clip(st.EMOTION_VECTORS[to[0]] * st.LEVEL_SCALE[to[1]], st.EXPRESSION_LOW, 1)
            # per-frame labels are true on both sides of the change
            assert np.abs(exp[:start].mean(0) - a).max() < 0.12
            assert np.abs(exp[start + frames:].mean(0) - b).max() < 0.12
    assert changes == 4  # every non-neutral clip changed at rate 1
    # a default tree carries none of the new keys
    st.generate_mead(tmp_path / "old", **dict(kw, frames=8))
    assert "pose_range" not in json.loads((tmp_path / "old" / "synthtalk.json").read_text())
    with np.load(layout.clip_path(tmp_path / "old", "factors", "M101#happy#level_3#001")) as fz:
        assert not any(k.startswith("exp_change") for k in fz.files)


def test_cli_pose_range_and_exp_change(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--kind", "mead", "--size", "24", "--speakers", "1", "--emotions", "neutral,sad",
            "--levels", "1", "--frames", "12", "--quiet", "--no-mel"]
    assert edtalk_main(["synthtalk", *args, "--pose-range", "2.5", "--exp-change", "1"]) == 0
    manifest = json.loads((tmp_path / "mead" / "synthtalk.json").read_text())
    assert manifest["pose_range"] == 2.5 and manifest["exp_change"] == 1.0
    with np.load(layout.clip_path(tmp_path / "mead", "factors", "M101#sad#level_1#001")) as fz:
        assert str(fz["exp_change_emotion"]) == "neutral"
    for bad in (["--pose-range", "-1"], ["--exp-change", "1.5"], ["--exp-change", "nan"]):
        assert edtalk_main(["synthtalk", *args, "--out", str(tmp_path / "bad"), *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("edtalk: error:")


# --------------------------------------------------------------------------- stage 2: expression pairs under a pose gap


@pytest.fixture(scope="module")
def stage2_tree(tmp_path_factory):
    """2 speakers (both train) × (neutral, happy levels 1 and 3) × 3 clips of 32 frames at 24²: enough
    frames per label that small pose gaps exist."""
    root = tmp_path_factory.mktemp("stage2_tree") / "mead"
    st.generate_mead(root, speakers=2, emotions=("neutral", "happy"), levels=(1, 3), clips_per=3, frames=32,
                     size=24, seed=5, mel=False, validate=False, test_fraction=0.0)
    return root


def _pose(root, ref):
    with np.load(layout.clip_path(root, "factors", ref[0])) as fz:
        return fz["pose"][ref[1]].astype(np.float64)


def _expression(root, ref):
    with np.load(layout.clip_path(root, "factors", ref[0])) as fz:
        return fz["expression"][ref[1]].astype(np.float64)


_SPAN = np.array([0.8, 0.6, 0.5, 0.16, 0.16, 0.3])  # yaw, pitch, roll, tx, ty, scale: full factor ranges


def _gap(p, q):  # the documented unit, written out: the largest |Δ| as a fraction of its factor's range
    return max(abs(a - b) / s for a, b, s in zip(p, q, _SPAN))


def test_pose_distance_unit_is_the_synthtalk_pose_range():
    assert np.allclose(POSE_SPAN, st.POSE_HIGH - st.POSE_LOW)
    p, q = np.zeros(6), np.zeros(6)
    q[0] = 0.04
    assert pose_distance(p, q) == pytest.approx(0.05)
    q[3] = 0.016
    assert pose_distance(p, q) == pytest.approx(0.1)


def _default_stage2_plan(ds, index):
    """The stage-2 draw order, written out: clip, target emotion, target clip, neutral source
    clip, source frame, target frame (HDTF: two frames of the clip)."""
    rng = ds._rng(index)
    clip = ds._clip_index(index, rng)
    if clip not in ds.group_of_clip:
        name = ds.names[clip]
        return {"source": (name, ds._random_frame(name, rng)), "target": (name, ds._random_frame(name, rng))}
    emotions = ds.by_emotion[ds.group_of_clip[clip]]
    labels = sorted(emotions)
    pool = emotions[labels[int(rng.integers(len(labels)))]]
    target = ds.names[pool[int(rng.integers(len(pool)))]]
    neutral = emotions["neutral"]
    source = ds.names[neutral[int(rng.integers(len(neutral)))]]
    return {"source": (source, ds._random_frame(source, rng)), "target": (target, ds._random_frame(target, rng))}


def test_stage2_default_plan_is_the_spec_draw_order(synth_trees):
    from edtalk.train.stages.stage2 import Stage2

    assert Stage2.dataset_spec == "edtalk.data.datasets:Stage2Items"  # the trainer uses this class
    for root, length in ((synth_trees["mead"], None), (synth_trees["mead"], 60),
                         (f"{synth_trees['mead']}:{synth_trees['hdtf']}", 60)):
        ours = Stage2Items(root, seed=3, length=length)
        for epoch in (0, 5):
            ours.set_epoch(epoch)
            assert [ours.plan(i) for i in range(len(ours))] == [_default_stage2_plan(ours, i) for i in range(len(ours))]
        opts = Stage2Items(root, seed=3, length=length, exp_pair_rate=0.0, max_pose_gap=None)
        opts.set_epoch(5)
        assert [opts.plan(i) for i in range(len(opts))] == [_default_stage2_plan(opts, i) for i in range(len(opts))]
    item = Stage2Items(synth_trees["mead"], seed=3, max_pose_gap=0.1)[0]
    assert set(item) == {"source", "target"} and item["target"].shape == (3, 48, 48)


def test_stage2_exp_pairs_take_targets_with_an_emotion(stage2_tree):
    root, n = stage2_tree, 600
    base = Stage2Items(root, seed=2, length=n)
    for rate in (0.5, 1.0):
        ds = Stage2Items(root, seed=2, length=n, exp_pair_rate=rate)
        emotional, kept = [], 0
        for i in range(n):
            plan, plan0 = ds.plan(i), base.plan(i)
            assert plan["source"] == plan0["source"]  # the neutral source is not redrawn
            assert layout.parse_mead_name(plan["source"][0]).emotion == "neutral"
            assert _group(plan["target"][0]) == _group(plan["source"][0])
            emotional.append(layout.parse_mead_name(plan["target"][0]).emotion != "neutral")
            kept += plan == plan0
        # neutral + happy in the tree: half the default targets are happy, the redrawn ones all are
        assert abs(np.mean(emotional) - (rate + (1 - rate) * 0.5)) < 0.06, (rate, np.mean(emotional))
        assert kept >= (1 - rate) * n * 0.85
    # and the pairs differ in expression: happy (levels 1 and 3) raises cheek and mouth corners,
    # where the default's neutral → neutral pairs do not
    def deltas(dataset):
        return np.array([_expression(root, p["target"]) - _expression(root, p["source"])
                         for p in (dataset.plan(i) for i in range(300))])

    d, d0 = deltas(ds), deltas(base)
    assert d[:, 3].mean() > 0.45 and d[:, 4].mean() > 0.45
    assert np.mean(np.abs(d[:, 3:5]).max(1) > 0.2) > 0.95
    same = np.array([layout.parse_mead_name(base.plan(i)["target"][0]).emotion == "neutral" for i in range(300)])
    assert same.sum() > 50 and np.mean(np.abs(d0[same, 3:5]).max(1) > 0.2) < 0.35


@pytest.mark.parametrize("gap", [0.15, 0.25])
def test_stage2_pairs_keep_the_pose_gap(stage2_tree, gap):
    root, n = stage2_tree, 300
    base = Stage2Items(root, seed=1, length=n)
    ds = Stage2Items(root, seed=1, length=n, exp_pair_rate=1.0, max_pose_gap=gap)
    clips = layout.read_split(root, "train")
    poses = {c: np.load(layout.clip_path(root, "factors", c))["pose"].astype(np.float64) for c in clips}
    base_gaps, gaps, feasible = [], [], 0
    for i in range(n):
        plan, plan0 = ds.plan(i), base.plan(i)
        src, tgt = layout.parse_mead_name(plan["source"][0]), layout.parse_mead_name(plan["target"][0])
        assert src.emotion == "neutral" and tgt.emotion == "happy" and src.speaker == tgt.speaker
        g = _gap(_pose(root, plan["source"]), _pose(root, plan["target"]))
        assert g == pytest.approx(ds.pose_gap(plan))
        # every (neutral frame, frame of the target's emotion and level) pair of this speaker
        label = f"{tgt.speaker}#happy#level_{tgt.level}#"
        neutral = np.concatenate([poses[c] for c in clips if c.startswith(f"{src.speaker}#neutral#")])
        targets = np.concatenate([poses[c] for c in clips if c.startswith(label)])
        all_gaps = (np.abs(neutral[:, None] - targets[None]) / _SPAN).max(-1)
        if (all_gaps <= gap).any():
            feasible += 1
            assert g <= gap + 1e-9
        else:  # no pair under the gap: the source is kept and its closest target taken
            assert plan["source"] == plan0["source"]
            s_pose = poses[plan0["source"][0]][plan0["source"][1]]
            assert g == pytest.approx((np.abs(targets - s_pose) / _SPAN).max(-1).min())
        gaps.append(g)
        base_gaps.append(base.pose_gap(plan0))
    gaps, base_gaps = np.array(gaps), np.array(base_gaps)
    assert feasible >= 0.25 * n and np.mean(gaps <= gap) == pytest.approx(feasible / n)
    assert np.mean(gaps <= gap) > np.mean(base_gaps <= gap) + 0.25
    assert np.median(gaps) < 0.7 * np.median(base_gaps)
    assert len({p["target"] for p in map(ds.plan, range(n))}) > 20  # not one frame over and over


def test_stage2_pose_gap_needs_true_poses(synth_trees, tmp_path):
    root = tmp_path / "mead"
    shutil.copytree(synth_trees["mead"], root)
    Stage2Items(root)  # without the option, factors are not needed
    shutil.rmtree(root / "factors")
    Stage2Items(root, exp_pair_rate=1.0)
    with pytest.raises(InputError, match="max_pose_gap needs"):
        Stage2Items(root, max_pose_gap=0.1)
    for bad in (-0.1, float("inf"), "near", True):
        with pytest.raises(InputError, match="max_pose_gap"):
            Stage2Items(synth_trees["mead"], max_pose_gap=bad)
    with pytest.raises(InputError, match="exp_pair_rate"):
        Stage2Items(synth_trees["mead"], exp_pair_rate=2)


# --------------------------------------------------------------------------- stage 0: face-region boxes


def test_region_boxes_cover_their_landmarks_with_a_margin():
    from edtalk.data.datasets import REGION_LANDMARKS, region_boxes

    lm = np.zeros((68, 2))
    lm[17:27] = [[20.0, 10.0], [30.0, 14.0]] * 5      # brows span x 20-30, y 10-14
    lm[36:48] = [[22.0, 20.0]] * 12
    lm[48:68] = [[25.0, 50.0], [40.0, 62.5]] * 10     # the mouth reaches past the frame's bottom margin
    boxes = region_boxes(lm, 64, ("brows", "mouth"))
    m = 0.06 * 64
    assert boxes.dtype == np.int64 and boxes.shape == (2, 4)
    assert boxes[0].tolist() == [int(np.floor(20 - m)), int(np.floor(10 - m)), int(np.ceil(30 + m)) + 1,
                                 int(np.ceil(14 + m)) + 1]
    assert boxes[1].tolist() == [int(np.floor(25 - m)), int(np.floor(50 - m)), int(np.ceil(40 + m)) + 1, 64]
    assert set(REGION_LANDMARKS) == {"brows", "eyes", "mouth"}


def test_stage0_items_carry_the_targets_region_boxes(synth_trees):
    from edtalk.data.datasets import Stage0Pairs, region_boxes

    root = synth_trees["mead"]
    plain, boxed = Stage0Pairs(root, seed=3), Stage0Pairs(root, seed=3, regions=("eyes", "mouth"))
    item, ref = boxed[2], plain[2]
    assert set(ref) == {"source", "target"} and torch.equal(item["target"], ref["target"])  # same draws
    name, frame = boxed.plan(2)["target"]
    want = region_boxes(boxed._landmarks(name, frame), boxed.size, ("eyes", "mouth"))
    assert item["target_regions"].tolist() == want.tolist()
    # the mouth box holds the frame's lips: the true landmarks of the target lie inside it
    lm = boxed._landmarks(name, frame)[48:68]
    x1, y1, x2, y2 = item["target_regions"][1].tolist()
    assert (lm[:, 0] >= x1).all() and (lm[:, 0] < x2).all() and (lm[:, 1] >= y1).all() and (lm[:, 1] < y2).all()
    with pytest.raises(InputError, match="unknown face region"):
        Stage0Pairs(root, regions=("nose",))


# --------------------------------------------------------------------------- SynthTalk: larger expressions


def test_exp_scale_draws_the_same_expression_larger():
    ident = st.sample_identity(np.random.default_rng(4))
    clip = lambda **kw: st.make_clip(ident, 6, 64, np.random.default_rng(9), emotion="surprised", level=3, **kw)  # noqa: E731
    plain, same, big = clip(), clip(exp_scale=1.0), clip(exp_scale=2.0)
    assert np.array_equal(plain["frames"], same["frames"])  # the default is today's bytes
    for key in ("mouth", "pose", "expression", "blink"):  # the truth keeps its values
        assert np.array_equal(plain["factors"][key], big["factors"][key])
    # surprised raises the brows: drawn twice as large they sit twice as far above the neutral face
    neutral = st.make_clip(ident, 6, 64, np.random.default_rng(9), emotion="surprised", level=3,
                           factors={**plain["factors"], "expression": np.zeros_like(plain["factors"]["expression"])})
    lift = lambda c: (neutral["landmarks"][:, 17:27, 1] - c["landmarks"][:, 17:27, 1]).mean()  # noqa: E731
    assert lift(plain) > 0.5
    assert lift(big) == pytest.approx(2 * lift(plain), rel=0.02)
    changed = lambda c: np.abs(c["frames"].astype(int) - neutral["frames"].astype(int)).mean()  # noqa: E731
    assert changed(big) > 1.2 * changed(plain)


def test_exp_scale_tree_option_and_its_limits(tmp_path):
    rep = st.generate_mead(tmp_path / "t", speakers=1, emotions=("happy",), levels=(3,), frames=4, mel=False,
                           exp_scale=2.0, validate=False)
    assert rep is None
    manifest = json.loads((tmp_path / "t" / "synthtalk.json").read_text())
    assert manifest["exp_scale"] == 2.0
    assert "exp_scale" not in json.loads(json.dumps(st.generate_mead(
        tmp_path / "u", speakers=1, emotions=("happy",), levels=(3,), frames=4, mel=False, validate=False) or {}))
    assert "exp_scale" not in json.loads((tmp_path / "u" / "synthtalk.json").read_text())
    with pytest.raises(InputError, match="expression scale"):
        st.generate_mead(tmp_path / "v", speakers=1, frames=4, mel=False, exp_scale=6.0, validate=False)


# --------------------------------------------------------------------------- expression-only pairs


def test_shared_motion_trees_differ_only_in_expression_at_one_frame(tmp_path):
    root = tmp_path / "s" / "mead"
    st.generate(tmp_path / "s", kind="mead", speakers=2, emotions=("neutral", "happy", "sad"), levels=(1, 3),
                frames="6-8", mel=False, validate=False, shared_motion=True, exp_change=0.5, seed=3)
    assert json.loads((root / "synthtalk.json").read_text())["shared_motion"] is True
    names = sorted(p.name[:-4] for p in (root / "factors").glob("*.npz"))
    by_speaker = {}
    for name in names:
        by_speaker.setdefault(layout.group_of(name), []).append(name)
    tracks = {}
    for speaker, clips in by_speaker.items():
        f = {n: np.load(root / "factors" / f"{n}.npz") for n in clips}
        T = min(len(v["mouth"]) for v in f.values())
        for key in ("mouth", "pose", "blink"):  # one speaker, one motion: the same tracks in every clip
            assert all(np.array_equal(f[n][key][:T], f[clips[0]][key][:T]) for n in clips)
        exps = [f[n]["expression"][:T] for n in clips]  # … and the emotions still differ
        assert min(np.abs(a - b).mean() for i, a in enumerate(exps) for b in exps[i + 1:]) > 0.05
        tracks[speaker] = f[clips[0]]["pose"][:6]
    a, b = tracks.values()
    assert not np.allclose(a, b)  # another speaker moves otherwise
    # the default tree draws each clip's own motion
    st.generate(tmp_path / "d", kind="mead", speakers=1, emotions=("neutral", "happy"), levels=(1,), frames=6,
                mel=False, validate=False, seed=3)
    d = [np.load(p) for p in sorted((tmp_path / "d" / "mead" / "factors").glob("*.npz"))]
    assert not np.array_equal(d[0]["pose"], d[1]["pose"])
    assert "shared_motion" not in json.loads((tmp_path / "d" / "mead" / "synthtalk.json").read_text())


def test_same_frame_rate_takes_the_source_at_the_targets_frame(synth_trees):
    from edtalk.data.datasets import Stage0Pairs

    root = synth_trees["mead"]
    n = 400
    base = Stage0Pairs(root, seed=5, length=n)
    plans0 = [base.plan(i) for i in range(n)]
    assert [Stage0Pairs(root, seed=5, length=n, same_frame_rate=0.0).plan(i) for i in range(n)] == plans0
    ds = Stage0Pairs(root, seed=5, length=n, same_frame_rate=0.6)
    same = []
    for i, p0 in enumerate(plans0):
        plan = ds.plan(i)
        # the target and the source clip never change; only the source frame may
        assert plan["target"] == p0["target"] and plan["source"][0] == p0["source"][0]
        if plan["source"] != p0["source"]:
            last = ds._tree_of[plan["source"][0]].store.num_frames(plan["source"][0]) - 1
            assert plan["source"][1] == min(plan["target"][1], last)
        last = ds._tree_of[plan["source"][0]].store.num_frames(plan["source"][0]) - 1
        same.append(plan["source"][1] == min(plan["target"][1], last))
    # 0.6 drawn, plus the pairs whose random source frame already was the target's
    assert 0.55 < np.mean(same) < 0.8
    with pytest.raises(InputError, match="same_frame_rate"):
        Stage0Pairs(root, same_frame_rate=1.5)
