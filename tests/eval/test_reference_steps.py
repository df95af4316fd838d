"""Known answers for each reference step the EAT protocol reproduces (docs/evaluation.md):
syncnet_python's int16 MFCC and zero-padded offset search, EAT's / PC-AVS / ArcFace crops against
hand-computed template points, EAT's FID frame sampling and pairing, the LMD unit, Emotion-FAN's
video head, and the loaders of the released syncnet_v2 / Emotion-FAN files."""
import math

import numpy as np
import pytest
import torch

from edtalk.audio import SAMPLE_RATE, SAMPLES_PER_FRAME
from edtalk.eval.metrics import align
from edtalk.eval.metrics.fid import sample_indices
from edtalk.eval.metrics.landmarks import MOUTH, linspace_pairs, lmd
from edtalk.eval.metrics.sync import (SyncNetV2Scorer, int16_samples, lse_scores, mfcc_windows, padded_distances,
                                      window_count)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script/save is deprecated, still used


# ----------------------------------------------------------------------------- LSE: audio scale

def _speech_like(seconds=1.2, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * envelope * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.normal(size=n)).astype(np.float32)


def test_mfcc_windows_are_python_speech_features_on_the_int16_samples():
    from python_speech_features import mfcc

    wav = _speech_like()
    samples = np.rint(wav.astype(np.float64) * 32768).astype(np.int16)
    assert np.array_equal(int16_samples(wav), samples)
    reference = mfcc(samples, SAMPLE_RATE).T  # what SyncNetInstance computes from wavfile.read
    count = window_count(30, len(wav))
    assert count == 25  # min(30 frames, ⌊19200/640⌋ = 30) − 5
    windows = mfcc_windows(wav, count)
    assert windows.shape == (25, 1, 13, 20)
    for i in (0, 7, 24):
        np.testing.assert_allclose(windows[i, 0].numpy(), reference[:, 4 * i:4 * i + 20], rtol=1e-6, atol=1e-5)
    # float input in [−1, 1] (the old path) moves only c0, by exactly −2·ln 32768
    as_float = mfcc(samples.astype(np.float64) / 32768, SAMPLE_RATE).T
    np.testing.assert_allclose((as_float - reference)[0], -2 * math.log(32768), atol=1e-6)
    np.testing.assert_allclose((as_float - reference)[1:], 0.0, atol=1e-6)


# ----------------------------------------------------------------------------- LSE: offset search

def _reference_search(video, audio, vshift):
    """syncnet_python's calc_pdist + evaluate, written out with explicit zero vectors."""
    t, d = video.shape
    mean = []
    for j in range(-vshift, vshift + 1):
        dist = []
        for i in range(t):
            a = audio[i + j] if 0 <= i + j < len(audio) else np.zeros(d)
            dist.append(np.linalg.norm(video[i] - a + 1e-6))
        mean.append(np.mean(dist))
    mean = np.array(mean)
    best = int(np.argmin(mean))
    return mean, {"lse_d": mean[best], "lse_c": np.median(mean) - mean[best], "offset": vshift - best}


class PlantedSyncNet(torch.nn.Module):
    """syncnet_v2's interface; the embeddings are chosen: video = the first frame's mean blue value
    (BGR channel 0) × e₁ + e₂, audio = the mean of the first 4 MFCC c0 rows scaled onto the same
    axis by (c0 − c_lo)/(c_hi − c_lo)·255, + e₂ (c_lo, c_hi set by the test)."""

    def __init__(self, c_lo: float, c_hi: float):
        super().__init__()
        self.c_lo, self.c_hi = c_lo, c_hi

    def forward(self, mfcc, video):
        level = (mfcc[:, 0, 0, 0:4].mean(dim=1) - self.c_lo) / (self.c_hi - self.c_lo) * 255
        blue = video[:, 0, 0].mean(dim=(1, 2))
        ones = torch.ones_like(blue)
        return torch.stack([level / 64, ones], 1), torch.stack([blue / 64, ones], 1)


