"""Checkpoint download (against local files: no network in tests) and expression presets."""
import numpy as np
import pytest

from edtalk import EDTalkError
from edtalk.cli import main
from edtalk.hub import FILES, download
from edtalk.presets import PRESETS, blend, expression_from_spec, parse_preset_spec, preset


def test_download_from_hub_mock_places_files_and_shows_terms(tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    for name in FILES:
        (remote / name).write_bytes(name.encode())
    calls, logs = [], []

    def fake_fetch(repo_id, names, dest):
        calls.append((repo_id, list(names)))
        return {n: (dest / n).write_bytes((remote / n).read_bytes()) or dest / n for n in names}

    paths = download(tmp_path / "ckpt", fetch=fake_fetch, log=logs.append)
    assert calls == [("tanhshuai0219/EDTalk", list(FILES))]
    assert all(paths[n].read_bytes() == n.encode() for n in FILES)
    assert "non-commercial" in logs[0]
    # A second run downloads nothing.
    download(tmp_path / "ckpt", fetch=fake_fetch, log=logs.append)
    assert len(calls) == 1


def test_download_without_network_explains_manual_placement(tmp_path):
    def offline(*_):
        raise OSError("Name or service not known")

    with pytest.raises(EDTalkError, match="place EDTalk.pt, EDTalk_lip_pose.pt, Audio2Lip.pt"):
        download(tmp_path / "ckpt", fetch=offline, log=lambda *_: None)


def test_download_cli_copies_from_local_folder(tmp_path, capsys):
    src = tmp_path / "mine" / "ckpts"
    src.mkdir(parents=True)
    for name in FILES:
        (src / name).write_bytes(b"w")
    assert main(["download", "--dest", str(tmp_path / "c"), "--from", str(tmp_path / "mine")]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(FILES)
    assert main(["download", "--dest", str(tmp_path / "d"), "--from", str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_presets_values_intensity_and_blends():
    assert len(PRESETS) == 8
    np.testing.assert_allclose(preset("happy"), PRESETS["happy"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(preset("happy", 0.0), PRESETS["neutral"], atol=1e-6)
    np.testing.assert_allclose(preset("sad", 0.5), (np.array(PRESETS["sad"]) + PRESETS["neutral"]) / 2, atol=1e-6)
    np.testing.assert_allclose(blend({"happy": 3, "sad": 1}),
                               0.75 * preset("happy") + 0.25 * preset("sad"), atol=1e-6)
    assert parse_preset_spec("Happy+sad") == {"happy": 1.0, "sad": 1.0}
    np.testing.assert_allclose(expression_from_spec("happy:0.5+sad:0.5"), blend({"happy": 1, "sad": 1}), atol=1e-6)
    with pytest.raises(EDTalkError, match="unknown expression preset"):
        preset("joyful")
    with pytest.raises(EDTalkError, match="blend weight"):
        parse_preset_spec("happy:lots")


def test_cli_presets_folder_applies_to_its_command_only(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    np.save(folder / "neutral.npy", np.zeros((1, 10), np.float32))
    np.save(folder / "happy.npy", np.ones((1, 10), np.float32))
    assert main(["presets", "--presets", str(folder)]) == 0
    assert "sad" not in capsys.readouterr().out
    # The next call in the same process is back on the official table.
    np.testing.assert_array_equal(expression_from_spec("sad"), preset("sad"))
