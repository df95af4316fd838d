"""SyncNet expert stage (docs/design.md §2.10): the input convention, the Wav2Lip expert converter, training
on a tiny SynthTalk tree (in sync preferred over ±5-frame shifts) and the export the LSE metric loads."""
import numpy as np
import pytest
import torch

from edtalk.audio import mel_spectrogram, window_start
from edtalk.data import layout
from edtalk.data.audio_datasets import SyncNetPairs
from edtalk.errors import InputError
from edtalk.eval.metrics.clip import face_crops
from edtalk.eval.metrics.sync import SyncExpertScorer
from edtalk.networks.syncnet import SyncNet, SyncNetConfig, load_syncnet
from edtalk.train.config import load_train_config
from edtalk.train.stages.syncnet import SyncNetStage, sync_bce, sync_preference, sync_probability
from edtalk.train.trainer import train

CONFIG = "configs/train/syncnet_synthtalk_tiny.yaml"


def test_pairs_follow_the_wav2lip_convention(synth_tree):
    import soundfile as sf

    ds = SyncNetPairs(synth_tree, seed=1, length=10)
    labels = []
    for i in range(len(ds)):
        p, item = ds.plan(i), ds[i]
        name, r = p["clip"], p["first"]
        frames = ds.native_frames(name, range(r, r + 5))
        crops = face_crops(frames, ds.boxes(name)[r:r + 5], 96)
        # frame-major lower halves in [0,1]: channels 3k..3k+2 = rows 48-95 of frame r+k
        assert item["faces"].shape == (15, 48, 96)
        torch.testing.assert_close(item["faces"][3:6], crops[1, :, 48:])
        assert 0 <= float(item["faces"].min()) and float(item["faces"].max()) <= 1
        if p["label"] == 1:  # the window starting at mel row trunc(80r/25)
            wav, _ = sf.read(layout.clip_path(synth_tree, "audio", name), dtype="float32")
            mel = mel_spectrogram(wav)
            start = int(80 * r / 25)
            assert window_start(r + 2) == start
            np.testing.assert_array_equal(item["mel"][0].numpy(), mel[start:start + 16].T)
        else:
            other, j = p["audio"]
            assert other != name or abs(j - (r + 2)) >= 5
        labels.append(p["label"])
        again = ds[i]  # an item is a pure function of (seed, epoch, index)
        assert torch.equal(again["faces"], item["faces"]) and torch.equal(again["mel"], item["mel"])
    assert 0 < sum(labels) < len(labels)


def test_minus_one_to_one_crops_are_rejected():
    net = SyncNet(SyncNetConfig.tiny()).eval()
    faces, mels = torch.rand(2, 15, 48, 96), torch.randn(2, 1, 80, 16)
    assert torch.isfinite(sync_bce(net, mels, faces, torch.ones(2)))
    with pytest.raises(InputError, match=r"\[0,1\]"):
        sync_probability(net, mels, faces * 2 - 1)


def test_wav2lip_expert_checkpoint_initialises_the_stage(tmp_path, synth_tree):
    # A fake lipsync_expert.pth: Wav2Lip's key names and shapes (official widths), random values.
    g = torch.Generator().manual_seed(0)
    shapes = SyncNet().state_dict()
    fake = {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()) for k, v in shapes.items()}
    assert len(fake) == 217 and "face_encoder.16.conv_block.0.weight" in fake and "audio_encoder.13.conv_block.0.weight" in fake
    path = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": fake, "global_step": 0}, path)
    cfg = load_train_config(CONFIG, [f"data.root={synth_tree}", f"model.init_path={path}"])
    stage = SyncNetStage(cfg, torch.device("cpu"))
    net = stage.build_models()["syncnet"]
    assert net.config.face_channels == (32, 64, 128, 256, 512)
    got = net.state_dict()
    assert all(torch.equal(got[k], fake[k]) for k in fake)


@pytest.fixture(scope="module")
def trained_expert(synth_tree, tmp_path_factory):
    run = tmp_path_factory.mktemp("syncnet_run")
    cfg = load_train_config(CONFIG, [f"data.root={synth_tree}", f"run.dir={run}", "run.progress=false", "train.threads=1",
                                     "run.log_every=100"])
    return train(cfg)


def test_trained_expert_prefers_the_in_sync_window(trained_expert, synth_tree):
    ds = SyncNetPairs(synth_tree)
    net = load_syncnet(trained_expert.exports[0])
    torch.manual_seed(0)
    untrained = SyncNet(net.config).eval()
    trained, baseline = (sync_preference(m, ds)["preferred"] for m in (net, untrained))
    assert trained >= 0.7 and trained > baseline + 0.15, (trained, baseline)


def test_export_is_the_folder_the_lse_metric_loads(trained_expert, synth_tree):
    folder = trained_expert.exports[0]
    assert sorted(p.name for p in __import__("pathlib").Path(folder).iterdir()) == ["config.json", "model.safetensors"]
    import soundfile as sf

    name = layout.read_split(synth_tree, "train")[0]
    ds = SyncNetPairs(synth_tree)
    frames = ds.native_frames(name, range(ds.num_frames(name)))
    wav, _ = sf.read(layout.clip_path(synth_tree, "audio", name), dtype="float32")
    scores = SyncExpertScorer(load_syncnet(folder)).score(frames, wav, ds.boxes(name), max_offset=3)
    assert np.isfinite(scores["lse_d"]) and scores["lse_c"] >= 0
