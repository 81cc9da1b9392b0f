"""01 · Noise schedules: exercises 1.1-1.3."""

import math

import torch

from ..schedules import MAX_BETA, beta_schedule, cosine_alphas_cumprod, linear_alphas_cumprod
from .common import _b, _call, _checker, _compare, _passed, _schedule_inputs


@_checker
def check_cosine_alphas_cumprod(fn):
    """Exercise 1.1. fn(tau) -> alphas_cumprod of the cosine schedule at continuous times tau (float64)."""
    tau = torch.linspace(0, 1, 21, dtype=torch.float64).view(3, 7)
    expected = cosine_alphas_cumprod(tau)
    got = _call(fn, tau.clone())
    s = 0.008
    f = torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    variants = [
        (f, "alphas_cumprod(0) must be exactly 1: divide f(tau) by f(0)"),
        (lambda: (torch.cos((tau + s) / (1 + s) * math.pi / 2) / math.sqrt(f0)),
         "missing the square: f(tau) = cos(...) ** 2"),
        (torch.cos(tau * math.pi / 2) ** 2, "you left out the offset s: use (tau + s) / (1 + s)"),
        (lambda: torch.cos((tau + s) * math.pi / 2) ** 2 / math.cos(s * math.pi / 2) ** 2,
         "divide (tau + s) by (1 + s), so that the curve reaches 0 exactly at tau = 1"),
        (torch.cos((tau + s) / (1 + s)) ** 2 / math.cos(s / (1 + s)) ** 2, "the angle is ((tau + s) / (1 + s)) * pi / 2"),
    ]
    diff = _compare(got, expected, what="alphas_cumprod", variants=variants, atol=1e-6, rtol=1e-5)
    return _passed(diff)


@_checker
def check_beta_schedule(fn):
    """Exercise 1.2. fn(curve, timesteps) -> betas (timesteps,) float64, read off the curve alphas_cumprod(tau)."""
    worst = 0.0
    for name, curve, steps in (("cosine", cosine_alphas_cumprod, 10), ("linear", linear_alphas_cumprod, 25),
                               ("cosine", cosine_alphas_cumprod, 1)):
        expected = beta_schedule(name, steps)
        got = _call(fn, curve, steps)
        taus = torch.arange(steps + 1, dtype=torch.float64) / steps
        ac = curve(taus)

        def shape_hint(got, steps=steps):
            if got.ndim == 1 and got.shape[0] == steps - 1:
                return ("evaluate the curve at the T + 1 times tau = 0, 1/T, ..., 1 "
                        "(torch.arange(T + 1) / T): T + 1 values give T ratios")
            if got.ndim == 1 and got.shape[0] == steps + 1:
                return "beta_t compares neighbouring values of alphas_cumprod, so T + 1 values give T betas"
            return None

        variants = [
            (ac[1:], "you returned alphas_cumprod itself: beta_t = 1 - alphas_cumprod_t / alphas_cumprod_{t-1}"),
            (ac[1:] / ac[:-1], "you returned alphas = 1 - beta: return betas = 1 - alphas_cumprod_t / alphas_cumprod_{t-1}"),
            ((1 - ac[1:]).clamp(1e-8, MAX_BETA),
             "1 - alphas_cumprod_t is the variance after ALL t steps, not one step's beta: divide by alphas_cumprod_{t-1}"),
            (1 - ac[1:], "1 - alphas_cumprod_t is the variance after ALL t steps, not one step's beta: "
                         "divide by alphas_cumprod_{t-1}"),
            (1 - ac[1:] / ac[:-1], f"forgot to clamp: the last cosine beta is 1, which makes 1/sqrt(alpha) infinite; "
                                   f"clamp betas to [1e-8, MAX_BETA = {MAX_BETA}]"),
        ]
        diff = _compare(got, expected, what=f"betas ({name} curve, timesteps={steps})", variants=variants,
                        atol=1e-6, rtol=1e-5, shape_hint=shape_hint)
        worst = max(worst, diff)
    return _passed(worst, " for the cosine and linear curves")


@_checker
def check_q_sample(fn):
    """Exercise 1.3. fn(x_start, t, noise, schedule) -> x_t, (b, c, h, w)."""
    schedule, x_start, noise = _schedule_inputs()
    t = torch.tensor([0, 10, 57, 99])
    expected = schedule.q_sample(x_start, t, noise)
    got = _call(fn, x_start.clone(), t.clone(), noise.clone(), schedule)
    ac, alphas = schedule.alphas_cumprod, schedule.alphas

    def mix(a, b):  # a * x_start + b * noise, a and b (b,)
        return _b(a) * x_start + _b(b) * noise

    a = ac[t]
    variants = [
        (mix(a, 1 - a), "missing sqrt: the coefficients are sqrt(alphas_cumprod_t) and sqrt(1 - alphas_cumprod_t) "
                        "(standard deviations, not variances)"),
        (mix(a.sqrt(), 1 - a), "missing sqrt on the noise: its coefficient is the standard deviation "
                               "sqrt(1 - alphas_cumprod_t), not the variance"),
        (mix(a, (1 - a).sqrt()), "missing sqrt on the image: its coefficient is sqrt(alphas_cumprod_t)"),
        (mix(alphas[t].sqrt(), (1 - alphas[t]).sqrt()),
         "you used alphas (one step) instead of alphas_cumprod (the product over all steps up to t)"),
        (mix(ac[t - 1].sqrt(), (1 - ac[t - 1]).sqrt()),
         "t is off by one: t is already the 0-based index, use alphas_cumprod[t]"),
        (mix((1 - a).sqrt(), a.sqrt()), "the two coefficients are swapped: sqrt(alphas_cumprod_t) multiplies x_start"),
        (mix(a.sqrt(), -(1 - a).sqrt()), "the noise is added, not subtracted"),
    ]
    diff = _compare(got, expected, what="x_t", variants=variants)
    return _passed(diff)
