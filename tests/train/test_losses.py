"""Losses: pyramid kernels and sizes, VGG19 slicing (random weights), weights lookup, GAN/R1/fea values."""
import math

import pytest
import torch
import torch.nn.functional as F

from edtalk.errors import EDTalkError
from edtalk.train import losses as L


def test_pyramid_kernels_follow_the_spec():
    # σ = (1/s − 1)/2 and size 2·round(4σ)+1: 5, 13, 29 for ½, ¼, ⅛.
    for scale, size, sigma in [(0.5, 5, 0.5), (0.25, 13, 1.5), (0.125, 29, 3.5)]:
        k = L.gaussian_kernel_1d(scale)
        assert k.numel() == size
        assert torch.isclose(k.sum(), torch.tensor(1.0))
        x = torch.arange(size) - size // 2
        expected = torch.exp(-x.double() ** 2 / (2 * sigma ** 2))
        assert torch.allclose(k.double(), expected / expected.sum(), atol=1e-7)


def test_pyramid_sizes_and_values():
    pyr = L.GaussianPyramid()
    x = torch.randn(2, 3, 64, 64)
    levels = pyr(x)
    assert [t.shape[-1] for t in levels] == [64, 32, 16, 8]
    assert levels[0] is x
    # A constant image stays constant away from the zero-padded border.
    const = pyr(torch.full((1, 3, 64, 64), 0.5))
    assert torch.allclose(const[1][..., 2:-2, 2:-2], torch.tensor(0.5), atol=1e-6)
    # Each level is the 2-D blur (5x5 / 13x13 / 29x29, pad ks//2) then the stride, channel by
    # channel (computed as two 1-D passes)
    for level, scale in zip(levels[1:], (0.5, 0.25, 0.125)):
        k = L.gaussian_kernel_1d(scale)
        ref = F.conv2d(x[:, 1:2], torch.outer(k, k)[None, None], stride=round(1 / scale), padding=k.numel() // 2)
        assert torch.allclose(level[:, 1:2], ref, atol=1e-6)


def _vgg19_features():
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    return make_layers(cfgs["E"])  # = torchvision vgg19(weights=None).features


def test_vgg19_slices_are_relu1_1_to_relu5_1():
    features = _vgg19_features()
    backbone = L.VGG19Backbone({f"features.{k}": v for k, v in features.state_dict().items()})
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    feats = backbone(x)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    # Each output equals torchvision's `features` run up to that ReLU on ImageNet-normalised input.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = ((x + 1) / 2 - mean) / std
    for i, layer in enumerate(features[:30]):
        h = layer(h)
        if i in (1, 6, 11, 20, 29):
            assert isinstance(layer, torch.nn.ReLU)
            assert torch.allclose(feats[[1, 6, 11, 20, 29].index(i)], h, atol=1e-5)
    assert not any(p.requires_grad for p in backbone.parameters())


class ToyBackbone(torch.nn.Module):
    """Two conv feature maps; any PerceptualBackbone works with the pyramid loss."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.requires_grad_(False)

    def forward(self, x):
        fa = torch.relu(self.a(x))
        return [fa, torch.relu(self.b(fa))]


def test_perceptual_loss_value_and_gradients():
    torch.manual_seed(0)
    backbone = ToyBackbone()
    assert isinstance(backbone, L.PerceptualBackbone)
    loss = L.PyramidPerceptualLoss(backbone)
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(target, target).item() == 0.0
    out = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    tgt = target.clone().requires_grad_(True)
    value = loss(out, tgt)
    # 10 · mean|Δ| summed over every scale and layer that the backbone returns.
    expected = 0.0
    for o, t in zip(loss.pyramid(out), loss.pyramid(tgt)):
        expected += sum(10 * (a - b).abs().mean() for a, b in zip(backbone(o), backbone(t)))
    assert torch.isclose(value, expected, rtol=1e-5)
    value.backward()
    assert out.grad.abs().sum() > 0 and tgt.grad is None  # the target side is detached


def test_vgg19_weights_lookup(tmp_path, monkeypatch):
    monkeypatch.delenv(L.VGG19_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(EDTalkError, match="ImageNet VGG19 weights"):
        L.build_backbone("vgg19", {})
    with pytest.raises(EDTalkError, match="not found"):
        L.build_backbone("vgg19", {"weights": str(tmp_path / "missing.pth")})
    state = {f"features.{k}": v for k, v in _vgg19_features().state_dict().items()}
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    monkeypatch.setenv(L.VGG19_WEIGHTS_ENV, str(path))
    backbone = L.build_backbone("vgg19", {})
    assert torch.equal(backbone.slices[0][0].weight, state["features.0.weight"])
    assert L.build_backbone("none") is None
    with pytest.raises(EDTalkError, match="unknown perceptual backbone"):
        L.build_backbone("resnet")


def test_gan_and_r1_values():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    assert math.isclose(L.g_nonsaturating_loss(fake).item(), (math.log(2) + math.log1p(math.e)) / 2, rel_tol=1e-6)
    d = (math.log(2) + math.log1p(math.exp(-2))) / 2 + (math.log(2) + math.log1p(math.exp(-1))) / 2
    assert math.isclose(L.d_logistic_loss(real, fake).item(), d, rel_tol=1e-6)
    # D(x) = Σ w·x has gradient w everywhere: R1 = ‖w‖².
    w = torch.randn(3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    assert torch.isclose(L.r1_penalty((x * w).sum((1, 2, 3)), x), (w ** 2).sum())


def test_feature_consistency_sum_and_mean():
    a = torch.randn(4, 8)
    same = L.feature_consistency_loss(a, 2 * a)
    assert torch.isclose(same, torch.tensor(4 * math.exp(-1.0)))
    opposite = L.feature_consistency_loss(a, -a, reduction="mean")
    assert torch.isclose(opposite, torch.tensor(math.e))
    b = a.clone().requires_grad_(True)
    c = torch.randn(4, 8, requires_grad=True)
    L.feature_consistency_loss(b, c).backward()
    assert b.grad.abs().sum() > 0 and c.grad.abs().sum() > 0  # gradients on both sides
    with pytest.raises(ValueError):
        L.feature_consistency_loss(a, a, reduction="max")


def test_box_l1_only_sees_the_box():
    from edtalk.train.losses import box_l1_loss, box_mask

    boxes = torch.tensor([[1, 2, 4, 3], [0, 0, 0, 0]])
    mask = box_mask(boxes, 5)
    assert mask[0, 0].nonzero().tolist() == [[2, 1], [2, 2], [2, 3]] and mask[1].sum() == 0
    target = torch.zeros(2, 3, 5, 5)
    output = torch.zeros(2, 3, 5, 5)
    output[0, :, 2, 1] = 3.0      # inside sample 0's box: 3 of its 9 values (3 px × 3 ch) are off by 3
    output[0, :, 0, 0] = 100.0    # outside every box
    output[1] = 7.0               # sample 1 has an empty box: it counts 0
    assert box_l1_loss(output, target, boxes).item() == pytest.approx((3 * 3 / 9 + 0) / 2)
