"""Parity with tensors computed by the published networks (tolerances: reference README)."""
import pytest
import torch

from edtalk import Audio2Lip, EDTalk
from edtalk.testing import load_recipe

IMAGE_MEAN, IMAGE_MAX, SMALL_MAX = 1e-4, 5e-3, 1e-4


def assert_image_close(out, ref):
    diff = (out - ref).abs()
    assert out.shape == ref.shape
    assert diff.mean().item() <= IMAGE_MEAN, diff.mean().item()
    assert diff.max().item() <= IMAGE_MAX, diff.max().item()


def assert_small_close(out, ref):
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= SMALL_MAX


@pytest.fixture(scope="module")
def edtalk_model(parity_dir):
    return EDTalk.from_official(load_recipe(parity_dir, "edtalk"))


@pytest.fixture(scope="module")
def lip_pose_model(parity_dir):
    return EDTalk.from_official(load_recipe(parity_dir, "lip_pose"))


@pytest.fixture(scope="module")
def edtalk_drivers(edtalk_model, reference):
    with torch.no_grad():
        latent, feats = edtalk_model.encode(reference["source"])
        return {
            "latent": latent, "feats": edtalk_model.prepare_source(feats), "raw_feats": feats,
            "mouth": edtalk_model.motion_weights(reference["lip_frames"])["mouth"],
            "pose": edtalk_model.motion_weights(reference["pose_frames"])["pose"],
            "exp": edtalk_model.motion_weights(reference["exp_frames"])["exp"],
        }


def test_edtalk_variant_and_size(edtalk_model, lip_pose_model):
    assert edtalk_model.variant == "edtalk" and lip_pose_model.variant == "lip_pose"
    assert sum(p.numel() for p in edtalk_model.parameters()) == 64_228_397
    assert len(edtalk_model.state_dict()) == 298
    assert sum(p.numel() for p in lip_pose_model.parameters()) == 46_173_091
    assert len(lip_pose_model.state_dict()) == 195


def test_encoder_parity(edtalk_drivers, reference):
    assert_small_close(edtalk_drivers["latent"], reference["edtalk.wa_source"])
    for i in range(3):
        assert_small_close(edtalk_drivers["raw_feats"][i], reference[f"edtalk.feats_source.{i}"])


def test_weights_and_bases_parity(edtalk_model, lip_pose_model, edtalk_drivers, reference):
    assert_small_close(edtalk_drivers["mouth"], reference["edtalk.alpha_lip"])
    assert_small_close(edtalk_drivers["pose"], reference["edtalk.alpha_pose"])
    assert_small_close(edtalk_drivers["exp"], reference["edtalk.alpha_exp"])
    assert_small_close(edtalk_model.bases(), reference["edtalk.bases_q"])
    assert_small_close(lip_pose_model.bases(), reference["lip_pose.bases_q"])


@pytest.mark.parametrize("name,mouth,exp", [
    ("out_video_driven", "video", "video"),
    ("out_video_driven_exp_weights", "video", "preset"),
    ("out_audio_driven", "given", "video"),
    ("out_audio_driven_exp_weights", "given", "preset"),
])
def test_edtalk_render_parity(edtalk_model, edtalk_drivers, reference, name, mouth, exp):
    d = edtalk_drivers
    mouth_w = d["mouth"] if mouth == "video" else reference["alpha_lip_in"]
    exp_w = d["exp"] if exp == "video" else reference["alpha_exp_in"]
    with torch.no_grad():
        out = edtalk_model.render(d["latent"], d["feats"], mouth_w, d["pose"], exp_w)
    assert_image_close(out, reference[f"edtalk.{name}"])


def test_lip_pose_parity(lip_pose_model, reference):
    m = lip_pose_model
    with torch.no_grad():
        latent, feats = m.encode(reference["source"])
        mouth = m.motion_weights(reference["lip_frames"])["mouth"]
        pose = m.motion_weights(reference["pose_frames"])["pose"]
        assert_image_close(m.render(latent, feats, mouth, pose), reference["lip_pose.out_video_driven"])
        assert_image_close(m.render(latent, feats, reference["alpha_lip_in"], pose), reference["lip_pose.out_audio_driven"])
        assert_image_close(m(reference["source"], reference["lip_frames"]), reference["lip_pose.out_reconstruct"])


def test_audio2lip_parity(parity_dir, reference):
    model = Audio2Lip.from_official(load_recipe(parity_dir, "audio2lip"))
    with torch.no_grad():
        out = model(reference["audio.mel_windows"])
    assert_small_close(out, reference["audio.alpha_lip_raw"])


def test_edtalk_and_lip_pose_share_mouth_pose_bases(edtalk_model, lip_pose_model, parity_dir):
    # Prefix property (docs/design.md §2.3): appending the expression bank leaves the first 26 bases unchanged.
    q36 = edtalk_model.bases()
    w26 = edtalk_model.direction_lipnonlip.weight.detach()
    q26 = torch.linalg.qr(w26 + 1e-8, mode="reduced")[0]
    assert (q36[:, :26] - q26).abs().max().item() < 1e-5


def test_bf16_render_stays_close_to_the_official_fp32_output(parity_dir, reference):
    # The warp runs in float32 in every dtype: with a bf16 grid and the CPU's bf16 grid_sample this
    # case came out NaN (and 12.6 dB for the full model).
    m = EDTalk.from_official(load_recipe(parity_dir, "lip_pose")).to(torch.bfloat16).eval()
    with torch.no_grad():
        latent, feats = m.encode(reference["source"].bfloat16())
        pose = m.motion_weights(reference["pose_frames"].bfloat16())["pose"]
        out = m.render(latent, feats, reference["alpha_lip_in"].bfloat16(), pose).float()
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    mse = ((out - reference["lip_pose.out_audio_driven"]) ** 2).mean().item()
    assert 10 * torch.log10(torch.tensor(4.0 / mse)).item() > 45.0
