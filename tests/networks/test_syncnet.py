"""The SyncNet expert network: official keys and shapes, unit embeddings, both weight formats."""
from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk.networks.syncnet import SyncNet, SyncNetConfig, load_syncnet

KEYS_FILE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "official_state_dict_keys.txt"


def _official_syncnet_keys():
    if not KEYS_FILE.is_file():
        pytest.skip(f"{KEYS_FILE} not found")
    section = KEYS_FILE.read_text().split("## MODEL: SyncNet_color")[1].split("## MODEL")[0]
    rows = [line.split() for line in section.splitlines()[1:] if line.strip() and not line.startswith("#")]
    return {r[0]: r[1] for r in rows}


def test_syncnet_state_dict_matches_the_official_keys_and_shapes():
    official = _official_syncnet_keys()
    ours = {k: "x".join(map(str, v.shape)) or "scalar" for k, v in SyncNet().state_dict().items()}
    assert ours == official and len(ours) == 217


def test_syncnet_embeddings_are_unit_and_scores_in_unit_interval():
    net = SyncNet(SyncNetConfig.tiny()).eval()
    a, v = net(torch.randn(3, 1, 80, 16), torch.rand(3, 15, 48, 96))
    assert a.shape == v.shape == (3, 16)
    np.testing.assert_allclose(a.norm(dim=1).detach(), 1.0, atol=1e-5)
    score = SyncNet.sync_score(a, v)
    assert ((score >= 0) & (score <= 1 + 1e-6)).all()


def test_syncnet_round_trips_through_both_weight_formats(tmp_path):
    net = SyncNet(SyncNetConfig.tiny()).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p)
    mels, faces = torch.randn(2, 1, 80, 16), torch.rand(2, 15, 48, 96)
    expected = net(mels, faces)
    net.save_pretrained(tmp_path / "expert")
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "wav2lip.pth")
    for path in (tmp_path / "expert", tmp_path / "wav2lip.pth"):
        loaded = load_syncnet(path)
        assert loaded.config == net.config
        for got, want in zip(loaded(mels, faces), expected):
            torch.testing.assert_close(got, want)
