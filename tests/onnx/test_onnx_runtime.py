"""The onnxruntime engine against the torch networks on the bundled model: every call generation
makes (encode, motion heads, render with one source or a batch of sources, with a constant, a
per-frame or no expression; Audio2Lip; the pose flow's sampler; audio2exp), PSNR >= 40 dB on frames."""
import pytest
import torch
from onnx_helpers import MIN_PSNR_DB, SHIPPED, psnr

from edtalk.errors import InputError
from edtalk.model import EDTalk
from edtalk.onnx.runtime import (OnnxEDTalk, load_onnx_expression_predictor, load_onnx_models, load_onnx_pose_flow,
                                 providers_for)


@pytest.fixture(scope="module", params=["EDTalk", "EDTalk_lip_pose"])
def pair(request, bundled_export):
    expression = request.param == "EDTalk"
    onnx_model, _ = load_onnx_models(bundled_export, expression=expression, need_audio=False, device="cpu")
    assert isinstance(onnx_model, OnnxEDTalk) and onnx_model.has_expression == expression
    return EDTalk.from_pretrained(SHIPPED / request.param).eval(), onnx_model


def images(n, size, seed):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@torch.inference_mode()
def test_encoder_and_motion_heads_match(pair):
    model, onnx_model = pair
    drivers = images(3, model.config.size, 1)
    torch.testing.assert_close(onnx_model.encode_latent(drivers), model.encode_latent(drivers), atol=1e-4, rtol=1e-4)
    ours, theirs = onnx_model.motion_weights(drivers), model.motion_weights(drivers)
    assert set(ours) == set(theirs)
    for part in theirs:
        torch.testing.assert_close(ours[part], theirs[part], atol=1e-4, rtol=1e-4)
    only_pose = onnx_model.motion_weights(latent=model.encode_latent(drivers), parts=("pose",))
    assert set(only_pose) == {"pose"}


def render_cases(model, frames):
    """(name, exp) of every way generation drives the expression slot."""
    weights = model.motion_weights(images(frames, model.config.size, 2))
    cases = [("no expression", None)]
    if model.has_expression:
        cases += [("one expression for every frame", weights["exp"][:1]), ("an expression per frame", weights["exp"])]
    return weights, cases


@torch.inference_mode()
@pytest.mark.parametrize("frames", [1, 3])
def test_frames_from_one_source_match(pair, frames):
    model, onnx_model = pair
    source = images(1, model.config.size, 0)
    latent, feats = model.encode(source)
    onnx_latent, onnx_feats = onnx_model.encode(source)
    prepared = onnx_model.prepare_source(onnx_feats)
    weights, cases = render_cases(model, frames)
    for name, exp in cases:
        expected = model.render(latent, model.prepare_source(feats), weights["mouth"], weights["pose"], exp)
        got = onnx_model.render(onnx_latent, prepared, weights["mouth"], weights["pose"], exp)
        assert got.shape == expected.shape
        assert psnr(got, expected) >= MIN_PSNR_DB, name


@torch.inference_mode()
def test_dubbing_frames_each_with_its_own_source_match(pair):
    model, onnx_model = pair
    sources = images(3, model.config.size, 3)
    latent, feats = model.encode(sources)
    onnx_latent, onnx_feats = onnx_model.encode(sources)
    weights, cases = render_cases(model, 3)
    if model.has_expression:  # dubbing with a preset: one expression expanded over the batch
        cases.append(("a preset over the batch", weights["exp"][:1].expand(3, -1)))
    for name, exp in cases:
        expected = model.render(latent, feats, weights["mouth"], weights["pose"], exp)
        got = onnx_model.render(onnx_latent, onnx_feats, weights["mouth"], weights["pose"], exp)
        assert psnr(got, expected) >= MIN_PSNR_DB, name
        # each frame has its own source: frames differ from those of the first source alone
        alone = onnx_model.render(onnx_latent[:1], [f[:1] for f in onnx_feats], weights["mouth"], weights["pose"], exp)
        assert psnr(got[1:], alone[1:]) < MIN_PSNR_DB


@torch.inference_mode()
def test_a_constant_expression_is_enhanced_once_per_source(pair):
    model, onnx_model = pair
    if not model.has_expression:
        pytest.skip("the lip-pose model has no expression")
    latent, feats = onnx_model.encode(images(1, model.config.size, 0))
    source = onnx_model.prepare_source(feats)
    exp = model.motion_weights(images(1, model.config.size, 5))["exp"]
    first = onnx_model.maps_for(source, exp.numpy())
    assert onnx_model.maps_for(source, exp.numpy()) is first
    assert onnx_model.maps_for(source, (exp * 2).numpy()) is not first


@torch.inference_mode()
def test_audio2lip_matches(bundled_export):
    from edtalk.networks.audio2lip import Audio2Lip

    torch_a2l = Audio2Lip.from_pretrained(SHIPPED / "Audio2Lip").eval()
    _, onnx_a2l = load_onnx_models(bundled_export, expression=False, need_audio=True, device="cpu")
    mels = torch.randn(5, 1, 80, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(onnx_a2l(mels), torch_a2l(mels), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(onnx_a2l(mels[None]), torch_a2l(mels[None]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(onnx_a2l.embed(mels), torch_a2l.embed(mels), atol=1e-4, rtol=1e-4)


@torch.inference_mode()
@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_pose_flow_sampler_matches(bundled_export, temperature):
    from edtalk.networks.pose_flow import load_pose_flow

    flow, _ = load_pose_flow(SHIPPED / "pose_flow")
    onnx_flow, _ = load_onnx_pose_flow(bundled_export / "pose_flow", device="cpu")
    audio = torch.randn(2, 40, flow.config.audio_dim, generator=torch.Generator().manual_seed(1))
    seed_pose = torch.randn(2, flow.config.pose_dim, generator=torch.Generator().manual_seed(2)) * 0.1
    expected = flow.sample(audio, seed_pose, temperature, torch.Generator().manual_seed(3))
    got = onnx_flow.sample(audio, seed_pose, temperature, torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@torch.inference_mode()
def test_expression_predictor_matches_with_either_modality_missing(bundled_export):
    from edtalk.networks.expression_predictor import load_expression_predictor

    net, _, text_encoder = load_expression_predictor(SHIPPED / "audio2exp")
    onnx_net, _, onnx_text_encoder = load_onnx_expression_predictor(bundled_export / "audio2exp", device="cpu")
    assert onnx_text_encoder == text_encoder
    g = torch.Generator().manual_seed(0)
    audio, text = torch.randn(2, net.config.audio_dim, generator=g), torch.randn(2, net.config.text_dim, generator=g)
    for a, t in ((audio, text), (audio, None), (None, text)):
        for got, expected in zip(onnx_net(audio=a, text=t), net(audio=a, text=t)):
            torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-3)


def test_providers_follow_the_device():
    import onnxruntime

    assert providers_for("cpu") == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert providers_for("auto")[0] == "CUDAExecutionProvider"
    else:
        assert providers_for("auto") == ["CPUExecutionProvider"]
        with pytest.raises(InputError, match="CUDA provider"):
            providers_for("cuda")
    with pytest.raises(InputError, match="cpu or cuda"):
        providers_for("mps")
