"""03 · Dynamic thresholding: exercise 3.1 (the noise prediction that agrees with the thresholded x0)."""

import torch

from ..thresholding import dynamic_threshold
from .common import _b, _call, _checker, _compare, _passed, _schedule_inputs


@_checker
def check_thresholded_eps(fn):
    """Exercise 3.1. fn(x_t, eps, t, diffusion, percentile) -> eps (b, c, h, w) that implies the thresholded x0."""
    diffusion, x0, eps = _schedule_inputs()
    t = torch.tensor([3, 30, 70, 99])
    # An over-confident prediction: the x0 it implies overshoots [-1, 1] at every t (as strong guidance does).
    x_t = diffusion.q_sample(x0 * 2.5, t, eps)
    eps = eps + 0.5 * torch.randn(eps.shape, generator=torch.Generator().manual_seed(3))
    p = 0.9
    x0_hat = diffusion.predict_start_from_noise(x_t, t, eps)
    expected = diffusion.predict_noise_from_start(x_t, t, dynamic_threshold(x0_hat, p))
    got = _call(fn, x_t.clone(), eps.clone(), t.clone(), diffusion, p)

    def with_table(table, shift=0, sqrt=True, sign=1.0):
        a = _b(table[(t + shift).clamp(0, len(table) - 1)])
        ra, rb = (a.sqrt(), (1 - a).sqrt()) if sqrt else (a, 1 - a)
        x0_ = (x_t - sign * rb * eps) / ra
        return (x_t - sign * ra * dynamic_threshold(x0_, p)) / rb

    a = _b(diffusion.alphas_cumprod[t])
    variants = [
        (eps, "you returned eps unchanged: threshold the x0 it implies, then turn that x0 back into a noise"),
        (lambda: dynamic_threshold(x0_hat, p), "you returned the thresholded x0: turn it back into the noise it "
                                               "implies (the notebook 02 equation, solved for eps)"),
        (lambda: with_table(diffusion.alphas_cumprod, sqrt=False), "missing sqrt: the coefficients are sqrt(a_t) and "
                                                                   "sqrt(1 - a_t)"),
        (lambda: with_table(diffusion.alphas_cumprod, sign=-1.0), "wrong sign: x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps, "
                                                                  "so both inversions SUBTRACT"),
        (lambda: with_table(diffusion.alphas), "you used alphas (one step) where alphas_cumprod belongs"),
        (lambda: with_table(diffusion.alphas_cumprod, -1), "t is off by one: t is already the 0-based index"),
        (lambda: with_table(diffusion.alphas_cumprod, 1), "t is off by one: t is already the 0-based index"),
        (lambda: diffusion.predict_noise_from_start(x_t, t, x0_hat.clamp(-1, 1)),
         "that is static clipping of x0: use dynamic thresholding with the given percentile"),
        (lambda: (x_t - (1 - a).sqrt() * dynamic_threshold(x0_hat, p)) / a.sqrt(),
         "the coefficients of the second inversion are swapped: eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)"),
    ]
    diff = _compare(got, expected, what="eps", variants=variants)
    return _passed(diff, against="minimagen (predict_noise_from_start of dynamic_threshold of "
                                 "predict_start_from_noise)")