def _planted_clip(levels, delay=0):
    """Crops whose blue level is levels[i] (0 or 255) and audio loud where levels[i−delay] is."""
    t = len(levels)
    crops = np.zeros((t, 224, 224, 3), np.uint8)
    crops[..., 2] = np.asarray(levels, np.uint8)[:, None, None]  # RGB: blue is channel 2
    heard = np.concatenate([np.zeros(delay), levels[:t - delay]]) if delay else np.asarray(levels, float)
    rng = np.random.default_rng(1)
    n = np.arange(t * SAMPLES_PER_FRAME)
    wav = 1e-3 * rng.normal(size=n.size)
    loud = np.repeat(heard > 0, SAMPLES_PER_FRAME)
    wav[loud] += 0.5 * np.sin(2 * np.pi * 440 * n[loud] / SAMPLE_RATE)
    return crops, wav.astype(np.float32)


def test_zero_padded_offset_search_on_a_planted_torchscript_network(tmp_path):
    from edtalk.eval.metrics.syncnet_v2 import load_syncnet_v2
    from edtalk.eval.metrics.sync import mfcc_rows

    rng = np.random.default_rng(4)
    levels = np.repeat(rng.integers(0, 2, 12), 4)[:40] * 255
    crops, wav = _planted_clip(levels, delay=3)  # the audio runs 3 frames late
    c0 = mfcc_rows(wav)[0]
    path = tmp_path / "planted.pt"
    torch.jit.script(PlantedSyncNet(float(np.percentile(c0, 5)), float(np.percentile(c0, 95)))).save(str(path))
    net, description = load_syncnet_v2(path)
    assert "TorchScript" in description
    scorer = SyncNetV2Scorer(net, batch=7)  # batches must not change anything
    video, audio = scorer.embeddings(crops, wav)
    assert len(video) == len(audio) == 40 - 5  # N−5 windows, no padding
    mean, expected = _reference_search(video.double().numpy(), audio.double().numpy(), 15)
    got = lse_scores(video, audio, 15)
    np.testing.assert_allclose(padded_distances(video, audio, 15).mean(0).numpy(), mean, rtol=1e-5)
    assert got["lse_d"] == pytest.approx(expected["lse_d"], rel=1e-5)
    assert got["lse_c"] == pytest.approx(expected["lse_c"], rel=1e-5, abs=1e-6)
    # video window i matches audio window i+3: the reference reports offset = vshift − argmin = −3
    assert got["offset"] == expected["offset"] == -3 and got["windows"] == 35
    synced = scorer.score(*_planted_clip(levels), 15)
    assert synced["offset"] == 0 and synced["lse_d"] < got["lse_d"] + 1e-9


def test_offsets_average_over_every_window_with_zero_audio_outside():
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    audio = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    d = padded_distances(video, audio, 1)  # shifts −1, 0, +1
    eps = 1e-6
    # window 0 at shift −1 meets a zero vector: distance ‖v₀ + ε‖, not left out of the mean
    assert float(d[0, 0]) == pytest.approx(math.hypot(1 + eps, eps), rel=1e-6)
    assert float(d[:, 1].max()) == pytest.approx(math.sqrt(2) * eps, rel=1e-3)
    assert lse_scores(video, audio, 1)["offset"] == 0


# ----------------------------------------------------------------------------- EAT's crop

def _template():
    """A made-up 68-point template in the 163² warp frame (eyes open: lids 12 px apart)."""
    rng = np.random.default_rng(0)
    t = rng.uniform(30, 130, (68, 2))
    t[37:39, 1], t[40:42, 1] = 60.0, 66.0  # upper lids 6 px above the lower ones (gap −12)
    return t


def _similar(points, scale, degrees, shift):
    a = math.radians(degrees)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return points @ rot.T + np.asarray(shift)


