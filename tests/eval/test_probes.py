"""The held-out probes of edtalk.eval.probes: exact on planted features and outputs, blind on random ones."""
import json
import math

import numpy as np
import pytest
import torch

from edtalk.config import EDTalkConfig
from edtalk.data.synthtalk import EXPRESSION_NAMES, POSE_NAMES, generate
from edtalk.errors import InputError
from edtalk.eval import model_probe, probes
from edtalk.eval.disentangle import disentanglement_report
from edtalk.model import EDTalk
from edtalk.networks.factor_net import default_factor_net_dir


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """4 speakers, 3 of them in the test split (cross-driving needs three): 12 test clips of 16 frames."""
    out = tmp_path_factory.mktemp("probe_tree")
    generate(out, kind="mead", size=64, seed=5, speakers=4, emotions=["happy", "sad", "surprised", "angry"], levels=[3],
             frames=16, test_fraction=0.75, mel=False, quiet=True)
    return out / "mead"


@pytest.fixture(scope="module")
def data(tree):
    return probes.load_probe_data(tree, "test")


def tiny_model(exp_dim=10, seed=0):
    torch.manual_seed(seed)
    return EDTalk(EDTalkConfig.tiny(exp_dim=exp_dim)).eval()


def frame_key(image: torch.Tensor) -> bytes:
    return image.float().cpu().numpy().tobytes()


def truth_lookup(data):
    """{frame bytes: (clip, frame)} over the probe frames: what a planted model or reader recognises."""
    rows = {}
    for i in range(len(data.frames)):
        for t, image in enumerate(data.images(i, 64)):
            rows[frame_key(image)] = (i, t)
    assert len(rows) == sum(len(f) for f in data.frames), "two identical frames: the lookup would be ambiguous"
    return rows


class PlantedModel(torch.nn.Module):
    """Recognises each probe frame and returns planted wa / α rows for it (no network)."""

    def __init__(self, data, planted):
        super().__init__()
        self.config = EDTalkConfig.tiny()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.rows = truth_lookup(data)
        offsets = np.cumsum([0] + [len(f) for f in data.frames])
        self.index = {k: int(offsets[i] + t) for k, (i, t) in self.rows.items()}
        self.planted = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in planted.items()}

    def _rows(self, images):
        return torch.tensor([self.index[frame_key(im)] for im in images])

    def encode_latent(self, images):
        return torch.cat([self.planted["wa"][self._rows(images)], self._rows(images)[:, None].float()], 1)

    def motion_weights(self, images=None, latent=None):
        idx = latent[:, -1].long()  # the frame row rides along in the planted latent
        return {g: self.planted[g][idx] for g in ("mouth", "pose", "exp")}


def linear_features(truth, seed=0, leak=0.0):
    """Each group an invertible random linear map of its own factor (+ `leak` × the mouth in the pose)."""
    rng = np.random.default_rng(seed)
    feats = {}
    for group, factor, d in (("mouth", "mouth", 20), ("pose", "pose", 6), ("exp", "expression", 10)):
        k = truth[factor].shape[1]
        feats[group] = truth[factor] @ rng.standard_normal((k, d)) + rng.standard_normal(d)
    if leak:
        feats["pose"] = np.concatenate([feats["pose"], leak * truth["mouth"]], 1)
    all_truth = np.concatenate([truth["mouth"], truth["pose"], truth["expression"]], 1)
    feats["wa"] = all_truth @ rng.standard_normal((all_truth.shape[1], 24))
    return feats


# --------------------------------------------------------------------------- data


def test_probe_data_spreads_a_small_budget_over_speakers(tree, data):
    assert len(set(data.speakers)) == 3 and len(data.names) == 12
    few = probes.load_probe_data(tree, "test", max_clips=3, frames=5, seed=1)
    assert sorted(set(few.speakers)) == sorted(set(data.speakers))  # one clip of each speaker
    assert all(len(f) == 5 and len(t["pose"]) == 5 for f, t in zip(few.frames, few.truth))
    i = data.names.index(few.names[0])
    np.testing.assert_array_equal(few.truth[0]["pose"], data.truth[i]["pose"][:5])
    with pytest.raises(InputError, match="at least 2 clips"):
        probes.load_probe_data(tree, "test", max_clips=1)


