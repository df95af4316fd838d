"""Motion-weight extraction (docs/design.md §8.8), its cache, and presets made from it."""
import json
import os

import numpy as np
import pytest
import torch

from edtalk.cli import main as cli_main
from edtalk.config import EDTalkConfig
from edtalk.data import layout
from edtalk.data.datasets import to_tensor
from edtalk.data.store import open_frames
from edtalk.errors import InputError
from edtalk.model import EDTalk
from edtalk.train.motion import compute_presets, extract_motion, load_motion, motion_path, write_presets


def _tree_view(src, dst):
    """A tree that shares src's media (symlinks) but has its own motion cache folders."""
    dst.mkdir()
    for entry in os.listdir(src):
        if not entry.startswith("EDTalk_"):
            os.symlink(src / entry, dst / entry)
    return dst


def _model(exp_dim=10, seed=0):
    torch.manual_seed(seed)
    return EDTalk(EDTalkConfig.tiny(exp_dim=exp_dim)).eval()


def test_cached_weights_equal_motion_weights_on_the_frames(synth_tree, tmp_path):
    root = _tree_view(synth_tree, tmp_path / "tree")
    model = _model().train()  # extraction must switch to eval and back
    names = layout.list_clips(root)[:2]
    done = extract_motion(model, root, names, batch_size=5, progress=False)
    assert done == {"written": 2, "skipped": 0}
    assert model.training
    store = open_frames(root)
    for name in names:
        frames = store.frames(name, range(store.num_frames(name)))
        with torch.no_grad():
            want = model.eval().motion_weights(torch.stack([to_tensor(f) for f in frames]))
        model.train()
        for part, dim in (("mouth", 20), ("pose", 6), ("exp", 10)):
            got = load_motion(root, name, part)
            assert got.dtype == np.float32 and got.shape == (len(frames), dim)
            np.testing.assert_allclose(got, want[part].numpy(), rtol=0, atol=2e-5)
    assert not motion_path(root, layout.list_clips(root)[2], "exp").exists()


def test_extraction_is_idempotent_and_overwrite_recomputes(synth_tree, tmp_path):
    root = _tree_view(synth_tree, tmp_path / "tree")
    name = layout.read_split(root, "train")[0]
    extract_motion(_model(seed=0), root, [name], parts=("mouth",), progress=False)
    first = load_motion(root, name, "mouth")
    stamp = motion_path(root, name, "mouth").stat().st_mtime_ns
    # Another model, no overwrite: the cache is kept untouched.
    assert extract_motion(_model(seed=1), root, [name], parts=("mouth",), progress=False) == {"written": 0, "skipped": 1}
    assert motion_path(root, name, "mouth").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(load_motion(root, name, "mouth"), first)
    # A part not cached yet makes the clip due again; overwrite recomputes with the new model.
    extract_motion(_model(seed=1), root, [name], parts=("mouth", "pose"), overwrite=True, progress=False)
    assert not np.allclose(load_motion(root, name, "mouth"), first)
    assert not list((root / "EDTalk_lip_feature").glob("*.tmp*"))


def test_lip_pose_model_cannot_give_expression_and_missing_cache_names_the_command(synth_tree, tmp_path):
    root = _tree_view(synth_tree, tmp_path / "tree")
    with pytest.raises(InputError, match="expression"):
        extract_motion(_model(exp_dim=0), root, parts=("exp",), progress=False)
    with pytest.raises(InputError, match="edtalk extract-motion"):
        load_motion(root, layout.read_split(root, "train")[0], "exp")


def _planted_tree(root, rng):
    """A MEAD-style split with planted α_e caches (no media needed for presets)."""
    names, arrays = [], {}
    for spk in ("M001", "W002"):
        for emotion in layout.EMOTIONS:
            for level in ((1,) if emotion == "neutral" else (1, 3)):
                name = layout.format_mead_name(spk, emotion, level, 1)
                arrays[name] = rng.normal(size=(int(rng.integers(3, 9)), 10)).astype(np.float32)
                names.append(name)
    layout.write_split(root, "train", names)
    layout.write_split(root, "test", [])
    for name, a in arrays.items():
        path = motion_path(root, name, "exp")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, a)
    return arrays


