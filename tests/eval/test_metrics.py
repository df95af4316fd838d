"""Metrics with known answers: PSNR/SSIM, LMD, FID, LSE offsets, skip reasons, reference steps."""
import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from edtalk.eval.metrics import Clip, MetricSettings, MetricSuite
from edtalk.eval.metrics.fid import FeatureStats, FIDMetric, load_inception
from edtalk.eval.metrics.landmarks import MOUTH, linspace_pairs, lmd, lmd_frames
from edtalk.eval.metrics.pixel import psnr_frames, ssim_frames
from edtalk.eval.metrics.registry import MetricUnavailable
from edtalk.eval.metrics.sync import lse_scores, padded_distances


def _frames(seed, t=3, h=32, w=40):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- PSNR / SSIM

def test_identical_frames_give_infinite_psnr_and_unit_ssim():
    x = _frames(0)
    assert np.array_equal(psnr_frames(x, x), np.full(3, np.inf))  # no silent cap
    np.testing.assert_allclose(ssim_frames(x, x), 1.0, atol=1e-12)


def _reference_ssim(a, b):
    """Independent SSIM: 7×7 uniform window, sample covariance, K=(0.01, 0.03), L=255, border cropped."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    values = []
    for c in range(3):
        x, y = a[..., c], b[..., c]
        f = lambda z: uniform_filter(z, size=7)  # noqa: E731
        n = 49 / 48
        mx, my = f(x), f(y)
        vx, vy, cxy = n * (f(x * x) - mx * mx), n * (f(y * y) - my * my), n * (f(x * y) - mx * my)
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        values.append(s[3:-3, 3:-3].mean())
    return np.mean(values)


def test_psnr_and_ssim_match_independent_formulas_on_random_pairs():
    gt = _frames(1)
    pred = np.clip(gt.astype(int) + np.random.default_rng(2).integers(-40, 41, gt.shape), 0, 255).astype(np.uint8)
    mse = ((pred.astype(np.float64) - gt) ** 2).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(psnr_frames(pred, gt), 10 * np.log10(255 ** 2 / mse), rtol=1e-12)
    np.testing.assert_allclose(ssim_frames(pred, gt), [_reference_ssim(p, g) for p, g in zip(pred, gt)], rtol=1e-9)


# ----------------------------------------------------------------------------- LMD

def test_lmd_ignores_translation_and_equals_the_analytic_value():
    rng = np.random.default_rng(3)
    gt = rng.uniform(0, 256, (5, 68, 2))
    d = np.array([3.0, 4.0])  # |d| = 5: one mouth point moves, then the whole face shifts
    pred = gt.copy()
    pred[:, 60] += d
    pred += np.array([17.0, -9.0])
    # Centred by its own mean, point 60 is off by d·(1−1/n), every other point by d/n.
    for points, n in ((MOUTH, 20), (np.arange(68), 68)):
        expected = 5.0 * ((1 - 1 / n) + (n - 1) / n) / n
        assert lmd(pred, gt, points) == pytest.approx(expected, rel=1e-12)


def test_lmd_pairs_by_linspace_and_skips_frames_without_faces():
    gt = np.random.default_rng(4).uniform(0, 256, (4, 68, 2))
    pred = np.repeat(gt, 2, axis=0)  # twice as long, same motion
    assert linspace_pairs(8, 4)[0].tolist() == [0, 2, 4, 6]  # EAT: ⌊linspace(0, 8, 4, endpoint=False)⌋
    pred[6] = np.nan  # no face detected in the generated frame paired with the last GT frame
    per_frame = lmd_frames(pred, gt)
    assert np.isnan(per_frame[3]) and np.allclose(per_frame[:3], 0.0)
    assert lmd(pred, gt) == 0.0
    assert lmd(np.full_like(gt, np.nan), gt) is None


# ----------------------------------------------------------------------------- FID

class TinyInception(torch.nn.Module):
    """Inception-like stand-in: random convs, ReLU, global average pool → 8-d features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, 2), torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 3, 2),
                                       torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return [100 * self.net(x)]  # a list of blocks, like pytorch-fid's InceptionV3; O(1) FIDs


def test_feature_stats_match_numpy_mean_and_covariance():
    x = np.random.default_rng(5).normal(size=(50, 4))
    stats = FeatureStats()
    stats.update(x[:20])
    stats.update(x[20:])
    mu, cov = stats.mean_cov()
    np.testing.assert_allclose(mu, x.mean(0), atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), atol=1e-12)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise():
    rng = np.random.default_rng(6)
    # smooth images (4×4 colour fields upsampled) so that pixel noise changes their features
    frames = np.kron(rng.integers(0, 256, (40, 4, 4, 3)), np.ones((1, 6, 6, 1))).astype(np.uint8)
    values = []
    for sigma in (0, 20, 60, 120):
        noisy = np.clip(frames + rng.normal(0, sigma, frames.shape), 0, 255).astype(np.uint8) if sigma else frames
        fid = FIDMetric(TinyInception(), batch=16)
        fid.update(noisy[:25], frames[:25])
        fid.update(noisy[25:], frames[25:])
        values.append(fid.result())
    assert abs(values[0]) < 1e-8
    assert 1e-3 < values[1] < values[2] < values[3]


def test_fid_weights_that_are_not_inception_give_one_reason(tmp_path):
    path = tmp_path / "alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(MetricUnavailable, match="not an Inception-v3 state dict"):
        load_inception(path)


# ----------------------------------------------------------------------------- LSE