# --------------------------------------------------------------------------- weight probes


def test_model_probe_still_exports_the_moved_functions():
    assert model_probe.evaluate_model is probes.evaluate_model
    assert model_probe.extract_weights is probes.extract_weights


def test_stage1_report_keeps_the_proof_scripts_numbers(tree):
    """open_r2 / yaw_r2 equal the proof script's former focused report, to the last bit."""
    model = tiny_model()
    found = probes.stage1_report(model, tree)
    truth, groups, names = probes.load_factors(tree, split="test")
    pred = probes.extract_weights(model, tree, names, batch_size=64, progress=False)
    focused = disentanglement_report({"mouth": pred["mouth"], "pose": pred["pose"]},
                                     {"mouth": truth["mouth"][:, :1], "pose": truth["pose"][:, :1]}, groups=groups)
    assert found["open_r2"] == focused["own"]["mouth"] and found["yaw_r2"] == focused["own"]["pose"]
    assert found["clips"] == len(names) and found["frames"] == len(groups)


def test_ridge_path_equals_the_disentangle_ridge():
    rng = np.random.default_rng(0)
    X, X_new = rng.standard_normal((40, 7)) * np.arange(1, 8), rng.standard_normal((5, 7))
    Y = rng.standard_normal((40, 3))
    for alpha, pred in zip(probes.RIDGE_ALPHAS, probes._ridge_predictions(X, Y, X_new, probes.RIDGE_ALPHAS)):
        np.testing.assert_allclose(pred, probes.ridge_fit(X, Y, alpha)(X_new), rtol=1e-7, atol=1e-9)


def test_weight_probes_read_a_perfect_readout_and_not_noise(data):
    truth, groups = data.stacked_truth()
    feats = linear_features(truth)
    good = probes.weight_probes({"mouth": feats["mouth"], "pose": feats["pose"], "expression": feats["exp"],
                                 "wa": feats["wa"]}, truth, groups)
    r2_keys = [k for k in good if k.endswith("_r2")]
    assert len(r2_keys) == 1 + 6 + 6 + 1 + 6 + 6 + 3  # open, pose, exp, wa (open, pose, exp), own × 3
    assert {f"exp_{n}_r2" for n in EXPRESSION_NAMES} <= set(good) and {f"{n}_r2" for n in POSE_NAMES} <= set(good)
    assert min(good[k] for k in r2_keys) > 0.99  # a fixed ridge penalty of 1e-3 gave roll −0.5 here
    assert max(good["leak_mouth"], good["leak_pose"], good["leak_exp"]) < 0.1
    rng = np.random.default_rng(1)
    noise = {g: rng.standard_normal((len(groups), d)) for g, d in (("mouth", 20), ("pose", 6), ("expression", 10),
                                                                     ("wa", 24))}
    bad = probes.weight_probes(noise, truth, groups)
    assert max(bad[k] for k in r2_keys) < 0.3


def test_weight_probes_see_a_planted_leak(data):
    truth, groups = data.stacked_truth()
    feats = linear_features(truth, leak=1.0)
    values = probes.weight_probes({"mouth": feats["mouth"], "pose": feats["pose"]}, truth, groups)
    assert values["leak_pose"] > 0.9 and values["leak_mouth"] < 0.1  # the pose weights read the mouth
    assert values["pose_own_r2"] > 0.99 and "exp_own_r2" not in values and "wa_open_r2" not in values