def test_presets_of_a_planted_cache_are_the_frame_means(tmp_path):
    arrays = _planted_tree(tmp_path, np.random.default_rng(0))

    def mean_of(pick):
        return np.concatenate([a for n, a in arrays.items() if pick(layout.parse_mead_name(n))]).astype(np.float64).mean(0)

    level3 = compute_presets(tmp_path, levels=(3,))
    every = compute_presets(tmp_path, levels=None)
    for emotion in layout.EMOTIONS:
        neutral = emotion == "neutral"
        np.testing.assert_allclose(level3["presets"][emotion],
                                   mean_of(lambda p: p.emotion == emotion and (neutral or p.level == 3)), atol=1e-6)
        np.testing.assert_allclose(every["presets"][emotion], mean_of(lambda p: p.emotion == emotion), atol=1e-6)
        if not neutral:
            np.testing.assert_allclose(every["per_level"][emotion][1],
                                       mean_of(lambda p: p.emotion == emotion and p.level == 1), atol=1e-6)
    out = tmp_path / "presets"
    write_presets(level3, out)
    for emotion in layout.EMOTIONS:
        saved = np.load(out / f"{emotion}.npy")
        assert saved.shape == (1, 10) and saved.dtype == np.float32
        np.testing.assert_array_equal(saved[0], level3["presets"][emotion])
    info = json.loads((out / "presets.json").read_text())
    assert info["clips"]["happy"] == 2 and info["clips"]["neutral"] == 2


def test_cli_extract_motion_then_make_presets(synth_tree, tmp_path, capsys):
    root = _tree_view(synth_tree, tmp_path / "tree")
    model = _model()
    model.save_pretrained(tmp_path / "ckpt")
    assert cli_main(["extract-motion", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(root), "--parts",
                     "mouth,pose", "--split", "test", "--quiet", "--device", "cpu"]) == 0
    for name in layout.read_split(root, "test"):
        assert load_motion(root, name, "pose").shape[1] == 6
    out = tmp_path / "presets"
    assert cli_main(["make-presets", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(root), "--levels", "all",
                     "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    written = sorted(p.stem for p in out.glob("*.npy"))
    assert written == ["happy", "neutral"]  # the emotions the tree has
    want = compute_presets(root, levels=None)["presets"]["happy"]
    np.testing.assert_array_equal(np.load(out / "happy.npy")[0], want)
    assert cli_main(["extract-motion", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(root), "--parts",
                     "exp,bogus", "--quiet", "--device", "cpu"]) == 2
    assert "unknown motion part" in capsys.readouterr().err


def test_a_preset_folder_replaces_the_official_table(tmp_path, monkeypatch):
    from edtalk import presets

    _planted_tree(tmp_path, np.random.default_rng(1))
    result = compute_presets(tmp_path, levels=(3,))
    result["presets"] = {k: v for k, v in result["presets"].items() if k in ("neutral", "happy")}
    write_presets(result, tmp_path / "mine")
    happy, neutral = result["presets"]["happy"], result["presets"]["neutral"]
    try:
        presets.use_preset_dir(tmp_path / "mine")
        np.testing.assert_array_equal(presets.expression_from_spec("happy"), happy)
        np.testing.assert_allclose(presets.expression_from_spec("happy", 0.5), (happy + neutral) / 2, atol=1e-6)
        with pytest.raises(InputError, match="choose from happy, neutral"):
            presets.expression_from_spec("sad")
        presets.use_preset_dir(None)
        np.testing.assert_array_equal(presets.expression_from_spec("sad"), presets.preset("sad"))
        monkeypatch.setenv(presets.PRESETS_ENV, str(tmp_path / "mine"))
        assert presets.preset_names() == ["happy", "neutral"]
        (tmp_path / "mine" / "neutral.npy").unlink()
        with pytest.raises(InputError, match="neutral.npy"):
            presets.use_preset_dir(tmp_path / "mine")
    finally:
        presets.use_preset_dir(None)


def test_presets_warn_about_emotions_missing_at_the_chosen_level(tmp_path):
    names = [layout.format_mead_name("M001", "neutral", 1, 1), layout.format_mead_name("M001", "happy", 1, 1)]
    layout.write_split(tmp_path, "train", names)
    for name in names:
        motion_path(tmp_path, name, "exp").parent.mkdir(parents=True, exist_ok=True)
        np.save(motion_path(tmp_path, name, "exp"), np.ones((2, 10), np.float32))
    with pytest.warns(UserWarning, match="for happy"):
        assert sorted(compute_presets(tmp_path, levels=(3,))["presets"]) == ["neutral"]
