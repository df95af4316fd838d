"""Audio-to-lip stage (docs/design.md §8.4): items, ROI crop, sync convention, frozen encoder (bug 10),
training lowers the loss, and the export drives `edtalk generate`."""
import shutil

import numpy as np
import pytest
import torch

from edtalk.data import layout
from edtalk.data.audio_datasets import Audio2LipItems, clip_mels
from edtalk.networks.audio2lip import Audio2Lip
from edtalk.networks.syncnet import SyncNet, SyncNetConfig
from edtalk.testing import write_tiny_checkpoints
from edtalk.train.config import load_train_config
from edtalk.train.motion import extract_motion, load_generator, load_motion
from edtalk.train.stages.audio2lip import Audio2LipStage, roi_crop
from edtalk.train.trainer import seed_everything, train

CONFIG = "configs/train/audio2lip_synthtalk_tiny.yaml"


@pytest.fixture(scope="module")
def setup(synth_tree, tmp_path_factory):
    """A private copy of the tree with the motion cache of a tiny lip-pose model, and a tiny expert."""
    base = tmp_path_factory.mktemp("a2l")
    root = base / "mead"
    shutil.copytree(synth_tree, root)
    ckpts = write_tiny_checkpoints(base / "ckpt")
    gen_dir = base / "gen"  # the generator alone: generate must take Audio2Lip from the flag
    gen_dir.mkdir()
    shutil.copy(ckpts["EDTalk_lip_pose.pt"], gen_dir / "EDTalk_lip_pose.pt")
    extract_motion(load_generator(gen_dir / "EDTalk_lip_pose.pt"), root, parts=("mouth", "pose"), progress=False)
    torch.manual_seed(0)
    SyncNet(SyncNetConfig.tiny()).save_pretrained(base / "syncnet")
    return {"root": root, "gen": gen_dir / "EDTalk_lip_pose.pt", "syncnet": base / "syncnet", "base": base}


def _cfg(setup, *overrides):
    return load_train_config(CONFIG, [f"data.root={setup['root']}", f"model.generator={setup['gen']}",
                                      f"model.syncnet={setup['syncnet']}", "run.progress=false", "train.threads=1", *overrides])


def _stage(cfg):
    seed_everything(int(cfg.seed))
    stage = Audio2LipStage(cfg, torch.device("cpu"))
    stage.models = stage.build_models()
    return stage


def test_items_follow_the_spec_rule(setup):
    root = setup["root"]
    ds = Audio2LipItems(root, size=64, seed=2, length=12)
    for i in range(len(ds)):
        p, item = ds.plan(i), ds[i]
        name, r = p["clip"], p["first"]
        l = min(len(clip_mels(root, name)), len(load_motion(root, name, "mouth")), ds.num_frames(name))
        assert 0 <= r <= l - 7 and 0 <= p["identity"] <= l - 2
        assert item["mels"].shape == (5, 1, 80, 16) and item["frames"].shape == (5, 3, 64, 64)
        np.testing.assert_array_equal(item["mels"][:, 0].numpy(), clip_mels(root, name)[r:r + 5])
        np.testing.assert_array_equal(item["mouth"].numpy(), load_motion(root, name, "mouth")[r:r + 5])
        np.testing.assert_array_equal(item["pose"].numpy(), load_motion(root, name, "pose")[r:r + 5])
        np.testing.assert_allclose(item["boxes"].numpy(), np.load(layout.clip_path(root, "bbox", name))[r:r + 5])
        assert torch.equal(ds[i]["frames"], item["frames"])


def test_roi_crop_picks_the_box():
    h = w = 64
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    image = torch.stack([xs, ys, torch.zeros_like(xs)])[None]  # channel 0 = x, channel 1 = y
    box = torch.tensor([[16.0, 8.0, 40.0, 56.0]])  # 24 wide, 48 high
    crop = roi_crop(image, box, 96)[0]
    # output pixel j samples the box at x1 + (j + 0.5)·w/96 − 0.5 (pixel centres)
    want_x = 16 + (torch.arange(96) + 0.5) * 24 / 96 - 0.5
    want_y = 8 + (torch.arange(96) + 0.5) * 48 / 96 - 0.5
    inner = slice(4, 92)
    torch.testing.assert_close(crop[0, 50, inner], want_x[inner], atol=1e-3, rtol=0)
    torch.testing.assert_close(crop[1, inner, 50], want_y[inner], atol=1e-3, rtol=0)


