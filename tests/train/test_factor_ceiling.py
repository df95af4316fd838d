"""The ceiling of a SynthTalk tree (edtalk.train.factor_net.measure_ceiling, scripts/factor_ceiling.py):
the factor net trained on the tree's train split, its held-out R² per factor column."""

import json

import numpy as np
import pytest
import torch

from edtalk.data import synthtalk as st
from edtalk.errors import InputError
from edtalk.networks.factor_net import FactorNet, FactorNetConfig
from edtalk.train.factor_net import (CEILING_FILE, FACTOR_COLUMNS, factor_column_r2, load_factor_frames,
                                     measure_ceiling, target_stats)

TINY = "configs/train/factor_net_ceiling_tiny.yaml"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """32 speakers (24 train, 8 held out) × one neutral clip of 8 frames at 32²."""
    out = tmp_path_factory.mktemp("ceiling_tree")
    st.generate(out, kind="mead", size=32, seed=3, speakers=32, emotions=("neutral",), levels=(1,), frames=8,
                mel=False, validate=False, quiet=True)
    return out / "mead"


def test_factor_columns_are_the_target_columns_in_order():
    names = [f"mouth_{n}" for n in st.MOUTH_NAMES] + list(st.POSE_NAMES) + list(st.EXPRESSION_NAMES) + ["blink"]
    assert list(FACTOR_COLUMNS) == names


def test_factor_column_r2_scores_each_column_against_its_own_truth(tree):
    data = load_factor_frames(tree, "test")
    net = FactorNet(FactorNetConfig(size=32, channels=(4, 8, 8, 8, 8), hidden=16))
    torch.nn.init.zeros_(net.head[3].weight)
    torch.nn.init.zeros_(net.head[3].bias)  # every prediction is target_mean
    truth = data.targets[:, :len(FACTOR_COLUMNS)].astype(np.float64)
    mean, std = truth.mean(0), truth.std(0)
    planted = mean.copy()
    planted[3] += 0.5 * std[3]   # yaw: off by half a std → R² = 1 − (1 + 0.25) = −0.25
    planted[0] -= 2.0 * std[0]   # mouth opening: off by two → R² = 1 − (1 + 4) = −4
    net.target_mean[:len(FACTOR_COLUMNS)] = torch.from_numpy(planted).float()
    r2 = factor_column_r2(net, data, batch_size=5)
    assert list(r2) == list(FACTOR_COLUMNS)
    assert r2["yaw"] == pytest.approx(-0.25, abs=1e-3) and r2["mouth_open"] == pytest.approx(-4.0, abs=1e-3)
    assert all(r2[n] != r2[n] for n, sd in zip(FACTOR_COLUMNS, std) if sd <= 1e-6)  # constant: NaN
    varying = [n for n, sd in zip(FACTOR_COLUMNS, std) if sd > 1e-6]
    assert all(r2[n] == pytest.approx(0.0, abs=1e-3) for n in varying if n not in ("yaw", "mouth_open"))


def test_ceiling_trains_resumes_and_beats_a_random_network(tree, tmp_path, capsys):
    out = tmp_path / "ceiling"
    measure_ceiling(tree, out, steps=150, config=TINY)
    assert json.loads((out / "ceiling_run.json").read_text())["step"] == 150
    capsys.readouterr()
    ceiling = measure_ceiling(tree, out, config=TINY)  # the config's 300 steps: resumes at 150
    assert "step_00000150.pt at step 150" in capsys.readouterr().out  # went on, did not start again
    meta = json.loads((out / "ceiling_run.json").read_text())
    assert meta["step"] == 300 and meta["complete"] and meta["size"] == 32 and meta["frames"] == 64
    assert sorted((out / "run" / "checkpoints").iterdir())[-1].name == "step_00000300.pt"
    written = json.loads((out / CEILING_FILE).read_text())
    assert list(written) == list(FACTOR_COLUMNS)
    for name, value in ceiling.items():
        assert written[name] == (round(value, 4) if np.isfinite(value) else None)
    # the same network untrained (targets standardised alike) reads nothing of the mouth
    torch.manual_seed(0)
    random = FactorNet(FactorNetConfig(size=32, channels=(8, 16, 16, 16, 16), hidden=32))
    mean, std = target_stats(load_factor_frames(tree, "train").targets)
    random.target_mean.copy_(torch.from_numpy(mean))
    random.target_std.copy_(torch.from_numpy(std))
    baseline = factor_column_r2(random, load_factor_frames(tree, "test"))["mouth_open"]
    assert ceiling["mouth_open"] > 0.2 and ceiling["mouth_open"] > baseline + 0.3, (ceiling["mouth_open"], baseline)


def test_a_ceiling_folder_belongs_to_one_tree_and_bad_trees_are_one_line(tree, tmp_path):
    out = tmp_path / "c"
    (out).mkdir()
    (out / "ceiling_run.json").write_text(json.dumps({"tree": str(tmp_path / "another")}))
    with pytest.raises(InputError, match="ceiling of another tree"):
        measure_ceiling(tree, out, steps=1, config=TINY)
    with pytest.raises(InputError, match="no train.json"):
        measure_ceiling(tmp_path, tmp_path / "d", steps=1, config=TINY)
    with pytest.raises(InputError, match="at least 1"):
        measure_ceiling(tree, tmp_path / "e", steps=0, config=TINY)


def test_script_writes_the_ceiling_and_copies_it_into_the_tree(tree, tmp_path, capsys):
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("factor_ceiling", "scripts/factor_ceiling.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    private = tmp_path / "mead"
    shutil.copytree(tree, private)
    assert script.main(["--tree", str(private), "--out", str(tmp_path / "c"), "--steps", "2", "--config", TINY,
                        "--into-tree", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "mouth_open" in printed and "after 2 steps" in printed
    assert json.loads((private / CEILING_FILE).read_text()) == json.loads((tmp_path / "c" / CEILING_FILE).read_text())
    assert script.main(["--tree", str(tmp_path / "nothing"), "--out", str(tmp_path / "x"), "--config", TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edtalk: error:") and "\n" not in err
