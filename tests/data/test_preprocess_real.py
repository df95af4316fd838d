"""Raw MEAD/HDTF layouts → training trees, on raw videos made from a real photo moving at 30 fps."""

import json

import numpy as np
import pytest
import skimage.data
from PIL import Image
from scipy.signal import resample_poly

from edtalk.cli import main as edtalk_main
from edtalk.data import layout, preprocess_real as pr
from edtalk.data.synthtalk import sample_identity, sample_mouth, synthesize_audio
from edtalk.video import write_video

RAW_FPS = 30
CANVAS = (200, 220)  # H, W
# The astronaut's face (dlib box (179, 83)–(266, 170) in the photo) inside the pasted region.
REGION = (slice(50, 200), slice(150, 295))
FACE_CENTRE = np.array([(179 + 266) / 2 - 150, (83 + 170) / 2 - 50])


def _motion(t):
    """Scale and top-left of the pasted region at time t (s): a non-uniform path."""
    s = 1.0 + 0.15 * np.sin(2 * np.pi * t / 1.1)
    return s, 30 + 20 * np.sin(2 * np.pi * t / 1.3), 15 + 8 * np.cos(2 * np.pi * t / 0.9)


def _frames(n, face=True, fps=RAW_FPS):
    region = skimage.data.astronaut()[REGION]
    frames = np.full((n,) + CANVAS + (3,), 90, np.uint8)
    if face:
        for i in range(n):
            s, x, y = _motion(i / fps)
            h, w = int(round(region.shape[0] * s)), int(round(region.shape[1] * s))
            img = np.asarray(Image.fromarray(region).resize((w, h), Image.BICUBIC))
            frames[i, int(y):int(y) + h, int(x):int(x) + w] = img
    return frames


def _speech(seconds, seed):
    """Syllabic synthetic speech at 16 kHz (frame exact at 25 fps) and the same at 48 kHz."""
    rng = np.random.default_rng(seed)
    frames = int(round(seconds * layout.FPS))
    wav16 = synthesize_audio(sample_mouth(rng, frames), sample_identity(rng), rng)
    return wav16, resample_poly(wav16, 3, 1).astype(np.float32)


def _raw_clip(path, seconds, seed, face=True, fps=RAW_FPS):
    path.parent.mkdir(parents=True, exist_ok=True)
    wav16, wav48 = _speech(seconds, seed)
    write_video(path, _frames(int(round(seconds * fps)), face, fps), fps=fps, audio=wav48, sample_rate=48000)
    return wav16


def _face_centres(n_out):
    """Where the face centre is in the raw frame shown at 25 fps output frame j (nearest earlier)."""
    idx = np.floor(np.arange(n_out) * RAW_FPS / layout.FPS + 1e-6) / RAW_FPS
    s, x, y = _motion(idx)
    return np.stack([x + FACE_CENTRE[0] * s, y + FACE_CENTRE[1] * s], 1)


