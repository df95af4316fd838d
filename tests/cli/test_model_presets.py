"""A model folder's presets/ are the preset table whenever that folder is used (issue 19): `edtalk generate
--checkpoint-dir checkpoints/synthtalk --exp happy` is the same as with `--presets checkpoints/synthtalk/presets`,
the Python API does the same, `--presets` still overrides, and `edtalk presets --checkpoint-dir` lists them."""
import threading
from pathlib import Path

import numpy as np
import pytest

from edtalk import presets
from edtalk.cli import main
from edtalk.pipelines.generate import GenerateOptions, generate
from edtalk.video import read_video

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "checkpoints" / "synthtalk"
FACE = REPO / "examples" / "synthtalk_face.png"


@pytest.fixture(autouse=True)
def no_process_presets(monkeypatch):
    monkeypatch.delenv(presets.PRESETS_ENV, raising=False)
    presets.use_preset_dir(None)


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory) -> Path:
    """The official table written out as a preset folder (to ask for it explicitly)."""
    folder = tmp_path_factory.mktemp("official-presets")
    for name, weights in presets.PRESETS.items():
        np.save(folder / f"{name}.npy", np.asarray(weights, np.float32)[None])
    return folder


def generate_frames(tmp_path, media, name: str, *flags) -> np.ndarray:
    out = tmp_path / f"{name}.mp4"
    assert main(["generate", "--checkpoint-dir", str(BUNDLED), "--no-crop", "--quiet", "--device", "cpu",
                 "--source", str(FACE), "--audio", str(media["speech"]), "--exp", "happy", "--out", str(out),
                 *map(str, flags)]) == 0
    return read_video(out)[0]


def test_the_model_folders_presets_are_the_default(tmp_path, media, official_dir):
    default = generate_frames(tmp_path, media, "default")
    explicit = generate_frames(tmp_path, media, "explicit", "--presets", BUNDLED / "presets")
    official = generate_frames(tmp_path, media, "official", "--presets", official_dir)
    assert np.array_equal(default, explicit)
    assert np.abs(default.astype(int) - official).max() > 10  # the official weights are another expression space
    api = generate(GenerateOptions(source=str(FACE), audio=str(media["speech"]), exp="happy", crop=False,
                                   checkpoint_dir=str(BUNDLED), device="cpu", progress=False,
                                   out=str(tmp_path / "api.mp4")))
    assert np.array_equal(read_video(api.path)[0], explicit)


def test_the_choice_of_table_in_order(tmp_path, monkeypatch, official_dir):
    generator = BUNDLED / "EDTalk"
    assert presets.choose_preset_dir(None, generator) == BUNDLED / "presets"
    assert presets.choose_preset_dir(None, BUNDLED / "EDTalk.pt") == BUNDLED / "presets"  # beside an official file
    assert presets.choose_preset_dir(official_dir, generator) == official_dir  # --presets wins
    assert presets.choose_preset_dir(None, tmp_path / "EDTalk.pt") is None  # no presets/: the official table
    monkeypatch.setenv(presets.PRESETS_ENV, str(official_dir))
    assert presets.choose_preset_dir(None, generator) == BUNDLED / "presets"  # the model's own before the env
    assert presets.choose_preset_dir(None, tmp_path / "EDTalk.pt") == official_dir


def test_a_calls_table_stays_in_its_thread():
    seen = {}

    def other_thread():
        seen["other"] = presets.preset("happy")

    with presets.presets_from(BUNDLED / "presets"):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        inside = presets.preset("happy")
    np.testing.assert_array_equal(seen["other"], np.asarray(presets.PRESETS["happy"], np.float32))
    np.testing.assert_array_equal(inside, np.load(BUNDLED / "presets" / "happy.npy").reshape(-1))
    np.testing.assert_array_equal(presets.preset("happy"), np.asarray(presets.PRESETS["happy"], np.float32))


def test_presets_command_lists_the_model_folders(capsys, official_dir, tmp_path):
    assert main(["presets", "--checkpoint-dir", str(BUNDLED)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"expression presets ({BUNDLED / 'presets'}): angry contempt disgusted fear happy neutral sad surprised"
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("neutral", "calm"):
        np.save(mine / f"{name}.npy", np.zeros((1, 10), np.float32))
    assert main(["presets", "--checkpoint-dir", str(BUNDLED), "--presets", str(mine)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"expression presets ({mine}): calm neutral"
    assert main(["presets", "--checkpoint-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("expression presets (the official presets): angry ")
