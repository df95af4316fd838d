"""Metric networks from local files: LPIPS trunk, emotion classifier, ArcFace (random weights)."""
import numpy as np
import pytest
import torch
import torchvision

from edtalk.data.layout import EMOTIONS
from edtalk.eval.metrics import Clip, MetricSettings, MetricSuite
from edtalk.eval.metrics.pixel import LPIPSMetric, to_tensor
from edtalk.eval.metrics.registry import MetricUnavailable

# torch.jit.script is deprecated in torch 2.14 but still how most users export their networks
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _frames(seed, t=2, size=64):
    return np.random.default_rng(seed).integers(0, 256, (t, size, size, 3), dtype=np.uint8)


def test_lpips_loads_a_local_alexnet_trunk_and_matches_the_lpips_package(tmp_path, monkeypatch):
    import lpips

    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet()
    path = tmp_path / "alexnet_features.pth"
    torch.save({f"features.{k}": v for k, v in alexnet.features.state_dict().items()}, path)
    metric = LPIPSMetric(path)
    a, b = _frames(0), _frames(1)
    assert np.allclose(metric.frames(a, a), 0.0, atol=1e-7)
    # the package's own loading path, with torchvision handing it the same trunk
    monkeypatch.setattr(torchvision.models, "alexnet", lambda *args, **kwargs: alexnet)
    reference = lpips.LPIPS(net="alex", verbose=False).eval()
    with torch.no_grad():
        expected = reference(to_tensor(a, -1.0), to_tensor(b, -1.0)).flatten().numpy()
    np.testing.assert_allclose(metric.frames(a, b), expected, rtol=1e-5)


def test_lpips_with_a_wrong_file_is_one_reason(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"features.0.weight": torch.zeros(2)}, path)
    with pytest.raises(MetricUnavailable, match="is not a torchvision AlexNet state dict"):
        LPIPSMetric(path)


class AlwaysHappy(torch.nn.Module):
    def forward(self, x):
        logits = torch.zeros(x.shape[0], 8)
        logits[:, 4] = 5.0 + x.mean()  # EMOTIONS[4] == "happy"
        return logits


class MeanColourEmbedding(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)) + 2.0


def _uniform(colour, t=3, size=64):
    return np.tile(np.asarray(colour, np.uint8), (t, size, size, 1))


def _stub_tracks(clip, t=3):
    from edtalk.eval.metrics.clip import FaceTrack

    from edtalk.eval.metrics.align import ARCFACE_TEMPLATE

    boxes = np.tile([8.0, 8.0, 56.0, 56.0], (t, 1))
    # ArcFace's 5 points at half size: the 112² norm_crop stays inside the 64² frame
    lm = np.zeros((68, 2))
    five = ARCFACE_TEMPLATE * 0.5 + 2
    lm[36:42], lm[42:48], lm[30], lm[48], lm[54] = five
    clip.set_track("pred", FaceTrack(np.repeat(lm[None], t, 0), boxes))
    clip.set_track("source", FaceTrack(lm[None], boxes[:1]))
    return clip


def test_user_emotion_and_arcface_networks_drive_acc_emo_and_csim(tmp_path):
    assert EMOTIONS[4] == "happy"
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(AlwaysHappy(), (torch.rand(2, 3, 224, 224),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "emotion.pt2"))
    torch.jit.script(MeanColourEmbedding()).save(str(tmp_path / "arcface.pt"))
    settings = MetricSettings(paths={"emotion": str(tmp_path / "emotion.pt2"), "arcface": str(tmp_path / "arcface.pt")},
                              only=("acc_emo", "csim"))
    suite = MetricSuite(settings)
    assert suite.status["acc_emo"].ok and suite.status["csim"].ok
    # neither file can be EAT's Emotion-FAN or a verifiable ArcFace: both values carry a dagger
    assert not suite.status["acc_emo"].comparable and not suite.status["csim"].comparable
    source, other = (51, 102, 204), (204, 102, 51)
    gt = _uniform(source)
    same = suite.row(_stub_tracks(Clip("M003#happy#level_1#001", gt, gt, emotion="happy")))
    moved = suite.row(_stub_tracks(Clip("M003#sad#level_1#001", _uniform(other), gt, emotion="sad")))
    assert (same["emo_pred"], same["acc_emo"], moved["emo_pred"], moved["acc_emo"]) == ("happy", 1.0, "happy", 0.0)
    # uniform crops: the embedding is 2·colour/255 − 1 + 2 per channel, so CSIM is a plain cosine
    a, b = (2 * np.array(source) / 255 + 1), (2 * np.array(other) / 255 + 1)
    assert same["csim"] == pytest.approx(1.0, abs=1e-6) and same["csim_frames"] == 3
    assert moved["csim"] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-6)


def test_emotion_classifier_with_the_wrong_class_count_becomes_a_skip_reason(tmp_path):
    class Seven(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 7)

    torch.jit.script(Seven()).save(str(tmp_path / "seven.pt"))
    suite = MetricSuite(MetricSettings(paths={"emotion": str(tmp_path / "seven.pt")}, only=("psnr", "acc_emo")))
    frames = _frames(3)
    row = suite.row(Clip("M003#happy#level_1#001", frames, frames, emotion="happy"))
    # the run goes on: PSNR still computed, Acc_emo becomes a skip with the reason
    assert row["psnr"] == float("inf") and "acc_emo" not in row and suite.emotion is None
    assert suite.status["acc_emo"].reason.startswith("the emotion classifier gives 7 classes, expected 8")