@pytest.fixture(scope="module")
def mead(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw_mead")
    _raw_clip(raw / "M005/video/front/neutral/level_1/001.mp4", 1.2, 1)   # official train speaker
    _raw_clip(raw / "M003/video/front/happy/level_2/003.mp4", 0.6, 2)     # official test speaker
    _raw_clip(raw / "M007/video/front/sad/level_3/002.mp4", 0.4, 3, face=False)
    silent = raw / "M009/video/front/angry/level_1/001.mp4"
    silent.parent.mkdir(parents=True)
    write_video(silent, _frames(6), fps=RAW_FPS)  # no audio track
    (raw / "M007/video/front/bored/level_1").mkdir(parents=True)
    (raw / "M007/video/front/bored/level_1/001.mp4").write_bytes(b"")
    out = raw.parent / (raw.name + "_out")
    summary = pr.prepare("mead", raw, out, workers=2, size=64, progress=False)
    return raw, out, summary


def test_mead_tree_is_valid_with_25fps_clips_and_the_official_split(mead):
    raw, out, summary = mead
    report = layout.validate_tree(out, "mead", check_media=True, require_mel=True)
    assert report.train == ["M005#neutral#level_1#001"] and report.test == ["M003#happy#level_2#003"]
    # 36 frames at 30 fps = 1.2 s = 30 frames at 25 fps; 18 → 15 for the 0.6 s clip.
    assert report.frames == {"M005#neutral#level_1#001": 30, "M003#happy#level_2#003": 15}
    assert sorted(summary.prepared) == ["M003#happy#level_2#003", "M005#neutral#level_1#001"]
    assert set(summary.failed) == {"M007#sad#level_3#002", "M009#angry#level_1#001",
                                   str(raw / "M007/video/front/bored/level_1/001.mp4")}
    assert "no face" in summary.failed["M007#sad#level_3#002"]
    assert "has no audio track" in summary.failed["M009#angry#level_1#001"]
    assert "bored" in summary.failed[str(raw / "M007/video/front/bored/level_1/001.mp4")]
    assert "failed M007#sad#level_3#002: no face" in str(summary)
    assert np.load(layout.clip_path(out, "bbox", "M003#happy#level_2#003")).max() <= 63


def test_landmarks_follow_the_face_at_the_resampled_times(mead):
    _, out, _ = mead
    lm = np.load(layout.clip_path(out, "landmark", "M005#neutral#level_1#001"))
    assert lm.shape == (30, 68, 2) and lm.dtype == np.float32
    eyes = lm[:, 36:48].mean(1)
    truth = _face_centres(30)

    def fit_error(reference):
        design = np.c_[reference, np.ones(len(reference))]
        coef = np.linalg.lstsq(design, eyes, rcond=None)[0]
        return np.sqrt(((design @ coef - eyes) ** 2).sum(1).mean())

    assert fit_error(truth) < 0.6  # px at 64²: one fixed box, the face moving inside it
    # Keeping the 30 fps frames (no resampling) or resampling with a lag fits far worse.
    idx = np.arange(30)
    s, x, y = _motion(idx / RAW_FPS)
    assert fit_error(np.stack([x + FACE_CENTRE[0] * s, y + FACE_CENTRE[1] * s], 1)) > 4 * fit_error(truth)


def test_rerun_skips_complete_sources_and_redoes_incomplete_ones(mead):
    raw, out, _ = mead
    video = layout.clip_path(out, "video", "M005#neutral#level_1#001")
    stamp = video.stat().st_mtime_ns
    again = pr.prepare("mead", raw, out, workers=1, size=64, progress=False)
    assert again.prepared == [] and sorted(again.skipped) == ["M003#happy#level_2#003", "M005#neutral#level_1#001"]
    assert "M007#sad#level_3#002" in again.failed
    assert video.stat().st_mtime_ns == stamp
    layout.clip_path(out, "landmark", "M003#happy#level_2#003").unlink()
    third = pr.prepare("mead", raw, out, workers=1, size=64, progress=False)
    assert third.prepared == ["M003#happy#level_2#003"] and third.skipped == ["M005#neutral#level_1#001"]
    layout.validate_tree(out, "mead", check_media=False)
    assert json.loads((out / "prepare_report.json").read_text())["clips"] == 2


def test_hdtf_video_is_cut_frame_exactly_into_5s_clips(tmp_path, capsys):
    video = sorted({layout.group_of(n) for n in pr.official_split()["test"] if layout.name_kind(n) == "hdtf"})[0]
    wav16 = _raw_clip(tmp_path / "raw" / f"{video}.mp4", 5.2, 4, fps=25)
    out = tmp_path / "out"
    rc = edtalk_main(["prepare-data", "--dataset", "hdtf", "--raw", str(tmp_path / "raw"), "--out", str(out), "--workers", "1",
                  "--size", "48", "--quiet", "--lmdb"])
    assert rc == 0, capsys.readouterr()
    report = layout.validate_tree(out, "hdtf", check_media=True, require_mel=True)
    assert report.test == [f"{video}#1", f"{video}#2"] and report.train == []
    assert report.frames == {f"{video}#1": 125, f"{video}#2": 5}  # 130 frames: 5 s and a kept tail
    # Each clip's audio is its frames' samples of the video's audio (AAC round trip: compare by lag).
    import soundfile as sf

    clips = [sf.read(str(layout.clip_path(out, "audio", f"{video}#{k}")))[0] for k in (1, 2)]
    assert [len(c) for c in clips] == [125 * 640, 5 * 640]
    padded = np.pad(wav16, 1000)
    for start in (0, 40000, 76800):  # the last 0.2 s of clip 1 ends exactly at sample 80,000
        seg = clips[0][start:start + 3200]
        corr = [np.dot(seg, padded[1000 + start + lag:1000 + start + lag + 3200]) for lag in range(-1000, 1001)]
        assert abs(int(np.argmax(corr)) - 1000) <= 16
    from edtalk.data.store import FrameStore

    frames = FrameStore(out / "frames.lmdb")
    assert sorted(frames.names) == [f"{video}#1", f"{video}#2"]
    assert frames.frame(f"{video}#1", 124).shape == (48, 48, 3)


def test_assign_split_rules():
    official = pr.official_split()
    assert len(official["train"]) == 34100 and len(official["test"]) == 4287
    assert pr.assign_split("W009#angry#level_3#010", "mead") == "test"
    assert pr.assign_split("M005#angry#level_3#999", "mead") == "train"
    assert pr.assign_split("M999#angry#level_1#001", "mead") == "train"
    hdtf_test = next(n for n in official["test"] if layout.name_kind(n) == "hdtf")
    assert pr.assign_split(layout.group_of(hdtf_test) + "#99", "hdtf") == "test"
    unknown = [pr.assign_split(f"NEW_Video{k}_000#1", "hdtf") for k in range(200)]
    assert 20 <= unknown.count("test") <= 60  # ~20 %, by video: stable per name
    assert unknown == [pr.assign_split(f"NEW_Video{k}_000#2", "hdtf") for k in range(200)]


def test_cli_usage_errors_are_one_line(tmp_path, capsys):
    assert edtalk_main(["prepare-data", "--dataset", "mead", "--raw", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edtalk: error: raw folder does not exist: {tmp_path / 'none'}"]
    (tmp_path / "empty").mkdir()
    assert edtalk_main(["prepare-data", "--dataset", "hdtf", "--raw", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no raw HDTF videos" in capsys.readouterr().err
