"""Our modules' state dicts have exactly the official keys, order and shapes (all four file kinds)."""
import pytest
import torch

from edtalk import Audio2Lip, EDTalk, EDTalkConfig
from edtalk.config import DiscriminatorConfig
from edtalk.networks.discriminator import Discriminator
from edtalk.testing import REQUIRE_ENV, skip_unless_required


def official_models(parity_dir):
    path = parity_dir.parent / "official_state_dict_keys.txt"
    if not path.is_file():
        skip_unless_required(f"{path} not found")
    models, current = {}, None
    for line in path.read_text().splitlines():
        if line.startswith("## MODEL:"):
            current = line
            models[current] = []
        elif current and line and not line.startswith("#"):
            key, shape = line.split()[:2]
            dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
            models[current].append((key, dims))
    return models


def pick(models, marker):
    return next(v for k, v in models.items() if marker in k)


@pytest.mark.parametrize("marker,build", [
    ("EDTalk.pt", lambda: EDTalk(EDTalkConfig())),
    ("EDTalk_lip_pose.pt", lambda: EDTalk(EDTalkConfig.official_lip_pose())),
    ("Audio2Lip.pt", lambda: Audio2Lip()),
    ("Discriminator(256,1)", lambda: Discriminator(DiscriminatorConfig())),
])
def test_state_dict_matches_official_keys(parity_dir, marker, build):
    expected = pick(official_models(parity_dir), marker)
    ours = [(k, tuple(v.shape)) for k, v in build().state_dict().items()]
    assert ours == expected


def test_discriminator_forward_and_size():
    d = Discriminator(DiscriminatorConfig())
    assert sum(p.numel() for p in d.parameters()) == 24_001_089
    tiny = Discriminator(DiscriminatorConfig.tiny())
    x = torch.randn(4, 3, 64, 64, requires_grad=True)
    out = tiny(x)
    assert out.shape == (4, 1)
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not divisible"):
        tiny(torch.randn(6, 3, 64, 64))


def test_missing_reference_files_fail_in_ci_and_skip_elsewhere(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="keys file missing"):
        skip_unless_required("keys file missing")
    for name, value in (("CI", "true"), (REQUIRE_ENV, "1")):
        monkeypatch.setenv(name, value)
        with pytest.raises(pytest.fail.Exception, match="keys file missing.*required"):
            skip_unless_required("keys file missing")
        monkeypatch.delenv(name)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        skip_unless_required("keys file missing")
