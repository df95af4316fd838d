"""SynthTalk: determinism, layout validity, factor independence, audio↔mouth, landmark↔pixel."""

import filecmp
import json
import os

import numpy as np
import pytest
import soundfile as sf

from edtalk.cli import main as edtalk_main
from edtalk.data import layout, synthtalk as st
from edtalk.data import synthtalk_render as R
from edtalk.errors import InputError

TINY = dict(size=32, seed=7, speakers=2, emotions=("neutral", "happy", "angry"), levels=(1, 3), frames="10-14",
            videos=2, seconds=6.0, quiet=True)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "a"
    reports = st.generate(out, kind="both", **TINY)
    return out, reports


def _all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_trees_are_valid_and_shaped_like_mead_and_hdtf(tree):
    out, reports = tree
    mead, hdtf = reports["mead"], reports["hdtf"]
    # neutral only at level 1 (as in MEAD): 2 speakers × (1 + 2 + 2) clips
    assert mead.num_clips == 10
    assert sorted(mead.groups["train"]) == ["M101"] and mead.groups["test"] == ["W102"]
    for name in mead.train + mead.test:
        p = layout.parse_mead_name(name)
        assert p.emotion in ("neutral", "happy", "angry") and (p.emotion != "neutral" or p.level == 1)
        assert 10 <= mead.frames[name] <= 14
    # 6 s = 150 frames → a 125-frame clip and the 25-frame tail, per video
    assert sorted(hdtf.frames.values()) == [25, 25, 125, 125]
    assert hdtf.groups == {"train": ["SYN_Person000_000"], "test": ["SYN_Person001_000"]}
    again = layout.validate_tree(out / "hdtf", "hdtf", check_media=True)
    assert again.num_frames == 300 and again.has_mel and again.has_factors
    name = "SYN_Person000_000#2"
    info = layout.probe_video(layout.clip_path(out / "hdtf", "video", name))
    assert info["frames"] == 25 and info["fps"] == 25 and info["width"] == 32 and info["audio"]
    assert sf.info(str(layout.clip_path(out / "hdtf", "audio", name))).frames == 25 * 640
    assert np.load(layout.clip_path(out / "hdtf", "mel", name)).shape == (25, 80, 16)
    with np.load(layout.clip_path(out / "hdtf", "factors", name)) as fz:
        assert int(fz["start_frame"]) == 125 and fz["pose"].shape == (25, 6)
        assert list(fz["expression_names"]) == list(st.EXPRESSION_NAMES)
    manifest = json.loads((out / "mead" / "synthtalk.json").read_text())
    assert manifest["test_speakers"] == ["W102"] and manifest["factors"]["mouth"] == ["open", "width", "round"]


def test_same_seed_same_bytes_other_seed_differs(tree, tmp_path):
    out, _ = tree
    st.generate(tmp_path / "b", kind="both", **TINY)
    files = _all_files(out)
    assert files == _all_files(tmp_path / "b") and len(files) > 50
    match, mismatch, errors = filecmp.cmpfiles(out, tmp_path / "b", files, shallow=False)
    assert mismatch == [] and errors == []
    st.generate(tmp_path / "c", kind="mead", **dict(TINY, seed=8, validate=False))
    name = "M101#happy#level_3#001"
    a = np.load(layout.clip_path(out / "mead", "landmark", name))
    c = np.load(layout.clip_path(tmp_path / "c" / "mead", "landmark", name))
    assert a.shape[1:] == c.shape[1:] and (a.shape != c.shape or not np.array_equal(a, c))


def test_clip_content_depends_only_on_its_own_key(tree, tmp_path):
    out, _ = tree
    st.generate(tmp_path / "d", kind="mead", **dict(TINY, emotions=("happy",), levels=(3,), validate=False))
    for part in ("landmark", "factors", "audio"):
        a = layout.clip_path(out / "mead", part, "W102#happy#level_3#001")
        b = layout.clip_path(tmp_path / "d" / "mead", part, "W102#happy#level_3#001")
        assert a.read_bytes() == b.read_bytes()