def test_lse_finds_a_planted_offset_and_prefers_synced_embeddings():
    rng = np.random.default_rng(7)
    video = rng.normal(size=(60, 16))
    synced = video + rng.normal(0, 0.05, video.shape)
    s = lse_scores(video, synced, max_offset=15)
    assert s["offset"] == 0 and s["windows"] == 60
    # audio that lags the video by 4 frames: video window i matches audio window i+4; the
    # reference reports that as offset −4 (vshift − argmin)
    lagged = np.concatenate([rng.normal(size=(4, 16)), synced[:-4]])
    assert lse_scores(video, lagged)["offset"] == -4
    unrelated = lse_scores(video, rng.normal(size=(60, 16)))
    assert s["lse_c"] > unrelated["lse_c"] + 1.0 and s["lse_d"] < unrelated["lse_d"] - 1.0
    mean = padded_distances(video, synced, 15).mean(0).numpy()
    assert s["lse_c"] == pytest.approx(np.median(mean) - mean.min(), rel=1e-5)


# ----------------------------------------------------------------------------- skip reasons

def test_missing_weights_give_a_skip_reason_per_metric(tmp_path, monkeypatch):
    for env in ("EDTALK_LPIPS_WEIGHTS", "EDTALK_FID_WEIGHTS", "EDTALK_SYNCNET", "EDTALK_SYNCNET_V2",
                "EDTALK_EMOTION_CLASSIFIER", "EDTALK_ARCFACE"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("EDTALK_FID_WEIGHTS", str(tmp_path / "missing.pth"))
    suite = MetricSuite(MetricSettings(only=("psnr", "lpips", "fid", "lse_c", "lse_d", "acc_emo")))
    st = suite.status
    assert st["psnr"].ok and not st["lpips"].ok and not st["fid"].ok
    assert "pass --lpips-weights or set EDTALK_LPIPS_WEIGHTS" in st["lpips"].reason
    assert st["fid"].reason == f"--fid-weights/EDTALK_FID_WEIGHTS points to a missing file: {tmp_path / 'missing.pth'}"
    assert "--syncnet-v2" in st["lse_d"].reason and "--emotion-classifier" in st["acc_emo"].reason
    assert st["csim"].reason == "not requested (--metrics)"
    assert "\n" not in "".join(s.reason for s in st.values())


def test_frechet_distance_agrees_with_pytorch_fid():
    import warnings

    from pytorch_fid.fid_score import calculate_frechet_distance

    from edtalk.eval.metrics.fid import frechet_distance

    rng = np.random.default_rng(8)
    a, b = FeatureStats(), FeatureStats()
    a.update(rng.normal(size=(200, 6)))
    b.update(rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = calculate_frechet_distance(*a.mean_cov(), *b.mean_cov())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tf_fid_inception_weights_load_into_pytorch_fids_architecture():
    from unittest import mock

    import torchvision
    from pytorch_fid import inception as fid_inception

    from edtalk.eval.metrics.fid import inception_from_state

    # pytorch-fid's FID architecture with random weights, built without its download
    with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(torchvision.models.Inception3, "load_state_dict", lambda *a, **k: None):
        tf_state = fid_inception.fid_inception_v3().state_dict()
    net, kind = inception_from_state(tf_state)
    assert kind == "tf" and torch.equal(net.blocks[0][0].conv.weight, tf_state["Conv2d_1a_3x3.conv.weight"])
    assert torch.equal(net.blocks[3][1].branch3x3_1.conv.weight, tf_state["Mixed_7b.branch3x3_1.conv.weight"])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torchvision_inception_is_fed_as_eat_feeds_it():
    """torchvision weights → EAT's network: BGR, bilinear 299², ×2−1, transform_input, Mixed_7c pool."""
    import torchvision

    from edtalk.eval.metrics.fid import EatInception, inception_from_state

    torch.manual_seed(0)
    reference = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=True,
                                                init_weights=False).eval()
    net, kind = inception_from_state(reference.state_dict())
    assert kind == "torchvision" and isinstance(net, EatInception) and net.net.transform_input
    pooled = {}
    reference.Mixed_7c.register_forward_hook(lambda m, i, o: pooled.update(x=o.mean(dim=(2, 3))))
    frames = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        resized = torch.nn.functional.interpolate(frames[:, [2, 1, 0]], size=(299, 299), mode="bilinear",
                                                  align_corners=False)
        reference(resized * 2 - 1)
        torch.testing.assert_close(net.eval()(frames), pooled["x"], rtol=1e-4, atol=1e-5)


def test_weight_files_are_recognised_by_their_sha256(tmp_path, monkeypatch):
    """A torchvision Inception file whose bytes are not inception_v3_google-0cc3c7bd.pth is marked."""
    import torchvision

    from edtalk.eval.metrics import reference
    from edtalk.eval.metrics.registry import file_sha256

    path = tmp_path / "inception.pth"
    torch.save(torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    suite = MetricSuite(MetricSettings(paths={"fid": str(path)}, only=("fid",), protocol="eat"))
    st = suite.status["fid"]
    assert st.ok and not st.comparable and st.weights == {str(path): file_sha256(path)}
    assert [s.name for s in st.steps if not s.match] == ["weights", "crop"]  # stand-in template, unknown file
    monkeypatch.setattr("edtalk.eval.metrics.fid.TORCHVISION_SHA256_PREFIX", st.weights[str(path)][:8])
    suite = MetricSuite(MetricSettings(paths={"fid": str(path)}, only=("fid",), protocol="eat"))
    assert [s.name for s in suite.status["fid"].steps if not s.match] == ["crop"]
    assert reference.REFERENCE_FILES["fid"].startswith("yuangan/evaluation_eat")


def test_ssim_alone_is_computed():
    frames = _frames(9)
    row = MetricSuite(MetricSettings(only=("ssim",))).row(Clip("x", frames, frames))
    assert row["ssim"] == pytest.approx(1.0) and "psnr" not in row