def test_eat_crop_recovers_a_hand_made_similarity_and_puts_points_on_the_template():
    template = _template()
    closed = template + 0.5
    templates = align.EatTemplates(template, closed, "test", official=True)
    landmarks = _similar(template, 1.5, 10.0, (20.0, -5.0))  # face 1.5× larger, turned 10°
    matrix = align.eat_crop_matrix(landmarks, template)
    expected = np.eye(3)
    expected[:2, :2] = _similar(np.eye(2), 1.5, 10.0, (0, 0)).T
    expected[:2, 2] = (20.0, -5.0)
    np.testing.assert_allclose(matrix, expected, atol=1e-4)
    # a white dot at the frame's nose tip (landmark 30) lands at template point 30, minus EAT's 1-px trim
    frame = np.zeros((300, 300, 3), np.uint8)
    x, y = np.rint(landmarks[30]).astype(int)
    frame[y - 2:y + 3, x - 2:x + 3] = 255
    crop = align.eat_aligned_crop(frame, landmarks, templates)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    cy, cx = np.argwhere(crop[..., 0] > 128).mean(axis=0)
    expected_xy = template[30] - 1 + (np.array([x, y]) - landmarks[30]) / 1.5 @ np.eye(2)
    assert abs(cx - expected_xy[0]) < 1.0 and abs(cy - expected_xy[1]) < 1.0
    # the closed-eye template when the lids are together
    shut = landmarks.copy()
    shut[37:39, 1] = shut[40:42, 1]
    assert templates.for_landmarks(landmarks) is template and templates.for_landmarks(shut) is closed


def test_eat_crop_truncates_like_its_uint8_cast():
    templates = align.EatTemplates(_template(), _template(), "test", official=True)
    frame = np.full((200, 200, 3), 200, np.uint8)
    frame[..., 1] = 77
    crop = align.eat_aligned_crop(frame, _template(), templates)  # identity similarity: inside the frame
    # 200/255·255 and 77/255·255 in floats can land a hair under the integer: the cast floors
    expected = (np.array([200, 77, 200]) / 255.0 * 255).astype(np.uint8)
    assert np.array_equal(crop[60, 60], expected)


def test_lmd_unit_is_the_crop_pixel():
    """EAT measures LMD on its 128² crops: a face drawn 1.5× larger than the template has all its
    landmark distances divided by 1.5 (the old full-frame path read them 1.5× larger)."""
    templates = align.EatTemplates(_template(), _template(), "test", official=True)
    gt = _similar(_template(), 1.5, 0.0, (40.0, 10.0))
    pred = gt.copy()
    pred[MOUTH[:10], 1] += 3.0  # upper mouth points 3 frame-pixels lower
    frame_lmd = lmd(pred[None], gt[None])
    crop_pred = align.to_crop_coordinates(pred, gt, templates)
    crop_gt = align.to_crop_coordinates(gt, gt, templates)
    np.testing.assert_allclose(crop_gt, _template() - 1, atol=1e-4)
    assert lmd(crop_pred[None], crop_gt[None]) == pytest.approx(frame_lmd / 1.5, rel=1e-5)


def test_stand_in_template_has_eat_mouth_width_and_is_marked():
    t = align.stand_in_eat_templates()
    assert not t.official and "not base_68.npy" in t.source
    assert t.open_eyes[54, 0] - t.open_eyes[48, 0] == pytest.approx(42.0)


def test_official_templates_load_from_npy_files(tmp_path):
    np.save(tmp_path / "base_68.npy", _template())
    np.save(tmp_path / "base_68_close.npy", _template() + 1)
    t = align.load_eat_templates(tmp_path / "base_68.npy")
    assert t.official and np.allclose(t.closed_eyes, _template() + 1)
    np.save(tmp_path / "bad.npy", np.zeros((5, 2)))
    with pytest.raises(align.MetricUnavailable, match="not a 68-point template"):
        align.load_eat_templates(tmp_path / "bad.npy")


# ----------------------------------------------------------------------------- PC-AVS and ArcFace crops

def _face_points(eye_l, eye_r, mouth):
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[60:68] = eye_l, eye_r, mouth
    lm[30], lm[48], lm[54] = (np.add(eye_l, eye_r) / 2 + mouth) / 2, np.add(mouth, (-10, 0)), np.add(mouth, (10, 0))
    return lm


