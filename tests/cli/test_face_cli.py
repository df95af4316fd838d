"""CLI runs with real face preprocessing (dlib on the public-domain astronaut photo)."""
import numpy as np
import pytest
import skimage.data
from PIL import Image

from edtalk.cli import main
from edtalk.video import read_video


def run(tiny_ckpts, *args):
    ckpt_dir = str(next(iter(tiny_ckpts.values())).parent)
    return main(["generate", "--checkpoint-dir", ckpt_dir, "--quiet", *map(str, args)])


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    astro = skimage.data.astronaut()
    Image.fromarray(astro).save(root / "astronaut.png")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(root / "gray.png")
    two = np.zeros((512, 1024, 3), np.uint8)
    two[:, :512] = astro
    small = np.asarray(Image.fromarray(astro).resize((300, 300)))
    two[100:400, 600:900] = small
    Image.fromarray(two).save(root / "two.png")
    return root


def test_crop_and_paste_back_from_a_full_photo(tiny_ckpts, media, photos, tmp_path):
    out = tmp_path / "crop.mp4"
    assert run(tiny_ckpts, "--source", photos / "astronaut.png", "--audio", media["speech"], "--out", out) == 0
    frames, _ = read_video(out)
    assert frames.shape == (32, 64, 64, 3)
    pasted = tmp_path / "paste.mp4"
    assert run(tiny_ckpts, "--source", photos / "astronaut.png", "--audio", media["speech"], "--paste-back",
               "--out", pasted) == 0
    full, _ = read_video(pasted)
    assert full.shape == (32, 512, 512, 3)
    # Outside the face the original photo is untouched (up to H.264 loss).
    astro = skimage.data.astronaut().astype(np.float32)
    assert np.abs(full[0, 400:, :100].astype(np.float32) - astro[400:, :100]).mean() < 6


def test_no_face_is_one_clear_error(tiny_ckpts, media, photos, tmp_path, capsys):
    out = tmp_path / "none.mp4"
    assert run(tiny_ckpts, "--source", photos / "gray.png", "--audio", media["speech"], "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "face" in err[0].lower() and err[0].startswith("edtalk: error:")
    assert not out.exists()


def test_several_faces_take_the_largest_with_a_warning(tiny_ckpts, media, photos, tmp_path, capsys):
    out = tmp_path / "two.mp4"
    with pytest.warns(UserWarning, match="faces found in the image; using the largest"):
        assert run(tiny_ckpts, "--source", photos / "two.png", "--audio", media["speech"], "--out", out) == 0
    assert out.is_file()


def test_dubbing_with_face_tube_and_paste_back(tiny_ckpts, media, tmp_path):
    from pathlib import Path

    clip = Path(__file__).resolve().parents[2] / "examples" / "pose.mp4"
    original, _ = read_video(clip)
    out = tmp_path / "dub.mp4"
    assert run(tiny_ckpts, "--source", clip, "--audio", media["speech"], "--paste-back", "--out", out) == 0
    frames, _ = read_video(out)
    assert frames.shape == (32,) + original.shape[1:]