def test_factors_are_independent_across_clips():
    rows = []
    for c in range(800):  # clip-level offsets: many clips so sampling noise stays ≲ 0.04
        e = layout.EMOTIONS[c % 8]
        f = st.sample_factors(np.random.default_rng([3, c]), 20, e, 1 + c % 3)
        rows.append(np.concatenate([f["mouth"], f["pose"], f["expression"]], 1))
    x = np.concatenate(rows)
    corr = np.corrcoef(x.T)
    cross = np.concatenate([corr[:3, 3:].ravel(), corr[3:9, 9:].ravel()])
    assert np.abs(cross).max() < 0.15
    # and every factor actually varies
    assert (x.std(0) > 0.02).all()


def test_factor_ranges_and_emotion_mapping():
    for e in layout.EMOTIONS:
        for lv in (1, 2, 3):
            f = st.sample_factors(np.random.default_rng([5, lv]), 200, e, lv)
            target = np.clip(st.EMOTION_VECTORS[e] * lv / 3.0, st.EXPRESSION_LOW, st.EXPRESSION_HIGH)
            assert np.abs(f["expression"].mean(0) - target).max() < 0.12, (e, lv)
            assert (f["expression"] >= st.EXPRESSION_LOW - 1e-6).all() and (f["expression"] <= 1 + 1e-6).all()
    f = st.sample_factors(np.random.default_rng(0), 500)
    assert (f["mouth"][:, 0] >= 0).all() and (f["mouth"][:, 0] <= 1).all() and f["mouth"][:, 0].max() > 0.5
    assert (f["mouth"][:, 0] < 0.05).mean() > 0.1  # pauses with the mouth closed
    assert (f["pose"] >= st.POSE_LOW - 1e-6).all() and (f["pose"] <= st.POSE_HIGH + 1e-6).all()
    assert f["blink"].max() == 1.0 and (f["blink"] > 0).mean() < 0.2
    with pytest.raises(InputError):
        st.sample_factors(np.random.default_rng(0), 5, "bored", 1)


def test_each_factor_moves_only_its_landmarks():
    ident = st.sample_identity(np.random.default_rng(1))
    base = R.identity_landmarks(ident)
    T = 4
    zero_m, zero_e, no_blink = np.zeros((T, 3)), np.zeros((T, 6)), np.zeros(T)
    ref = R.deform_landmarks(base, zero_m, zero_e, no_blink)
    assert np.allclose(ref, base[None])
    moved_m = R.deform_landmarks(base, np.tile([1.0, 0.5, 0.5], (T, 1)), zero_e, no_blink)
    changed = np.abs(moved_m - ref).max((0, 2)) > 1e-6
    assert set(np.flatnonzero(changed)) <= set(range(4, 13)) | set(range(48, 68))
    moved_e = R.deform_landmarks(base, zero_m, np.tile([1, 1, 1, 1, 1, 1.0], (T, 1)), no_blink)
    changed = np.abs(moved_e - ref).max((0, 2)) > 1e-6
    assert not changed[:17].any()  # expression never moves the jaw
    blink = R.deform_landmarks(base, zero_m, zero_e, np.ones(T))
    eye_h = blink[:, 41, 1] - blink[:, 37, 1]
    assert np.allclose(eye_h, 0, atol=1e-6)
    # pose is a smooth warp of the same points: identity at zero pose, invertible
    pose = np.tile([0.3, -0.2, 0.15, 0.02, -0.03, 1.1], (T, 1))
    q = R.pose_forward(ref, np.tile([0, 0, 0, 0, 0, 1.0], (T, 1)))
    assert np.allclose(q, ref)
    q = R.pose_forward(ref, pose)
    import torch
    cx, cy = R.pose_inverse(torch.tensor(q[..., 0], dtype=torch.float32)[..., None],
                            torch.tensor(q[..., 1], dtype=torch.float32)[..., None], pose)
    assert np.abs(np.stack([cx[..., 0].numpy(), cy[..., 0].numpy()], -1) - ref).max() < 0.05
    # yaw turns the face: the nose tip moves more than the jaw ends
    shift = q[0, :, 0] - ref[0, :, 0]
    assert shift[30] - 0.5 * (shift[0] + shift[16]) > 5.0


