"""03 · Dynamic thresholding: exercise 3.1."""

import torch

from ..thresholding import dynamic_threshold
from .common import _b, _call, _checker, _compare, _passed


@_checker
def check_dynamic_threshold(fn):
    """Exercise 3.1. fn(x0, percentile) -> x0 thresholded, (b, c, h, w) in [-1, 1]."""
    g = torch.Generator().manual_seed(3)
    scales = torch.tensor([0.25, 1.5, 3.0, 6.0])  # image 0 already lies inside [-1, 1]
    x0 = torch.randn(4, 3, 8, 8, generator=g) * _b(scales)
    p = 0.9
    expected = dynamic_threshold(x0, p)
    got = _call(fn, x0.clone(), p)

    def quantile(values, q=p):
        return torch.quantile(values.flatten(1), q, dim=1)

    s = _b(quantile(x0.abs()).clamp(min=1))
    s_signed = _b(quantile(x0).clamp(min=1))
    s_raw = _b(quantile(x0.abs()))
    s_batch = torch.quantile(x0.abs().flatten(), p).clamp(min=1)
    variants = [
        (torch.maximum(torch.minimum(x0, s), -s), "forgot to divide by s: clamping to [-s, s] alone leaves values "
                                                  "outside [-1, 1]"),
        (x0 / s, "forgot to clamp to [-s, s] before dividing by s"),
        (torch.maximum(torch.minimum(x0, s_signed), -s_signed) / s_signed,
         "s is the percentile of |x0| (torch.quantile of x0.abs()), not of x0"),
        (torch.maximum(torch.minimum(x0, s_raw), -s_raw) / s_raw,
         "s must be at least 1 (s = max(1, quantile)): otherwise images already inside [-1, 1] are stretched "
         "(look at image 0)"),
        (torch.maximum(torch.minimum(x0, s_batch), -s_batch) / s_batch,
         "s is computed per image (quantile over each image's pixels, dim=1 after flatten(1)), not over the batch"),
        (x0.clamp(-1, 1), "that is static clipping: dynamic thresholding clamps to [-s, s] and then divides by s"),
    ]
    for wrong_p in (0.95, 0.995, 0.99):
        sw = _b(quantile(x0.abs(), wrong_p).clamp(min=1))
        variants.append((torch.maximum(torch.minimum(x0, sw), -sw) / sw,
                         f"you used percentile {wrong_p}: use the `percentile` argument"))
    diff = _compare(got, expected, what="thresholded x0", variants=variants)
    return _passed(diff)
