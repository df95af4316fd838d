"""The on-disk contract: names, splits and validate_tree's problem reports."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from edtalk.data import layout, synthtalk as st
from edtalk.errors import InputError
from edtalk.testing import find_reference, skip_unless_required


def test_name_parsers_round_trip_and_reject():
    p = layout.parse_mead_name("M003#angry#level_1#001")
    assert p == ("M003", "angry", 1, 1) and str(p) == "M003#angry#level_1#001"
    assert layout.parse_hdtf_name("WDA_BarackObama_000#12") == ("WDA_BarackObama_000", 12)
    assert layout.format_mead_name("W015", "sad", 3, 7) == "W015#sad#level_3#007"
    assert layout.name_kind("RD_Radio1_000#3") == "hdtf" and layout.name_kind("M003#fear#level_2#010") == "mead"
    assert layout.group_of("M003#fear#level_2#010") == "M003" and layout.group_of("RD_x_000#3") == "RD_x_000"
    for bad in ("M003#bored#level_1#001", "M003#angry#level_4#001", "M003#angry#level_1#1", "M003#angry#001"):
        with pytest.raises(InputError):
            layout.parse_mead_name(bad)
    for bad in ("video#0", "video", "a/b#1", "#1", "v#x"):
        with pytest.raises(InputError):
            layout.parse_hdtf_name(bad)
    assert layout.clip_path("/r", "mel", "v#1").as_posix() == "/r/mel/v#1.npy"


def test_official_split_lists_parse():
    """Every name in the official lists (when present) satisfies our parsers."""
    d = find_reference("splits")
    if d is None or not (d / "test.json").is_file():
        skip_unless_required("official split lists not found (../shared/reference/splits)")
    names = json.loads((d / "test.json").read_text())
    kinds = [layout.name_kind(n) for n in names]
    mead = [n for n, k in zip(names, kinds) if k == "mead"]
    assert {layout.parse_mead_name(n).speaker for n in mead} == set(layout.MEAD_TEST_SPEAKERS)
    assert kinds.count("hdtf") == 1994


@pytest.fixture(scope="module")
def base_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout") / "mead"
    st.generate_mead(root, speakers=2, emotions=("neutral", "happy"), levels=(1,), frames=6, size=16, mel=False,
                     validate=False)
    return root


@pytest.fixture
def tree(base_tree, tmp_path):
    root = tmp_path / "t"
    shutil.copytree(base_tree, root)
    return root


def _problems(root, kind="mead", **kw):
    with pytest.raises(InputError) as exc:
        layout.validate_tree(root, kind, **kw)
    return str(exc.value)


def test_valid_tree_report(tree):
    rep = layout.validate_tree(tree, "mead")
    assert rep.num_clips == 4 and rep.num_frames == 24 and rep.media_checked
    assert rep.groups == {"train": ["M101"], "test": ["W102"]}
    assert "MEAD tree" in str(rep) and "4 clips" in str(rep)


def test_validation_lists_every_problem(tree):
    name = "M101#happy#level_1#001"
    (tree / "bbox" / f"{name}.npy").unlink()
    np.save(tree / "landmark" / "M101#neutral#level_1#001.npy", np.zeros((5, 68, 2), np.float32))
    wav, _ = sf.read(str(tree / "audio" / "W102#happy#level_1#001.wav"), dtype="float32")
    sf.write(str(tree / "audio" / "W102#happy#level_1#001.wav"), wav[:-10], 16000)
    msg = _problems(tree)
    assert f"{name}: missing bbox" in msg
    assert "landmark has 5 rows, video has 6 frames" in msg
    assert "expected 6·640 = 3840" in msg
    assert "3 problem(s)" in msg
    # without media checks the landmark count defines T and the audio is not read
    msg = _problems(tree, check_media=False)
    assert "missing bbox" in msg and "3840" not in msg


def test_validation_checks_names_splits_and_rates(tree):
    train = json.loads((tree / "train.json").read_text())
    (tree / "test.json").write_text(json.dumps(json.loads((tree / "test.json").read_text()) + [train[0], "bad name"]))
    sf.write(str(tree / "audio" / "W102#neutral#level_1#001.wav"), np.zeros(6 * 320, np.float32), 8000)
    msg = _problems(tree)
    assert "listed twice" in msg and "not a MEAD clip name" in msg and "at 8000 Hz" in msg
    assert "not an HDTF clip name" in _problems(tree, kind="hdtf")


def test_validation_side_file_shapes(tree):
    name = "W102#happy#level_1#001"
    np.save(tree / "bbox" / f"{name}.npy", np.zeros((6, 4), np.float32))
    (tree / "mel").mkdir()
    msg = _problems(tree, check_media=False)
    assert "bbox must be integers" in msg and "missing mel" in msg
    np.save(tree / "bbox" / f"{name}.npy", np.tile([5, 5, 2, 9], (6, 1)))
    assert "0 ≤ x1 < x2" in _problems(tree, check_media=False)


def test_hdtf_numbering_and_clip_lengths(tmp_path):
    root = tmp_path / "hdtf"
    st.generate_hdtf(root, videos=2, seconds=6.0, size=16, mel=False, validate=False)
    rep = layout.validate_tree(root, "hdtf", check_media=False)
    assert sorted(rep.frames.values()) == [25, 25, 125, 125]
    # a gap in the numbering
    test = json.loads((root / "test.json").read_text())
    (root / "test.json").write_text(json.dumps([n for n in test if not n.endswith("#1")]))
    assert "are not 1..1" in _problems(root, "hdtf", check_media=False)
    (root / "test.json").write_text(json.dumps(test))
    # a non-final clip shorter than 5 s
    name = "SYN_Person000_000#1"
    for part, arr in (("landmark", np.zeros((100, 68, 2), np.float32)), ("bbox", np.tile([1, 1, 5, 5], (100, 1)))):
        np.save(layout.clip_path(root, part, name), arr)
    (root / "factors").rename(root / "factors_off")
    assert "only the last clip" in _problems(root, "hdtf", check_media=False)


def test_split_overlap_and_missing_root(tree, tmp_path):
    test = json.loads((tree / "test.json").read_text())
    train = json.loads((tree / "train.json").read_text())
    # move one W102 clip to train: the speaker is in both splits
    (tree / "train.json").write_text(json.dumps(train + test[:1]))
    (tree / "test.json").write_text(json.dumps(test[1:]))
    assert "speakers in both train and test: W102" in _problems(tree, check_media=False)
    with pytest.raises(InputError, match="does not exist"):
        layout.validate_tree(tmp_path / "nope")
    with pytest.raises(InputError, match="kind"):
        layout.validate_tree(tree, "vox")


def test_reference_files_are_found_beside_the_parity_set(tmp_path, monkeypatch):
    (tmp_path / "official_parity").mkdir()
    (tmp_path / "splits").mkdir()
    monkeypatch.setenv("EDTALK_PARITY_DIR", str(tmp_path / "official_parity"))
    assert find_reference("splits") == tmp_path / "splits"
    assert find_reference("nothing_here") is None
