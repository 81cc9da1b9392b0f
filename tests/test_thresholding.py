"""Specification of minimagen.thresholding: static clipping and Imagen's dynamic thresholding.

The per-image percentile s is computed here with numpy, independently of the code under test.
"""
import numpy as np
import pytest
import torch

from minimagen.thresholding import dynamic_threshold, static_threshold


def numpy_s(x, percentile):
    """Per-image p-quantile of |x| (linear interpolation, as torch.quantile and numpy's default), at least 1."""
    flat = x.double().abs().flatten(1).numpy()
    return np.maximum(np.quantile(flat, percentile, axis=1), 1.0)


def test_dynamic_threshold_leaves_in_range_images_exactly_unchanged():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 1.0, -1.0  # the boundary is in range too
    assert torch.equal(dynamic_threshold(x, 0.9), x)
    assert torch.equal(dynamic_threshold(x, 1.0), x)


@pytest.mark.parametrize("scale", [1.5, 10.0, 1e4])
@pytest.mark.parametrize("percentile", [0.5, 0.9, 0.995, 1.0])
def test_dynamic_threshold_maps_any_input_into_minus_one_one(scale, percentile):
    torch.manual_seed(0)
    x = torch.randn(3, 3, 8, 8) * scale
    out = dynamic_threshold(x, percentile)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.abs().max() <= 1.0


@pytest.mark.parametrize("percentile", [0.5, 0.9, 0.95])
def test_dynamic_threshold_clamps_to_s_and_divides_by_s(percentile):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8) * torch.tensor([0.3, 2.0, 5.0, 40.0]).view(-1, 1, 1, 1)
    s = numpy_s(x, percentile)
    assert s[0] == 1.0 and (s[1:] > 1).all(), "the test covers both s = 1 and s > 1"
    s_t = torch.tensor(s, dtype=torch.float32).view(-1, 1, 1, 1)
    expected = torch.maximum(torch.minimum(x, s_t), -s_t) / s_t
    torch.testing.assert_close(dynamic_threshold(x, percentile), expected, rtol=1e-5, atol=1e-6)


def test_dynamic_threshold_keeps_relative_contrast_below_s():
    """Pixels inside [-s, s] are all divided by the same s: their ratios are kept."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16) * 4
    out = dynamic_threshold(x, 0.9)
    s = float(numpy_s(x, 0.9)[0])
    inside = x.abs() < s
    torch.testing.assert_close(out[inside] * s, x[inside], rtol=1e-5, atol=1e-5)
    assert torch.all(out[x >= s] == 1.0) and torch.all(out[x <= -s] == -1.0)


def test_max_value_caps_s():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8) * 20  # 90th percentile of |x| ~ 33
    assert numpy_s(x, 0.9).min() > 3
    out = dynamic_threshold(x, 0.9, max_value=3.0)
    torch.testing.assert_close(out, x.clamp(-3.0, 3.0) / 3.0)
    assert not torch.allclose(out, dynamic_threshold(x, 0.9))


def test_max_value_above_s_changes_nothing():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8) * 3
    torch.testing.assert_close(dynamic_threshold(x, 0.9, max_value=1e6), dynamic_threshold(x, 0.9))


def test_images_are_thresholded_independently():
    torch.manual_seed(0)
    calm = torch.randn(1, 3, 8, 8) * 1.5
    wild = torch.randn(1, 3, 8, 8) * 1000
    alone = dynamic_threshold(calm, 0.9)
    together = dynamic_threshold(torch.cat([calm, wild]), 0.9)
    assert numpy_s(calm, 0.9)[0] > 1, "the calm image is thresholded too, by its own s"
    torch.testing.assert_close(together[:1], alone, rtol=0, atol=0)
    other_wild = dynamic_threshold(torch.cat([calm, torch.randn(1, 3, 8, 8) * 50]), 0.9)
    torch.testing.assert_close(other_wild[:1], alone, rtol=0, atol=0)
    # a batch-wide s (that of the wild image) would have squashed the calm image towards zero
    assert alone.abs().max() == 1.0 and together[0].abs().max() == 1.0


def test_dynamic_threshold_keeps_low_precision_dtypes():
    x = (torch.randn(2, 3, 8, 8) * 3).to(torch.bfloat16)
    out = dynamic_threshold(x, 0.9)
    assert out.dtype == torch.bfloat16 and out.abs().max() <= 1


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.01])
def test_bad_percentile_raises_value_error(bad):
    with pytest.raises(ValueError, match="percentile"):
        dynamic_threshold(torch.zeros(1, 3, 2, 2), bad)


def test_max_value_below_one_raises_value_error():
    with pytest.raises(ValueError, match="max_value"):
        dynamic_threshold(torch.zeros(1, 3, 2, 2), 0.9, max_value=0.5)


def test_static_threshold_clamps_each_pixel():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8) * 3
    out = static_threshold(x)
    assert torch.equal(out, torch.where(x > 1, 1.0, torch.where(x < -1, -1.0, x)))
    inside = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(static_threshold(inside), inside)


def test_static_and_dynamic_differ_on_overshooting_images():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 8) * 3
    assert not torch.allclose(static_threshold(x), dynamic_threshold(x, 0.9))