def test_landmarks_agree_with_pixels():
    ident = st.sample_identity(np.random.default_rng(2))
    T = 3
    mouth = np.array([[0.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    pose = np.tile([0.0, 0, 0, 0, 0, 1], (T, 1))
    pose[2] = [0.25, 0.1, 0.2, 0.03, -0.02, 1.1]
    blink = np.array([0.0, 0.0, 1.0])
    frames, lm = R.render_frames(ident, mouth, pose, np.zeros((T, 6)), blink, size=128)
    assert frames.shape == (T, 128, 128, 3) and frames.dtype == np.uint8 and lm.shape == (T, 68, 2)
    lum = frames.astype(float).mean(-1)

    def at(t, pts):
        x, y = np.round(pts).astype(int)
        return lum[t, y - 1:y + 2, x - 1:x + 2].mean()

    for t in (1, 2):  # open mouth: the inner-lip centre (below the teeth) is dark
        c = lm[t, [65, 66, 67]].mean(0) * 0.3 + lm[t, [61, 62, 63]].mean(0) * 0.7
        c_low = lm[t, 60:68].mean(0) * 0.4 + lm[t, [65, 66, 67]].mean(0) * 0.6
        assert at(t, c_low) < at(0, lm[0, 60:68].mean(0)) - 20, t
        assert np.isfinite(c).all()
    # open eyes: the iris centre is darker than the skin below the eye; closed eyes: skin-like
    iris = lm[1, 36:42].mean(0)
    below = lm[1, 41] + np.array([0, 6.0])
    assert at(1, iris) < at(1, below) - 30
    closed = lm[2, 36:42].mean(0)
    assert abs(at(2, closed + np.array([0, 2.0])) - at(2, lm[2, 41] + np.array([0, 6.0]))) < 40
    # face boxes contain the landmarks (except the forehead margin above)
    box = st.face_boxes(lm, 128)
    assert (box[:, 0] <= lm[..., 0].min(1)).all() and (box[:, 2] >= lm[..., 0].max(1)).all()
    assert (box[:, 1] < lm[:, 17:27, 1].min(1)).all()


def test_audio_envelope_follows_mouth_opening(tree):
    out, _ = tree
    root = out / "hdtf"
    opens, rms = [], []
    for name in layout.list_clips(root):
        wav, sr = sf.read(str(layout.clip_path(root, "audio", name)), dtype="float32")
        assert sr == 16000
        with np.load(layout.clip_path(root, "factors", name)) as fz:
            mouth = fz["mouth"]
        frames = wav.reshape(len(mouth), 640)
        rms.append(np.sqrt((frames ** 2).mean(1)))
        opens.append(mouth[:, 0])
    opens, rms = np.concatenate(opens), np.concatenate(rms)
    assert np.corrcoef(opens, rms)[0, 1] > 0.9
    assert rms[opens < 0.02].mean() < 0.2 * rms[opens > 0.5].mean()


def test_formants_follow_mouth_shape():
    ident = st.sample_identity(np.random.default_rng(4))
    T = 25

    def centroid(mouth):
        wav = R.synthesize_audio(np.tile(mouth, (T, 1)), ident, np.random.default_rng(0))
        spec = np.abs(np.fft.rfft(wav[3200:12800]))
        f = np.fft.rfftfreq(9600, 1 / 16000)
        band = f < 4000
        return (spec[band] * f[band]).sum() / spec[band].sum(), np.sqrt((wav ** 2).mean())

    c_open, r_open = centroid([1.0, 0.0, 0.0])
    c_half, r_half = centroid([0.4, 0.0, 0.0])
    c_wide, _ = centroid([0.6, 1.0, 0.0])
    c_round, _ = centroid([0.6, -1.0, 1.0])
    assert r_open > 2.0 * r_half and c_wide > c_round + 150


def test_cli_writes_trees_and_reports(tmp_path, capsys):
    rc = edtalk_main(["synthtalk", "--out", str(tmp_path), "--size", "24", "--speakers", "2", "--emotions", "happy,sad",
                  "--levels", "2", "--frames", "8", "--videos", "1", "--seconds", "2", "--quiet", "--no-mel"])
    assert rc == 0
    msg = capsys.readouterr().out
    assert "SynthTalk: wrote MEAD" in msg and "HDTF" in msg and "layout validated" in msg and "frames/s" in msg
    rep = layout.validate_tree(tmp_path / "mead", "mead")
    assert rep.num_clips == 4 and not rep.has_mel
    # existing tree: refuse, then replace with --overwrite
    assert edtalk_main(["synthtalk", "--out", str(tmp_path), "--kind", "hdtf", "--quiet", "--size", "24",
                        "--seconds", "1"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert edtalk_main(["synthtalk", "--out", str(tmp_path), "--kind", "hdtf", "--quiet", "--size", "24", "--seconds", "1",
                    "--videos", "1", "--overwrite", "--no-mel"]) == 0
    assert layout.validate_tree(tmp_path / "hdtf", "hdtf").num_frames == 25
    assert edtalk_main(["synthtalk", "--out", str(tmp_path / "x"), "--emotions", "bored", "--quiet"]) == 2
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "mead").mkdir()
    (tmp_path / "foreign" / "mead" / "keep.txt").write_text("user data")
    assert edtalk_main(["synthtalk", "--out", str(tmp_path / "foreign"), "--kind", "mead", "--overwrite", "--quiet"]) == 2
    assert (tmp_path / "foreign" / "mead" / "keep.txt").exists()


def test_pose_drift_scales_the_motion_within_a_clip():
    def within(drift):
        return np.mean([st.sample_pose(np.random.default_rng([8, c]), 32, drift).std(0) for c in range(300)], 0)

    ratio = within(2.0) / within(1.0)
    assert ((ratio > 1.7) & (ratio <= 2.0 + 1e-6)).all(), ratio  # ×2, a little less where the range clips
    same = st.sample_factors(np.random.default_rng(4), 20)["pose"]
    assert np.array_equal(same, st.sample_factors(np.random.default_rng(4), 20, pose_drift=1.0)["pose"])


def _pitch(wav: np.ndarray, lo: float = 60.0, hi: float = 400.0) -> float:
    """Median autocorrelation pitch (Hz) over 40 ms windows of the voiced half of `wav`."""
    win = 640
    frames = wav[: len(wav) // win * win].reshape(-1, win)
    loud = frames[np.argsort((frames ** 2).mean(1))[len(frames) // 2:]]
    lags = np.arange(int(16000 / hi), int(16000 / lo))
    found = []
    for f in loud:
        f = f - f.mean()
        ac = np.array([np.dot(f[:-lag], f[lag:]) for lag in lags])
        found.append(16000 / lags[np.argmax(ac)])
    return float(np.median(found))


def test_emotional_voice_moves_pitch_but_not_loudness():
    from edtalk.data.synthtalk_render import VOICE_EMOTIONS, sample_identity, synthesize_audio

    ident = sample_identity(np.random.default_rng(5))
    mouth = st.sample_mouth(np.random.default_rng(6), 100).astype(np.float32)

    def voice(*args):
        return synthesize_audio(mouth, ident, np.random.default_rng(7), *args)

    neutral = voice()
    assert np.array_equal(neutral, voice("neutral", 1.0))  # same draws, same samples
    assert np.array_equal(neutral, voice("sad", 0.0))
    base = _pitch(neutral)
    for emotion in ("happy", "sad", "surprised"):
        ratio = _pitch(voice(emotion, 1.0)) / base
        assert abs(ratio - VOICE_EMOTIONS[emotion][0]) < 0.05, (emotion, ratio)
    rms = lambda w: np.sqrt((w.reshape(100, 640) ** 2).mean(1))  # noqa: E731
    assert np.corrcoef(rms(voice("angry", 1.0)), rms(neutral))[0, 1] > 0.95


def test_tree_option_colours_only_emotional_clips(tmp_path):
    import soundfile as sf

    kw = dict(speakers=1, emotions=("neutral", "happy"), levels=(1, 3), frames=12, size=32, mel=False,
              validate=False, test_fraction=0.0)
    st.generate_mead(tmp_path / "plain", **kw)
    st.generate_mead(tmp_path / "emo", emotional_voice=True, **kw)
    assert json.loads((tmp_path / "emo" / "synthtalk.json").read_text())["emotional_voice"] is True
    for name, same in (("M101#neutral#level_1#001", True), ("M101#happy#level_3#001", False)):
        a, _ = sf.read(str(tmp_path / "plain" / "audio" / f"{name}.wav"))
        b, _ = sf.read(str(tmp_path / "emo" / "audio" / f"{name}.wav"))
        assert np.array_equal(a, b) == same, name