def test_extract_features_are_the_models_own(data):
    model = tiny_model()
    feats = probes.extract_features(model, data, batch_size=7)  # batches that straddle clips
    images = torch.cat([data.images(i, 64) for i in range(len(data.frames))])
    with torch.no_grad():
        wa = model.encode_latent(images)
        alpha = model.motion_weights(images)
    np.testing.assert_allclose(feats["wa"], wa.numpy(), atol=1e-5)
    np.testing.assert_allclose(feats["mouth"], alpha["mouth"].numpy(), atol=1e-5)
    np.testing.assert_allclose(feats["expression"], alpha["exp"].numpy(), atol=1e-5)
    assert "expression" not in probes.extract_features(tiny_model(exp_dim=0), data)


def test_training_probe_on_planted_and_random_models(tree, data):
    truth, groups = data.stacked_truth()
    planted = PlantedModel(data, linear_features(truth))
    probe = probes.TrainingProbe(tree, cross=False, frames=None)
    good = probe(planted, 10)
    assert good["probe/mouth_open_r2"] > 0.99 and good["probe/exp_cheek_r2"] > 0.99
    assert good["probe/wa_eyelid_r2"] > 0.99 and good["probe/roll_r2"] > 0.99
    assert not any(k.startswith("probe/cross") for k in good)
    random = tiny_model().train()
    bad = probe(random, 10)
    assert random.training  # the trainer's mode comes back
    assert bad["probe/mouth_open_r2"] < 0.5 and bad["probe/exp_cheek_r2"] < 0.5
    assert bad["probe/score"] < good["probe/score"] - 0.5


# --------------------------------------------------------------------------- cross-driving


def test_choose_triples_uses_three_speakers_and_a_seed(data):
    triples = probes.choose_triples(data.speakers, 20, seed=0)
    assert all(len({data.speakers[i] for i in t}) == 3 for t in triples)
    assert triples == probes.choose_triples(data.speakers, 20, seed=0)
    assert triples != probes.choose_triples(data.speakers, 20, seed=1)
    with pytest.raises(InputError, match="3 different speakers"):
        probes.choose_triples(["a", "a", "b"], 2)


def test_cross_driving_stats_equal_hand_computed_coefficients():
    rng = np.random.default_rng(0)
    n = 200
    lip = {"mouth": rng.uniform(0, 1, (n, 3)), "pose": rng.normal(0, 0.1, (n, 6))}
    pose = {"mouth": rng.uniform(0, 1, (n, 3)), "pose": rng.normal(0, 0.1, (n, 6))}
    col = {name: POSE_NAMES.index(name) for name in ("roll", "tx", "yaw")}
    read_pose = np.zeros((n, 6))
    read_pose[:, col["roll"]] = 0.8 * pose["pose"][:, col["roll"]] + 0.2 * lip["pose"][:, col["roll"]]
    read_pose[:, col["tx"]] = 0.6 * pose["pose"][:, col["tx"]] - 0.06 * lip["pose"][:, col["tx"]] + 0.01
    read_pose[:, col["yaw"]] = 1.0 * pose["pose"][:, col["yaw"]]
    read_open = 0.2 + 0.5 * lip["mouth"][:, 0] + 0.1 * pose["mouth"][:, 0]
    read = {"mouth": np.stack([read_open, read_open, read_open], 1), "pose": read_pose}
    v = probes.cross_driving_stats(read, lip, pose)
    assert v["cross_mouth_coef"] == pytest.approx(0.5) and v["cross_leak_mouth"] == pytest.approx(0.2)
    assert v["cross_mouth_r"] == pytest.approx(np.corrcoef(read_open, lip["mouth"][:, 0])[0, 1])
    assert v["cross_pose_coef_roll"] == pytest.approx(0.8) and v["cross_leak_pose_roll"] == pytest.approx(0.25)
    assert v["cross_pose_coef_tx"] == pytest.approx(0.6) and v["cross_leak_pose_tx"] == pytest.approx(-0.1)
    assert v["cross_leak_pose_yaw"] == pytest.approx(0.0, abs=1e-9)
    assert v["cross_pose_coef"] == pytest.approx(0.8)
    assert v["cross_leak_pose"] == pytest.approx((0.2 + 0.06) / (0.8 + 0.6 + 1.0))
    assert v["cross_leak"] == pytest.approx(0.2)  # the worse of the two directions


