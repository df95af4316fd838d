"""Safe loading of official-format files and our safetensors format."""
import argparse
import os

import pytest
import torch

from edtalk import Audio2Lip, CheckpointError, EDTalk, EDTalkConfig
from edtalk.checkpoints import describe_kind, read_state_dict, safe_torch_load
from edtalk.config import Audio2LipConfig
from edtalk.testing import official_like_state_dict


class RunsCode:
    """A pickle payload that would create a file if unpickled fully."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def tiny_sd():
    m = EDTalk(EDTalkConfig.tiny())
    return official_like_state_dict(m, seed=1)


def test_official_training_checkpoint_with_namespace_args_loads(tmp_path, tiny_sd):
    path = tmp_path / "EDTalk.pt"
    torch.save({"gen": tiny_sd, "dis": {}, "args": argparse.Namespace(lr=0.002, size=64)}, path)
    model = EDTalk.from_official(path)
    assert model.variant == "edtalk"
    assert torch.equal(model.direction_exp.weight, tiny_sd["direction_exp.weight"])


def test_malicious_pickle_is_refused_without_running_code(tmp_path, tiny_sd):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"gen": tiny_sd, "args": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=r"refusing to load .*system"):
        EDTalk.from_official(path)
    assert not marker.exists()


def test_module_prefix_and_bare_state_dict(tmp_path, tiny_sd):
    path = tmp_path / "bare.pt"
    torch.save({f"module.{k}": v for k, v in tiny_sd.items()}, path)
    assert EDTalk.from_official(path).variant == "edtalk"


def test_wrong_kind_and_missing_file_errors(tmp_path, tiny_sd):
    a2l = Audio2Lip(Audio2LipConfig.tiny())
    path = tmp_path / "Audio2Lip.pt"
    torch.save({"audio2lip": a2l.state_dict()}, path)
    with pytest.raises(CheckpointError, match="--audio2lip-checkpoint"):
        EDTalk.from_official(path)
    gen = tmp_path / "gen.pt"
    torch.save({"gen": tiny_sd}, gen)
    with pytest.raises(CheckpointError, match="--checkpoint"):
        Audio2Lip.from_official(gen)
    with pytest.raises(CheckpointError, match="not found"):
        EDTalk.from_official(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        safe_torch_load(junk)


def test_shape_mismatch_is_summarised(tiny_sd):
    sd = dict(tiny_sd)
    sd["lip_fc.2.weight"] = torch.zeros(20, 99)
    with pytest.raises(CheckpointError, match="wrong shape"):
        EDTalk.from_official(sd)


def test_audio2lip_round_trips_and_loads_official_layout(tmp_path):
    model = Audio2Lip(Audio2LipConfig.tiny())
    model.load_state_dict(official_like_state_dict(model, seed=2))
    model.eval()
    torch.save({"audio2lip": model.state_dict(), "args": argparse.Namespace()}, tmp_path / "a.pt")
    loaded = Audio2Lip.from_official(tmp_path / "a.pt")
    model.save_pretrained(tmp_path / "ours")
    ours = Audio2Lip.from_pretrained(tmp_path / "ours")
    mels = torch.randn(5, 1, 80, 16)
    with torch.no_grad():
        ref = model(mels)
        assert torch.equal(loaded(mels), ref) and torch.equal(ours(mels), ref)
        assert loaded(mels[None]).shape == (1, 5, 20)
    assert describe_kind(read_state_dict(tmp_path / "ours", "audio2lip")) == "audio2lip"
    with pytest.raises(CheckpointError, match="audio2lip model, expected edtalk"):
        EDTalk.from_pretrained(tmp_path / "ours")


@pytest.fixture(params=["2.4", "2.1"])
def older_torch(request, monkeypatch):
    """torch without `safe_globals` (2.4), or without any allowlist API (2.1–2.3)."""
    serialization = torch.serialization
    saved, register = serialization.get_safe_globals(), serialization.add_safe_globals
    monkeypatch.delattr(serialization, "safe_globals")
    if request.param == "2.1":
        monkeypatch.delattr(serialization, "add_safe_globals")
    yield request.param
    serialization.clear_safe_globals()  # 2.4's registration is process-wide: undo it
    register(saved)


def test_older_torch_loads_training_checkpoints_and_still_refuses_code(tmp_path, tiny_sd, older_torch):
    path = tmp_path / "EDTalk.pt"
    torch.save({"gen": tiny_sd, "args": argparse.Namespace(lr=0.002, size=64)}, path)
    loaded = safe_torch_load(path)
    assert torch.equal(loaded["gen"]["direction_exp.weight"], tiny_sd["direction_exp.weight"])
    # 2.4 keeps the Namespace (allowlisted); the 2.1 restricted unpickler drops it (docs/design.md §4.1).
    assert ("args" in loaded) == (older_torch == "2.4")
    legacy = tmp_path / "legacy.pt"  # the pre-zip torch.save format
    torch.save({"gen": tiny_sd, "args": argparse.Namespace()}, legacy, _use_new_zipfile_serialization=False)
    assert EDTalk.from_official(legacy).variant == "edtalk"
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"gen": tiny_sd, "args": RunsCode(marker)}, evil)
    with pytest.raises(CheckpointError, match=r"refusing to load .*system"):
        EDTalk.from_official(evil)
    assert not marker.exists()


def test_restricted_unpickler_refuses_callables_that_torch_would_not_build(tmp_path, monkeypatch):
    monkeypatch.delattr(torch.serialization, "safe_globals")
    monkeypatch.delattr(torch.serialization, "add_safe_globals")
    path = tmp_path / "eval.pt"
    torch.save({"gen": {"w": torch.zeros(1)}, "args": eval}, path)
    with pytest.raises(CheckpointError, match="refusing to load .*eval"):
        safe_torch_load(path)
