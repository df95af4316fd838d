import math

import numpy as np
import pytest
import torch

from edtalk.nn.layers import ConvLayer, ModulatedConv2d, ResBlock, StyledConv, Upsample, reference_ops
from edtalk.nn.ops import fused_leaky_relu, make_blur_kernel, upfirdn2d


def naive_upfirdn(x, k, up, down, p0, p1):
    """Direct loop over the spec's four steps (single channel, numpy)."""
    h, w = x.shape
    u = np.zeros((h * up, w * up))
    u[::up, ::up] = x
    u = np.pad(u, ((p0, p1), (p0, p1)))
    kf = k[::-1, ::-1]
    kh, kw = k.shape
    out = np.array([[np.sum(u[i:i + kh, j:j + kw] * kf) for j in range(u.shape[1] - kw + 1)]
                    for i in range(u.shape[0] - kh + 1)])
    return out[::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(1, 1, (2, 2)), (2, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (1, 1)),
                                         (1, 1, (3, 1)), (1, 1, (0, 2)), (2, 1, (1, 2))])
def test_upfirdn2d_matches_naive(up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6))
    k = rng.standard_normal((4, 4))  # asymmetric, so the flip matters
    out = upfirdn2d(torch.tensor(x)[None, None], torch.tensor(k), up=up, down=down, pad=pad)[0, 0].numpy()
    np.testing.assert_allclose(out, naive_upfirdn(x, k, up, down, *pad), atol=1e-10)


def test_blur_kernel_values():
    k = make_blur_kernel()
    assert k[0, 0].item() == pytest.approx(1 / 64) and k[1, 1].item() == pytest.approx(9 / 64)
    assert make_blur_kernel(upsample_factor=2).sum().item() == pytest.approx(4.0)


def test_upsample_doubles_size_and_preserves_constant_interior():
    x = torch.ones(1, 2, 6, 6)
    y = Upsample()(x)
    assert y.shape == (1, 2, 12, 12)
    assert torch.allclose(y[:, :, 2:-2, 2:-2], torch.ones(1, 2, 8, 8))


def test_fused_leaky_relu():
    x = torch.tensor([[-1.0, 2.0]])
    out = fused_leaky_relu(x, torch.tensor([0.5, -0.5]))
    assert torch.allclose(out, torch.tensor([[-0.5 * 0.2, 1.5]]) * math.sqrt(2))


def test_downsampling_conv_layer_halves_size():
    assert ConvLayer(3, 4, 3, downsample=True)(torch.zeros(1, 3, 16, 16)).shape == (1, 4, 8, 8)
    assert ConvLayer(3, 4, 1, downsample=True, bias=False, activate=False)(torch.zeros(1, 3, 16, 16)).shape == (1, 4, 8, 8)


@pytest.mark.parametrize("upsample,demodulate", [(False, True), (True, True), (False, False)])
def test_modulated_conv_fast_path_equals_grouped_reference(upsample, demodulate):
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3 if demodulate else 1, 16, demodulate=demodulate, upsample=upsample)
    x, style = torch.randn(3, 6, 8, 8), torch.randn(3, 16)
    fast, ref = conv(x, style), conv.forward_grouped(x, style)
    assert fast.shape == ref.shape == (3, 5, 16 if upsample else 8, 16 if upsample else 8)
    assert (fast - ref).abs().max() < 1e-4


@pytest.mark.parametrize("style_batch", [1, 3])
@pytest.mark.parametrize("upsample", [False, True])
def test_styled_conv_fast_inference_equals_reference_ops(style_batch, upsample):
    torch.manual_seed(1)
    layer = StyledConv(6, 5, 3, 16, upsample=upsample)
    torch.nn.init.normal_(layer.activate.bias, std=0.3)
    x, style = torch.randn(3, 6, 8, 8), torch.randn(style_batch, 16)
    with torch.no_grad():
        fast = layer(x, style)
        with reference_ops():
            ref = layer(x, style)
    assert (fast - ref).abs().max() < 1e-5
    assert ref.abs().mean() > 0.1


def test_conv_and_res_blocks_fast_inference_equal_reference_ops():
    torch.manual_seed(2)
    block, conv = ResBlock(4, 6), ConvLayer(4, 6, 3)
    for m in (block, conv):
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        fast = (block(x), conv(x))
        with reference_ops():
            ref = (block(x), conv(x))
    for f, r in zip(fast, ref):
        assert (f - r).abs().max() < 1e-5
    # With autograd on, the reference path runs (and gradients flow).
    assert block(x.requires_grad_()).sum().backward() is None and x.grad is not None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_styled_conv_half_precision_stays_finite_and_close(dtype):
    torch.manual_seed(3)
    layer = StyledConv(64, 32, 3, 16, upsample=True)
    x, style = torch.randn(2, 64, 8, 8), torch.randn(1, 16) * 8  # large styles: big sums of squares
    with torch.no_grad():
        ref = layer(x, style)
        try:
            half = layer.to(dtype)(x.to(dtype), style.to(dtype)).float()
        except RuntimeError as exc:  # some CPU builds lack half-precision convolutions
            pytest.skip(f"{dtype} convolution unavailable on this CPU build: {exc}")
    assert torch.isfinite(half).all()
    assert (half - ref).abs().mean() < 0.05 * ref.abs().mean()