@pytest.mark.parametrize("convention,window,low", [("wav2lip", 2, 0.0), ("official", 0, -1.0)])
def test_sync_loss_uses_the_conventions_window_and_range(setup, convention, window, low):
    stage = _stage(_cfg(setup, f"loss.sync_convention={convention}"))
    net, seen = stage.models["syncnet"], {}

    def spy(key, fn):
        def record(x):
            seen[key] = x
            return fn(x)
        return record

    net.embed_audio, net.embed_face = spy("mels", net.embed_audio), spy("faces", net.embed_face)
    mels = torch.arange(5.0).view(1, 5, 1, 1, 1).expand(2, 5, 1, 80, 16)  # window k holds the value k
    output = torch.rand(10, 3, 64, 64) * 2 - 1
    boxes = torch.tensor([8.0, 8.0, 56.0, 56.0]).expand(2, 5, 4)
    loss = stage.sync_loss(output, boxes, mels)
    assert torch.isfinite(loss)
    assert torch.equal(seen["mels"], torch.full((2, 1, 80, 16), float(window)))
    faces = seen["faces"]
    assert faces.shape == (2, 15, 48, 96) and float(faces.min()) < low + 0.1 and float(faces.min()) >= low
    # frame-major lower halves of the crops of frames r..r+4
    crops = roi_crop(output, boxes.flatten(0, 1)).view(2, 5, 3, 96, 96)[:, 1, :, 48:]
    expect = ((crops + 1) / 2).clamp(0, 1) if convention == "wav2lip" else crops
    torch.testing.assert_close(faces[:, 3:6], expect)


def _fake_wav2lip(path, channels):
    from edtalk.config import Audio2LipConfig

    enc = Audio2Lip(Audio2LipConfig(channels=channels)).audio_encoder
    g = torch.Generator().manual_seed(5)
    sd = {}
    for k, v in enc.state_dict().items():
        if not v.is_floating_point():
            sd[f"module.audio_encoder.{k}"] = v + 7
        elif k.endswith("running_var"):
            sd[f"module.audio_encoder.{k}"] = torch.rand(v.shape, generator=g) + 0.5
        else:
            sd[f"module.audio_encoder.{k}"] = torch.randn(v.shape, generator=g) * 0.1
    sd["module.face_encoder_blocks.0.0.conv_block.0.weight"] = torch.zeros(16, 6, 7, 7)
    torch.save({"state_dict": sd, "global_step": 1}, path)
    return {k[len("module.audio_encoder."):]: v for k, v in sd.items() if k.startswith("module.audio_encoder.")}


def test_frozen_wav2lip_encoder_keeps_its_batchnorm_statistics(setup, tmp_path):
    fake = _fake_wav2lip(tmp_path / "wav2lip.pth", (4, 8, 8, 16, 16))
    cfg = _cfg(setup, f"model.wav2lip_path={tmp_path / 'wav2lip.pth'}", f"run.dir={tmp_path / 'run'}",
               "train.max_steps=3", "train.batch_size=2", "loss.sync=0", "run.export=false")
    result = train(cfg)
    state = torch.load(tmp_path / "run" / "checkpoints" / "step_00000003.pt", weights_only=False)["models"]["audio2lip"]
    for k, v in fake.items():  # weights and running stats bit-identical after training steps
        assert torch.equal(state[f"audio_encoder.{k}"], v), k
    initial = _stage(cfg).models["audio2lip"].mapping.weight
    assert not torch.equal(state["mapping.weight"], initial)  # the mapping did train
    assert result.step == 3


@pytest.fixture(scope="module")
def trained(setup, tmp_path_factory):
    run = tmp_path_factory.mktemp("a2l_run")
    cfg = _cfg(setup, f"run.dir={run}", "train.max_steps=16", "train.batch_size=2", "run.log_every=100")
    return cfg, train(cfg)


def test_training_lowers_the_loss(setup, trained):
    cfg, result = trained
    stage = _stage(cfg)
    untrained = stage.models["audio2lip"]
    exported = Audio2Lip.from_official(result.exports[1])
    ds = stage.build_dataset()
    batch = torch.utils.data.default_collate([ds[i] for i in range(8)])
    for m in (stage.models["gen"], stage.models["syncnet"], untrained):
        m.eval()
    with torch.no_grad():
        before, _ = stage.losses(batch, untrained)
        after, _ = stage.losses(batch, exported)
    assert float(after["mse"]) < 0.7 * float(before["mse"]), (before, after)
    assert float(sum(after.values())) < float(sum(before.values()))


def test_export_drives_edtalk_generate(setup, trained, tmp_path):
    from PIL import Image

    from edtalk.cli import main
    from edtalk.data.store import open_frames
    from edtalk.video import probe_video

    _, result = trained
    pt = result.exports[1]
    assert set(torch.load(pt, weights_only=False)) == {"audio2lip", "args"}
    assert isinstance(Audio2Lip.from_pretrained(result.exports[0]), Audio2Lip)
    root = setup["root"]
    name = layout.read_split(root, "test")[0]
    face = tmp_path / "face.png"
    Image.fromarray(open_frames(root).frame(name, 0)).save(face)
    out = tmp_path / "out.mp4"
    rc = main(["generate", "--checkpoint", str(setup["gen"]), "--audio2lip-checkpoint", pt, "--source", str(face),
               "--audio", str(layout.clip_path(root, "audio", name)), "--no-crop", "--quiet", "--out", str(out)])
    assert rc == 0 and probe_video(out)["frames"] == 12
