"""07 · Super-resolution and noise conditioning augmentation: exercise 7.1 (the noise level that gives the
low-resolution condition a chosen signal-to-noise ratio)."""

import math

import torch

from ..diffusion import GaussianDiffusion
from .common import _call, _checker, _compare, _Failed, _passed


def level_for_snr(snr: torch.Tensor) -> torch.Tensor:
    """The level l in [0, 1] of the linear schedule whose condition has signal-to-noise ratio `snr`.

    alphas_cumprod(l) = exp(-(0.1 l + 9.95 l^2)) (schedules.linear_alphas_cumprod) and SNR = a / (1 - a), so
    a = snr / (1 + snr), L = -log a solves 9.95 l^2 + 0.1 l - L = 0: l = (-0.1 + sqrt(0.01 + 39.8 L)) / 19.9.
    snr: any shape, > 0. Returns the same shape, float64.
    """
    snr = torch.as_tensor(snr, dtype=torch.float64)
    big_l = -torch.log(snr / (1 + snr))
    return (-0.1 + torch.sqrt(0.01 + 4 * 9.95 * big_l)) / (2 * 9.95)


@_checker
def check_level_for_snr(fn):
    """Exercise 7.1. fn(snr) -> levels, same shape, float64: the linear schedule's level with that SNR."""
    snr = torch.tensor([100.0, 10.0, 1.0, 0.1, 0.01], dtype=torch.float64)
    expected = level_for_snr(snr)
    got = _call(fn, snr.clone())
    if not torch.is_tensor(got):
        raise _Failed(f"return a tensor of levels, got {type(got).__name__}")
    big_l = -torch.log(snr / (1 + snr))

    def nan_hint(got):
        return ("a square root of a negative number: -log(a) must be >= 0, with a = SNR / (1 + SNR) in (0, 1); "
                "did you use the SNR itself as alphas_cumprod?")

    variants = [
        ((-0.1 - torch.sqrt(0.01 + 39.8 * big_l)) / 19.9, "you took the negative root of the quadratic: the level "
                                                          "is the root in [0, 1]"),
        ((-0.1 + (0.01 + 39.8 * big_l)) / 19.9, "missing sqrt in the quadratic formula"),
        ((-0.1 + torch.sqrt(0.01 + 39.8 * big_l)) / 9.95, "the quadratic formula divides by 2 * 9.95"),
        ((-0.1 + torch.sqrt(0.01 + 39.8 * torch.log1p(snr))) / 19.9,
         "you used 1 - a (the noise variance) where alphas_cumprod belongs: a = SNR / (1 + SNR)"),
    ]
    diff = _compare(got, expected, what="levels", variants=variants, nan_hint=nan_hint, atol=1e-6, rtol=1e-5)
    # The round trip through minimagen's schedule: the condition at these levels has the asked SNR.
    a_back = GaussianDiffusion("linear", 1000).continuous_alphas_cumprod(got.detach()).double()
    worst = float((a_back / (1 - a_back) / snr - 1).abs().max())
    if not math.isfinite(worst) or worst > 1e-3:
        raise _Failed(f"at your levels minimagen's linear schedule gives an SNR off by up to {worst:.2g} (relative)")
    return _passed(diff, " (and the SNR of those levels, read back from the linear schedule, is the asked one)",
                   against="the reference")