def test_pcavs_crop_sends_the_mean_triangle_to_its_place_and_follows_the_mouth():
    # the PC-AVS triangle itself, ×2 and moved; the mouth drifts 4 px right in frame 2
    tri = align.PCAVS_TRIANGLE * 2 + (30, 40)
    lms = np.stack([_face_points(*tri), _face_points(*tri), _face_points(tri[0], tri[1], tri[2] + (4, 0))])
    mats = align.pcavs_matrices(lms)
    mean = np.stack([lms[:, 36:42].mean(1), lms[:, 42:48].mean(1), lms[:, 60:68].mean(1)], 1).mean(0)
    base = align.similarity(mean, align.PCAVS_TRIANGLE)
    mouth = lambda m, p: m[:2, :2] @ p + m[:2, 2]  # noqa: E731
    np.testing.assert_allclose(mouth(mats[0], tri[2]), (112, 120), atol=1e-9)
    # frame 2: bias = 0.2·(previous bias) + 0.8·(its own), so the mouth lands 0.2 of the way off
    own = align.PCAVS_TRIANGLE[2] - mouth(base, tri[2] + (4, 0))
    prev = align.PCAVS_TRIANGLE[2] - mouth(base, tri[2])
    np.testing.assert_allclose(mats[2][:2, 2], base[:2, 2] + 0.2 * prev + 0.8 * own, atol=1e-9)


def test_arcface_crop_puts_five_points_on_insightfaces_template():
    dst = align.ARCFACE_TEMPLATE
    frame_pts = _similar(dst, 2.0, -5.0, (50.0, 30.0))
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[30], lm[48], lm[54] = frame_pts[0], frame_pts[1], frame_pts[2], frame_pts[3], frame_pts[4]
    np.testing.assert_allclose(align.five_points(lm), frame_pts)
    m = align.similarity(align.five_points(lm), dst)
    np.testing.assert_allclose(frame_pts @ m[:2, :2].T + m[:2, 2], dst, atol=1e-6)
    frame = np.zeros((400, 400, 3), np.uint8)
    x, y = np.rint(frame_pts[2]).astype(int)
    frame[y - 3:y + 4, x - 3:x + 4] = 255
    crop = align.arcface_crop(frame, lm)
    cy, cx = np.argwhere(crop[..., 0] > 128).mean(axis=0)
    assert crop.shape == (112, 112, 3) and abs(cx - dst[2, 0]) < 1.0 and abs(cy - dst[2, 1]) < 1.0


def test_syncnet_track_crop_smooths_boxes_and_starts_at_the_box_top():
    boxes = np.tile([100.0, 80.0, 180.0, 160.0], (20, 1))
    boxes[10] += 30  # one jumpy detection: the median over 13 frames ignores it
    s, x, y = align.syncnet_track_boxes(boxes)
    assert s[10] == 40 and x[10] == 140 and y[10] == 120
    frames = np.zeros((20, 300, 300, 3), np.uint8)
    frames[:, 80:82] = 255  # a line along the box top
    crops = align.syncnet_track_crops(frames, boxes)
    assert crops.shape == (20, 224, 224, 3)
    # the crop spans 2.8·s = 112 px from the box top: the line sits in its first rows
    assert crops[10, :3, 112].min() > 100 and crops[10, 10:, 112].max() == 0


# ----------------------------------------------------------------------------- FID sampling, pairing

def test_fid_takes_five_frames_a_clip_by_floor_linspace():
    assert sample_indices(25).tolist() == [0, 5, 10, 15, 20]
    assert sample_indices(7).tolist() == [0, 1, 2, 4, 5]
    assert sample_indices(3).tolist() == [0, 1, 2]
    assert linspace_pairs(8, 4)[0].tolist() == [0, 2, 4, 6]  # EAT's ⌊i·8/4⌋
    assert linspace_pairs(10, 7)[0].tolist() == [0, 1, 2, 4, 5, 7, 8]


