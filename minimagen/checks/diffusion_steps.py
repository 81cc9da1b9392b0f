"""02 · Forward and reverse diffusion: exercises 2.1-2.3 (the posterior, DDPM and DDIM steps)."""

import torch

from ..samplers import ddim_step, ddpm_step, posterior
from .common import _b, _call, _checker, _compare, _Failed, _passed, _schedule_inputs


def _step_inputs():
    """x_t, x0 (4, 3, 8, 8) and a_t, a_s (4,) for jumps t -> s, one of them the last step (s = -1, a_s = 1)."""
    schedule, x_t, x0 = _schedule_inputs()
    ac = schedule.alphas_cumprod
    t = torch.tensor([5, 20, 60, 99])
    s = torch.tensor([4, 10, 59, -1])
    a_t = ac[t]
    a_s = torch.where(s >= 0, ac[s.clamp(min=0)], torch.ones(()))
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(x_t.shape, generator=g)
    return x_t, x0.clamp(-1, 1), a_t, a_s, noise


def _posterior_parts(x_t, x0, a_t, a_s, beta=None):
    a_t, a_s = _b(a_t), _b(a_s)
    beta = 1 - a_t / a_s if beta is None else _b(beta)
    c1 = a_s.sqrt() * beta / (1 - a_t)
    c2 = (1 - beta).sqrt() * (1 - a_s) / (1 - a_t)
    return beta, c1, c2, beta * (1 - a_s) / (1 - a_t)


@_checker
def check_posterior(fn):
    """Exercise 2.1. fn(x_t, x0, a_t, a_s) -> (mean like x_t, var broadcastable to x_t) of q(x_s | x_t, x0)."""
    x_t, x0, a_t, a_s, _ = _step_inputs()
    mean_ref, var_ref = posterior(x_t, x0, a_t, a_s)
    got = _call(fn, x_t.clone(), x0.clone(), a_t.clone(), a_s.clone())
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise _Failed(f"return a pair (mean, var), got {type(got).__name__}"
                      + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
    mean, var = got
    beta, c1, c2, var_true = _posterior_parts(x_t, x0, a_t, a_s)
    A_t, A_s = _b(a_t), _b(a_s)
    wrong_beta = 1 - a_t
    wb, wc1, wc2, wvar = _posterior_parts(x_t, x0, a_t, a_s, beta=wrong_beta)
    mean_variants = [
        (c2 * x0 + c1 * x_t, "the two coefficients are swapped: posterior_mean_coef1 (with sqrt(a_s)) multiplies x0"),
        (c1 * x0 + (1 - beta) * (1 - A_s) / (1 - A_t) * x_t,
         "missing sqrt: x_t's coefficient has sqrt(1 - beta) = sqrt(alpha), not alpha"),
        (A_t.sqrt() * beta / (1 - A_t) * x0 + c2 * x_t, "x0's coefficient uses sqrt(a_s), not sqrt(a_t)"),
        (wc1 * x0 + wc2 * x_t, "beta of the jump t -> s is 1 - a_t / a_s, not 1 - a_t"),
    ]
    diff_mean = _compare(mean, mean_ref, what="mean", variants=mean_variants)
    if not torch.is_tensor(var):
        raise _Failed(f"var should be a torch.Tensor, got {type(var).__name__}")
    try:
        broadcast = torch.broadcast_shapes(var.shape, x_t.shape) == x_t.shape
    except RuntimeError:
        broadcast = False
    if not broadcast:
        raise _Failed(f"var must broadcast against x_t {tuple(x_t.shape)}: return it as (b, 1, 1, 1) "
                      f"(or like x_t), got {tuple(var.shape)}")
    var_variants = [
        (beta.expand_as(x_t), "that is beta, an upper bound; the posterior variance is beta (1 - a_s) / (1 - a_t)"),
        (var_true.sqrt().expand_as(x_t), "you returned the standard deviation; return the variance (no sqrt)"),
        (((1 - A_s) / (1 - A_t)).expand_as(x_t), "missing the factor beta: var = beta (1 - a_s) / (1 - a_t)"),
        (wvar.expand_as(x_t), "beta of the jump t -> s is 1 - a_t / a_s, not 1 - a_t"),
    ]
    diff_var = _compare(var.expand_as(x_t), var_ref.expand_as(x_t), what="var",
                        variants=var_variants)
    return _passed(max(diff_mean, diff_var), ": mean and var")


@_checker
def check_ddpm_step(fn):
    """Exercise 2.2. fn(x_t, x0, a_t, a_s, noise) -> x_s, one ancestral step (a sample of the posterior)."""
    x_t, x0, a_t, a_s, noise = _step_inputs()
    expected = ddpm_step(x_t, x0, a_t, a_s, noise)
    got = _call(fn, x_t.clone(), x0.clone(), a_t.clone(), a_s.clone(), noise.clone())
    mean, var = posterior(x_t, x0, a_t, a_s)
    variants = [
        (mean + var * noise, "scale the noise by the standard deviation sqrt(var), not by var"),
        (mean, "you returned the mean: add sqrt(var) * noise to sample the posterior"),
        (mean + noise, "the noise must be scaled by sqrt(var)"),
        (mean + _b(1 - a_t / a_s).sqrt() * noise, "the noise scale is sqrt of the posterior variance, not sqrt(beta)"),
    ]
    diff = _compare(got, expected, what="x_s", variants=variants)
    return _passed(diff)


@_checker
def check_ddim_step(fn):
    """Exercise 2.3. fn(x_t, x0, a_t, a_s) -> x_s, one deterministic DDIM step (eta = 0)."""
    x_t, x0, a_t, a_s, _ = _step_inputs()
    expected = ddim_step(x_t, x0, a_t, a_s)
    got = _call(fn, x_t.clone(), x0.clone(), a_t.clone(), a_s.clone())
    A_t, A_s = _b(a_t), _b(a_s)
    eps = (x_t - A_t.sqrt() * x0) / (1 - A_t).sqrt()
    variants = [
        (A_s.sqrt() * x0, "you dropped the noise direction: add sqrt(1 - a_s) * eps, with eps the noise x_t implies"),
        (x_t, "you returned x_t unchanged: re-noise x0 to the EARLIER level s, with a_s (not a_t)"),
        (A_s.sqrt() * x0 + (1 - A_s).sqrt() * (x_t - A_t.sqrt() * x0) / (1 - A_t),
         "missing sqrt: eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)"),
        (A_s.sqrt() * x0 + (1 - A_s) * eps, "missing sqrt: the noise coefficient is sqrt(1 - a_s)"),
        (A_s * x0 + (1 - A_s).sqrt() * eps, "missing sqrt: x0's coefficient is sqrt(a_s)"),
        (lambda: posterior(x_t, x0, a_t, a_s)[0],
         "that is the DDPM posterior mean; DDIM keeps the implied noise eps and re-scales it: "
         "x_s = sqrt(a_s) x0 + sqrt(1 - a_s) eps"),
    ]
    diff = _compare(got, expected, what="x_s", variants=variants)
    return _passed(diff)
