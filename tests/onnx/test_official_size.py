"""The ONNX graphs at the official architecture (256², official channels) on random official-like
weights: renders from the exported graphs within 40 dB PSNR of torch's, for the full model with a
constant and a per-frame expression, and Audio2Lip. Minutes on a CPU: marked slow."""
import pytest
import torch
from onnx_helpers import MIN_PSNR_DB, psnr

from edtalk.config import Audio2LipConfig, EDTalkConfig
from edtalk.model import EDTalk
from edtalk.networks.audio2lip import Audio2Lip
from edtalk.testing import official_like_state_dict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    from edtalk.onnx.export import export_audio2lip, export_generator
    from edtalk.onnx.runtime import OnnxAudio2Lip, OnnxEDTalk

    folder = tmp_path_factory.mktemp("official_onnx")
    model = EDTalk(EDTalkConfig())
    model.load_state_dict(official_like_state_dict(model, seed=0))
    model.eval().requires_grad_(False)
    a2l = Audio2Lip(Audio2LipConfig())
    a2l.load_state_dict(official_like_state_dict(a2l, seed=1, bias_std=0.05))
    a2l.eval().requires_grad_(False)
    onnx_model = OnnxEDTalk(folder / "EDTalk", export_generator(model, folder / "EDTalk"), device="cpu")
    onnx_a2l = OnnxAudio2Lip(folder / "Audio2Lip", export_audio2lip(a2l, folder / "Audio2Lip"), device="cpu")
    return model, onnx_model, a2l, onnx_a2l


@torch.inference_mode()
def test_official_size_renders_match(official):
    model, onnx_model, _, _ = official
    g = torch.Generator().manual_seed(0)
    source, drivers = (torch.rand(n, 3, 256, 256, generator=g) * 2 - 1 for n in (1, 2))
    latent, feats = model.encode(source)
    onnx_latent, onnx_feats = onnx_model.encode(source)
    weights = model.motion_weights(drivers)
    for exp in (weights["exp"][:1], weights["exp"]):
        expected = model.render(latent, model.prepare_source(feats), weights["mouth"], weights["pose"], exp)
        got = onnx_model.render(onnx_latent, onnx_model.prepare_source(onnx_feats), weights["mouth"], weights["pose"], exp)
        assert expected.std() > 0.05  # random weights still give structured frames, not a constant
        assert psnr(got, expected) >= MIN_PSNR_DB


@torch.inference_mode()
def test_official_size_audio2lip_matches(official):
    _, _, a2l, onnx_a2l = official
    mels = torch.randn(4, 1, 80, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(onnx_a2l(mels), a2l(mels), atol=1e-3, rtol=1e-3)