def planted_reader(data):
    """Reads a probe frame's true mouth and pose back off the frame (a perfect factor net)."""
    rows = truth_lookup(data)

    def read(images):
        hits = [rows[frame_key(im)] for im in images]
        return {k: np.stack([data.truth[i][k][t] for i, t in hits]) for k in ("mouth", "pose")}

    return read


def test_cross_driving_probe_pairs_outputs_with_the_right_driver(data):
    model, reader = tiny_model(), planted_reader(data)

    def show_pose_driver(model, source, lip, pose):
        return pose

    def show_lip_driver(model, source, lip, pose):
        return lip

    follows_pose = probes.cross_driving_probe(model, data, reader, triples=6, frames=12, render=show_pose_driver)
    assert follows_pose["cross_pose_coef"] == pytest.approx(1.0)
    assert follows_pose["cross_leak_pose"] == pytest.approx(0.0, abs=1e-9)
    assert follows_pose["cross_mouth_coef"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(follows_pose["cross_leak_mouth"]) and math.isnan(follows_pose["cross_leak"])
    follows_lip = probes.cross_driving_probe(model, data, reader, triples=6, frames=12, render=show_lip_driver)
    assert follows_lip["cross_mouth_r"] == pytest.approx(1.0) and follows_lip["cross_mouth_coef"] == pytest.approx(1.0)
    assert follows_lip["cross_leak_mouth"] == pytest.approx(0.0, abs=1e-9)
    assert follows_lip["cross_pose_coef"] == pytest.approx(0.0, abs=1e-9)
    # self-driven, both renders show the lip clip itself: drawn fully, and the planted reader reads exactly
    assert follows_lip["self_mouth_r"] == pytest.approx(1.0) and follows_lip["self_mouth_coef"] == pytest.approx(1.0)
    assert follows_lip["reader_mouth_coef"] == pytest.approx(1.0)
    assert follows_lip["reader_pose_coef"] == pytest.approx(1.0)  # the planted reader reads pose exactly
    assert "self_mouth_r" not in probes.cross_driving_probe(model, data, reader, triples=6, frames=12,
                                                            render=show_lip_driver, self_driven=False)


def test_self_driving_probe_tells_a_faint_mouth_from_a_missing_one(data):
    """A generator that draws the given mouth at a third of its size keeps r 1 but slope 1/3; one that
    keeps the source's mouth has slope 0."""
    model, reader = tiny_model(), planted_reader(data)

    def faint(read):
        def scaled(images):
            out = read(images)
            return {**out, "mouth": out["mouth"] / 3.0}
        return scaled

    faint_reader = faint(reader)
    calls = []

    def read_self_faint(images):  # per triple: cross, self from first / closed / open, the lip and pose truth
        calls.append(len(images))
        return faint_reader(images) if len(calls) % 6 in (2, 3, 4) else reader(images)

    v = probes.cross_driving_probe(model, data, read_self_faint, triples=4, frames=12,
                                   render=lambda m, s, lip, pose: lip)
    assert v["self_mouth_r"] == pytest.approx(1.0) and v["self_mouth_coef"] == pytest.approx(1 / 3)
    assert v["self_mouth_coef_closed"] == pytest.approx(1 / 3) and v["self_mouth_coef_open"] == pytest.approx(1 / 3)
    assert v["reader_mouth_coef"] == pytest.approx(1.0)
    keeps_source = probes.cross_driving_probe(model, data, reader, triples=4, frames=12,
                                              render=lambda m, s, lip, pose: s.expand_as(lip))
    for key in ("self_mouth_coef", "self_mouth_coef_closed", "self_mouth_coef_open"):
        assert keeps_source[key] == pytest.approx(0.0, abs=1e-9)


def test_self_driven_sources_are_the_first_most_closed_and_most_open_frames():
    opening = np.array([0.3, 0.1, 0.9, 0.5])
    assert [probes.self_source_index(opening, w) for w in probes.SELF_SOURCES] == [0, 1, 2]
    with pytest.raises(ValueError, match="first"):
        probes.self_source_index(opening, "middle")


def test_a_generator_that_only_closes_mouths_scores_open_not_closed(data):
    """Rendered from its source, the planted output keeps the source's opening as a floor (it can
    move pixels to close a mouth, not draw an opening): closed-source slope 0, open-source slope 1."""
    model, reader = tiny_model(), planted_reader(data)
    rows = truth_lookup(data)

    def cannot_open(model, source, lip, pose):
        i, t = rows[frame_key(source[0])]
        floor = data.truth[i]["mouth"][t, 0]
        openings = [data.truth[i]["mouth"][t, 0] for i, t in (rows[frame_key(im)] for im in lip)]
        return lip if max(openings) <= floor else source.expand_as(lip)

    v = probes.cross_driving_probe(model, data, reader, triples=4, frames=12, render=cannot_open)
    assert v["self_mouth_coef_open"] == pytest.approx(1.0)
    assert v["self_mouth_coef_closed"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.skipif(not default_factor_net_dir().is_dir(), reason="no shipped SynthTalk factor net")
def test_shipped_factor_net_reads_ground_truth_frames(data):
    """With the drivers' own frames as the 'output', the shipped net sees who drove what."""
    reader = probes.FactorReader.load()
    model = tiny_model()
    pose = probes.cross_driving_probe(model, data, reader, triples=24, render=lambda m, s, lip, pose: pose)
    assert pose["cross_pose_coef"] > 0.7 and pose["cross_leak_pose"] < 0.1  # measured 0.83, 0.03
    lip = probes.cross_driving_probe(model, data, reader, triples=24, render=lambda m, s, lip, pose: lip)
    assert lip["cross_mouth_r"] > 0.9 and abs(lip["cross_leak_mouth"]) < 0.1  # measured 0.97, 0.00


@pytest.mark.skipif(not default_factor_net_dir().is_dir(), reason="no shipped SynthTalk factor net")
def test_training_probe_renders_a_tiny_model_deterministically(tree, tmp_path):
    probe = probes.TrainingProbe(tree, triples=3, frames=8, run_dir=tmp_path)
    first, second = probe(tiny_model(), 5), probe(tiny_model(), 10)
    assert first == pytest.approx(second, nan_ok=True)  # same triples, same model → same numbers
    for key in ("cross_mouth_r", "cross_pose_coef", "cross_leak", "mouth_open_r2", "yaw_r2", "leak_mouth"):
        assert f"probe/{key}" in first
    assert all(math.isfinite(v) for k, v in first.items() if k.endswith("_r2"))
    assert [r["step"] for r in probes.read_probe_records(tmp_path)] == [5, 10]
    lip_pose = probe(tiny_model(exp_dim=0), 15)
    assert "probe/cross_pose_coef" in lip_pose and not any(k.startswith("probe/exp_") for k in lip_pose)


def test_training_probe_leaves_cross_driving_out_of_a_two_speaker_split(tmp_path):
    generate(tmp_path, kind="mead", size=64, seed=2, speakers=4, emotions=["sad"], levels=[3], frames=8,
             test_fraction=0.5, mel=False, quiet=True)
    with pytest.warns(UserWarning, match="needs 3"):
        probe = probes.TrainingProbe(tmp_path / "mead", factor_net=lambda images: {})
    assert probe.reader is None
    assert not any(k.startswith("probe/cross") for k in probe(tiny_model(), 1))
    with pytest.raises(InputError, match=">= 0"):
        probes.TrainingProbe(tmp_path / "mead", every=-1)
    assert probe.due(1000) and not probe.due(999) and not probe.due(0)


# --------------------------------------------------------------------------- JSONL


def test_write_probe_record_appends_strict_json_lines(tmp_path):
    run = tmp_path / "run"
    probes.write_probe_record(run, 100, {"probe/yaw_r2": np.float32(0.25), "probe/cross_leak": float("nan")})
    path = probes.write_probe_record(run, 200, {"probe/yaw_r2": 0.5})
    lines = path.read_text().splitlines()
    assert path == run / "probes.jsonl" and len(lines) == 2
    first = json.loads(lines[0])
    assert first["step"] == 100 and first["probe/yaw_r2"] == 0.25 and first["probe/cross_leak"] is None
    assert "NaN" not in lines[0] and isinstance(first["time"], float)
    assert [r["probe/yaw_r2"] for r in probes.read_probe_records(run)] == [0.25, 0.5]
    assert probes.read_probe_records(tmp_path / "none") == []
    with open(path, "a") as f:
        f.write("{torn\n")
    with pytest.raises(InputError, match="probes.jsonl:3"):
        probes.read_probe_records(run)


# --------------------------------------------------------------------------- fractions of the ceiling


def test_relative_to_ceiling_divides_each_factor_by_its_own_ceiling():
    values = {"probe/mouth_open_r2": 0.45, "probe/wa_open_r2": 0.30, "probe/yaw_r2": 0.20, "probe/wa_yaw_r2": 0.60,
              "probe/exp_cheek_r2": 0.50, "probe/wa_brow_raise_r2": 0.35, "probe/exp_eyelid_r2": -0.2,
              "probe/pitch_r2": 0.10, "probe/tx_r2": 0.3, "probe/mouth_own_r2": 0.4, "probe/score": 0.9,
              "probe/cross_pose_coef": 0.8, "probe/leak_pose": 0.1}
    ceiling = {"mouth_open": 0.9, "yaw": 0.8, "cheek": 0.02, "brow_raise": 0.7, "eyelid": 0.5, "pitch": None}
    frac = probes.relative_to_ceiling(values, ceiling)
    assert set(frac) == {"probe/mouth_open_frac", "probe/wa_open_frac", "probe/yaw_frac", "probe/wa_yaw_frac",
                         "probe/exp_cheek_frac", "probe/wa_brow_raise_frac", "probe/exp_eyelid_frac", "probe/pitch_frac"}
    assert frac["probe/mouth_open_frac"] == pytest.approx(0.5)        # 0.45 / 0.9
    assert frac["probe/wa_open_frac"] == pytest.approx(1 / 3)         # 0.30 / 0.9: wa_open is the opening
    assert frac["probe/yaw_frac"] == pytest.approx(0.25)              # 0.20 / 0.8
    assert frac["probe/wa_yaw_frac"] == pytest.approx(0.75)           # 0.60 / 0.8
    assert frac["probe/wa_brow_raise_frac"] == pytest.approx(0.5)     # 0.35 / 0.7
    assert frac["probe/exp_eyelid_frac"] == pytest.approx(-0.4)       # −0.2 / 0.5
    assert math.isnan(frac["probe/exp_cheek_frac"])                   # a ceiling of 0.02: not visible
    assert math.isnan(frac["probe/pitch_frac"])                       # no ceiling (null)
    assert probes.relative_to_ceiling({"yaw_r2": 0.4}, {"yaw": 0.5}) == {"yaw_frac": pytest.approx(0.8)}
    assert math.isnan(probes.relative_to_ceiling({"yaw_r2": 0.4}, {"yaw": 0.5}, min_ceiling=0.6)["yaw_frac"])
    # the probe names of a factor list's short forms reach the ceiling's keys
    assert probes.ceiling_factor("probe/wa_open_r2") == "mouth_open"
    assert probes.ceiling_factor("exp_corner_curve_r2") == "corner_curve"
    assert probes.ceiling_factor("roll_r2") == "roll"


def test_load_ceiling_reads_files_and_folders_and_refuses_bad_ones(tmp_path):
    (tmp_path / "ceiling.json").write_text(json.dumps({"mouth_open": 0.9, "open": 0.8, "blink": None}))
    got = probes.load_ceiling(tmp_path)
    assert got["mouth_open"] == 0.8 and math.isnan(got["blink"])  # "open" is the same factor; the later wins
    assert probes.load_ceiling(tmp_path / "ceiling.json") == pytest.approx(got, nan_ok=True)
    for text, message in (("{torn", "not a ceiling JSON"), ("[0.5]", "JSON object"), ("{}", "JSON object"),
                          ('{"yaw": "high"}', "must be a number"), ('{"yaw": true}', "must be a number")):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(InputError, match=message) as err:
            probes.load_ceiling(tmp_path / "bad.json")
        assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="no ceiling file"):
        probes.load_ceiling(tmp_path / "missing")


def test_training_probe_records_carry_fractions_of_the_ceiling(tree, data, tmp_path):
    truth, groups = data.stacked_truth()
    planted = PlantedModel(data, linear_features(truth))
    ceiling = {"mouth_open": 0.5, "yaw": 0.8, "cheek": 0.9}
    probe = probes.TrainingProbe(tree, cross=False, frames=None, ceiling=ceiling, run_dir=tmp_path)
    values = probe(planted, 10)
    assert values["probe/mouth_open_frac"] == pytest.approx(values["probe/mouth_open_r2"] / 0.5)
    assert values["probe/yaw_frac"] == pytest.approx(values["probe/yaw_r2"] / 0.8)
    assert values["probe/exp_cheek_frac"] == pytest.approx(values["probe/exp_cheek_r2"] / 0.9)
    assert values["probe/wa_cheek_frac"] == pytest.approx(values["probe/wa_cheek_r2"] / 0.9)
    assert values["probe/mouth_open_frac"] > 1.9  # a planted model reads the opening exactly: 1 / 0.5
    assert "probe/pitch_frac" not in values  # the ceiling has no pitch
    record = probes.read_probe_records(tmp_path)[-1]
    assert record["probe/yaw_frac"] == pytest.approx(values["probe/yaw_frac"])
    # without a ceiling (and none in the tree) nothing changes
    plain = probes.TrainingProbe(tree, cross=False, frames=None)(planted, 10)
    assert not any(k.endswith("_frac") for k in plain)
    assert plain == pytest.approx({k: v for k, v in values.items() if not k.endswith("_frac")})


def test_training_probe_finds_the_trees_own_ceiling(tmp_path):
    generate(tmp_path, kind="mead", size=64, seed=2, speakers=2, emotions=["sad", "happy"], levels=[3], frames=8,
             test_fraction=0.5, mel=False, quiet=True)
    root = tmp_path / "mead"
    (root / "ceiling.json").write_text(json.dumps({"yaw": 0.5}))
    values = probes.TrainingProbe(root, cross=False)(tiny_model(), 1)
    assert values["probe/yaw_frac"] == pytest.approx(values["probe/yaw_r2"] / 0.5)
    without = probes.TrainingProbe(root, cross=False, ceiling=None)(tiny_model(), 1)
    assert not any(k.endswith("_frac") for k in without)
    (root / "ceiling.json").write_text("[]")
    with pytest.raises(InputError, match="JSON object"):
        probes.TrainingProbe(root, cross=False)


def test_reader_pose_coef_is_the_readers_own_bound(data):
    """A reader that sees half of every pose movement caps cross_pose_coef at 0.5, even for a renderer
    that shows the pose driver itself, and reader_pose_coef says so."""
    model, reader = tiny_model(), planted_reader(data)

    def half_pose(images):
        out = reader(images)
        return {**out, "pose": out["pose"] * 0.5}

    v = probes.cross_driving_probe(model, data, half_pose, triples=6, frames=12, render=lambda m, s, lip, pose: pose)
    assert v["cross_pose_coef"] == pytest.approx(0.5) and v["reader_pose_coef"] == pytest.approx(0.5)
    ignores_pose = probes.cross_driving_probe(model, data, half_pose, triples=6, frames=12,
                                              render=lambda m, s, lip, pose: lip)  # the bound is the reader's alone
    assert ignores_pose["cross_pose_coef"] == pytest.approx(0.0, abs=1e-9)
    assert ignores_pose["reader_pose_coef"] == pytest.approx(0.5)