def test_eat_suite_feeds_fid_the_sampled_crop_pairs(monkeypatch):
    from edtalk.eval.metrics import Clip, MetricSettings, MetricSuite
    from edtalk.eval.metrics.fid import FIDMetric

    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x[:, 0, 0, 0].clone())  # the frame index is written into pixel (0, 0)
            return x.flatten(1)[:, :4]

    frames = np.zeros((12, 128, 128, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(12) * 10
    # stand-in crop: the frame itself (tests the sampling, not the crop)
    monkeypatch.setattr("edtalk.eval.metrics.align.eat_crop_video", lambda f, t: f)
    suite = MetricSuite(MetricSettings(protocol="eat", only=("fid",)),
                        networks={"fid": (FIDMetric(Recorder()), "recorder", True)})
    suite.row(Clip("M003#happy#level_1#001", frames, frames[:9]))
    pred, gt = (np.rint(t.numpy() * 255).astype(int) // 10 for t in seen)
    # 9 pairs (⌊linspace⌋ of 12 onto 9), then ⌊linspace(0, 9, 5)⌋ = 0, 1, 3, 5, 7 of them
    pairs_pred = linspace_pairs(12, 9)[0]
    assert pred.tolist() == pairs_pred[[0, 1, 3, 5, 7]].tolist() and gt.tolist() == [0, 1, 3, 5, 7]


# ----------------------------------------------------------------------------- Emotion-FAN, syncnet_v2 files

def test_emotion_fan_video_head_is_eats_formula():
    from edtalk.eval.metrics.emotion import EmotionFAN

    torch.manual_seed(0)
    net = EmotionFAN().eval()
    f = torch.rand(3, 512)
    alpha = torch.tensor([[0.2], [0.5], [0.9]])
    v = (alpha * f).sum(0) / alpha.sum()
    both = torch.cat([f, v.expand(3, -1)], 1)
    beta = torch.sigmoid(both @ net.beta[0].weight.T + net.beta[0].bias)
    expected = net.pred_fc2((alpha * both).sum(0) / (alpha * beta).sum())
    torch.testing.assert_close(net.video_logits(f, alpha), expected)


def test_emotion_fan_checkpoint_loads_and_maps_classes_to_mead_order(tmp_path):
    from edtalk.data.layout import EMOTIONS
    from edtalk.eval.metrics.emotion import FAN_CLASSES, EmotionFAN, FanClassifier, load_emotion_network

    torch.manual_seed(1)
    net = EmotionFAN().eval()
    state = {f"module.{k[len('trunk.'):] if k.startswith('trunk.') else k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 61}, tmp_path / "self_relation-attention_61_84.3655")
    loaded = load_emotion_network(tmp_path / "self_relation-attention_61_84.3655")
    assert isinstance(loaded, FanClassifier)
    chips = [np.random.default_rng(i).integers(0, 256, (224, 224, 3), dtype=np.uint8) for i in range(3)]
    with torch.no_grad():
        x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255
        logits = net.video_logits(*net.frame_features(x))
    probs = loaded.probabilities(chips)
    fan_probs = logits.softmax(-1).numpy()
    for i, emotion in enumerate(EMOTIONS):
        assert probs[i] == pytest.approx(fan_probs[FAN_CLASSES.index(emotion)], rel=1e-5)


def test_syncnet_v2_state_dict_loads_into_its_architecture(tmp_path):
    from edtalk.eval.metrics.syncnet_v2 import SyncNetV2, load_syncnet_v2

    torch.manual_seed(0)
    torch.save(SyncNetV2().state_dict(), tmp_path / "syncnet_v2.model")
    net, description = load_syncnet_v2(tmp_path / "syncnet_v2.model")
    assert description == "syncnet_v2 (syncnet_python weights)"
    names = {k.split(".")[0] for k in net.state_dict()}
    assert names == {"netcnnaud", "netfcaud", "netcnnlip", "netfclip"}
    with torch.no_grad():
        a, v = net(torch.randn(2, 1, 13, 20), torch.rand(2, 3, 5, 224, 224) * 255)
    assert a.shape == v.shape == (2, 1024)
    torch.save({"netcnnaud.0.weight": torch.zeros(1)}, tmp_path / "bad.model")
    with pytest.raises(align.MetricUnavailable, match="does not fit syncnet_v2"):
        load_syncnet_v2(tmp_path / "bad.model")
