"""Reverse steps: from x_t and a predicted clean image x0 to a less noisy x_s (notebook 02).

Every sampler jumps from time t to an earlier time s (s = t - 1 for full ancestral sampling, or
further for fewer steps), written with a_t = alphas_cumprod_t and a_s = alphas_cumprod_s (a_s = 1
at the end, s = -1, where the result is x0 itself).

Ancestral DDPM samples the true posterior q(x_s | x_t, x0) of the jump t -> s:
    beta = 1 - a_t / a_s
    mean = sqrt(a_s) beta / (1 - a_t) x0 + sqrt(1 - beta) (1 - a_s) / (1 - a_t) x_t
    var  = beta (1 - a_s) / (1 - a_t)

DDIM (Song et al. 2021) keeps the noise direction the model implied and re-scales it:
    eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)
    x_s = sqrt(a_s) x0 + sqrt(1 - a_s - sigma^2) eps + sigma z,    sigma = eta sqrt(var)
eta = 0 is deterministic; eta = 1 gives exactly the DDPM step above.

DPM-Solver++(2M) (Lu et al. 2022) reads deterministic DDIM as a first-order solver of the
probability-flow ODE in lambda = log(sqrt(a) / sqrt(1 - a)) (half the log signal-to-noise ratio),
with sigma = sqrt(1 - a) and h = lambda_s - lambda_t > 0:
    x_s = (sigma_s / sigma_t) x_t + (sqrt(a_s) - sqrt(a_t) sigma_s / sigma_t) D      (D = x0: DDIM)
It treats x0 as constant over the jump. 2M instead extrapolates x0 linearly in lambda from this
step's x0 and the previous step's x0_prev (made at lambda_prev = lambda_t - h_prev), r = h_prev / h:
    D = (1 + 1 / (2 r)) x0 - 1 / (2 r) x0_prev
which is second order for the price of one U-Net pass a step. The first step has no x0_prev and is
first order. So are the last two (sample_loop): the jump to a_s = 1 (lambda_s = inf, the clean
image) lands on x0 itself, as in diffusers' DPMSolverMultistepScheduler (final_sigmas_type='zero');
and the jump into t = 0, the plan's last time, which is nearly clean (lambda_0 = 5.0 on the cosine
schedule against 1.7 at t = 111 and 1.0 at t = 222): there h is five times h_prev at 10 steps and
the straight-line extrapolation of x0 overshoots (on the Gaussian toy of tests/test_samplers.py, 2M
with that step second order is worse than DDIM up to 25 steps; first order, its error is 2.6x smaller
than DDIM's at 10 steps and 100x at 25).

Noise level: sigma_t = sqrt(1 - a_t) in [0, 1], the standard deviation of the noise in
x_t = sqrt(a_t) x0 + sigma_t eps (0: clean, 1: pure noise), whatever the schedule. A guidance
interval (lo, hi) applies classifier-free guidance only at steps with lo <= sigma_t <= hi
(Kynkaanniemi et al. 2024); elsewhere one conditional U-Net pass does (half the work).
"""

import torch

SAMPLERS = ("ddpm", "ddim", "dpmpp_2m")


def sampling_timesteps(timesteps: int, steps: int | None = None) -> list[tuple[int, int]]:
    """Pairs (t, s) from t = T - 1 down to s = -1, using `steps` evenly spaced times (default all T)."""
    steps = timesteps if steps is None else steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1 or steps > timesteps:
        raise ValueError(f"steps must be an integer in 1..{timesteps} (the stage's timesteps), got {steps!r}")
    times = torch.linspace(timesteps - 1, 0, steps).round().long().tolist()
    times = list(dict.fromkeys(times))  # rounding can repeat a time; keep each once, in order
    return list(zip(times, times[1:] + [-1]))


def _view(a, x):
    """A scalar or (b,) tensor -> broadcastable against x (b, c, h, w)."""
    a = torch.as_tensor(a, dtype=x.dtype, device=x.device)
    return a.view(-1, *([1] * (x.ndim - 1))) if a.ndim else a


def posterior(x_t, x0, a_t, a_s):
    """Mean and variance of q(x_s | x_t, x0) for the jump t -> s. a_t, a_s: scalars or (b,)."""
    a_t, a_s = _view(a_t, x_t), _view(a_s, x_t)
    beta = 1 - a_t / a_s
    mean = a_s.sqrt() * beta / (1 - a_t) * x0 + (1 - beta).sqrt() * (1 - a_s) / (1 - a_t) * x_t
    var = beta * (1 - a_s) / (1 - a_t)
    return mean, var


def ddpm_step(x_t, x0, a_t, a_s, noise):
    """One ancestral step: a sample of q(x_s | x_t, x0). noise: like x_t, N(0, I)."""
    mean, var = posterior(x_t, x0, a_t, a_s)
    return mean + var.sqrt() * noise


def ddim_step(x_t, x0, a_t, a_s, noise=None, eta: float = 0.0):
    """One DDIM step; eta = 0 deterministic (noise unused), eta = 1 equals ddpm_step."""
    a_t_, a_s_ = _view(a_t, x_t), _view(a_s, x_t)
    eps = (x_t - a_t_.sqrt() * x0) / (1 - a_t_).sqrt()
    x_s = a_s_.sqrt() * x0
    if eta > 0:
        if noise is None:
            raise ValueError("noise (a tensor like x_t, N(0, I)) is required when eta > 0")
        _, var = posterior(x_t, x0, a_t, a_s)
        sigma2 = eta**2 * var
        return x_s + (1 - a_s_ - sigma2).clamp(min=0).sqrt() * eps + sigma2.sqrt() * noise
    return x_s + (1 - a_s_).sqrt() * eps


def noise_level(a_t):
    """sigma_t = sqrt(1 - a_t) in [0, 1]: the noise's standard deviation in x_t (see the module docstring)."""
    return (1 - torch.as_tensor(a_t, dtype=torch.float64)).sqrt()


def half_log_snr(a):
    """lambda = log(sqrt(a) / sqrt(1 - a)) = log(a / (1 - a)) / 2: DPM-Solver's time variable, increasing as noise falls."""
    return 0.5 * (torch.log(a) - torch.log1p(-a))


def dpmpp_2m_step(x_t, x0, a_t, a_s, x0_prev=None, a_prev=None):
    """One DPM-Solver++(2M) step t -> s (module docstring).

    x_t: (b, c, h, w); x0: (b, c, h, w) in [-1, 1], the (thresholded) prediction at t.
    x0_prev, a_prev: the previous step's prediction and its time's alphas_cumprod; None on the
        first step, which is then exactly a DDIM step. a_t, a_s, a_prev: scalars or (b,).
    Returns x_s like x_t; x0 itself when a_s = 1 (the last jump).
    """
    a_t_, a_s_ = _view(a_t, x_t), _view(a_s, x_t)
    if bool((a_s_ >= 1).all()):
        return x0  # sigma_s = 0: the jump to the clean image lands on x0, whatever D is
    sigma_t, sigma_s = (1 - a_t_).sqrt(), (1 - a_s_).sqrt()
    d = x0
    if x0_prev is not None:
        lam_t = half_log_snr(a_t_)
        h, h_prev = half_log_snr(a_s_) - lam_t, lam_t - half_log_snr(_view(a_prev, x_t))
        r = h_prev / h
        d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev
    return sigma_s / sigma_t * x_t + (a_s_.sqrt() - a_t_.sqrt() * sigma_s / sigma_t) * d


def check_guidance_interval(guidance_interval):
    """None, or (lo, hi) with 0 <= lo <= hi <= 1 (noise levels sigma_t) -> a tuple of floats or None."""
    if guidance_interval is None:
        return None
    try:
        lo, hi = (float(v) for v in guidance_interval)
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not 0 <= lo <= hi <= 1:
        raise ValueError("guidance_interval must be None or (lo, hi) with 0 <= lo <= hi <= 1, noise levels "
                         f"sigma_t = sqrt(1 - alphas_cumprod_t); got {guidance_interval!r}")
    return lo, hi


def guidance_at(cond_scale: float, a_t, guidance_interval=None) -> float:
    """The guidance scale of a step at alphas_cumprod a_t: cond_scale inside the interval (or with no
    interval), 1 (no guidance: one conditional pass) outside it."""
    if guidance_interval is None:
        return cond_scale
    lo, hi = guidance_interval
    return cond_scale if lo <= float(noise_level(a_t)) <= hi else 1.0


def sample_loop(x, denoise, alphas_cumprod, plan, sampler: str = "ddim", eta: float = 0.0, randn=None,
                callback=None):
    """The reverse process of one stage, from x_T to the clean image.

    x: (b, c, h, w), x_T ~ N(0, I). denoise(x_t, t) -> x0 (b, c, h, w) in [-1, 1], the model's
        (guided, thresholded) prediction of the clean image at integer time t.
    alphas_cumprod: (T,) of the stage's schedule. plan: the (t, s) pairs of sampling_timesteps
        (a list, or one wrapped in a progress bar: its length is needed).
    sampler: one of SAMPLERS. eta: DDIM's noise (ddim only). randn(): fresh N(0, I) like x, for
        ddpm and for ddim with eta > 0.
    callback(step, t, x_t, x0): after every step, with the x_t the model saw and its x0.
    Returns (b, c, h, w) in [-1, 1]: the last step's x0.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if eta and sampler != "ddim":
        raise ValueError(f"eta is DDIM's noise and applies to sampler='ddim' only, got eta={eta} with {sampler!r}")
    x0_prev = a_prev = None
    last = len(plan) - 1
    for step, (t, s) in enumerate(plan):
        x0 = denoise(x, t)
        a_t = alphas_cumprod[t]
        a_s = alphas_cumprod[s] if s >= 0 else torch.ones((), dtype=a_t.dtype, device=a_t.device)
        if s < 0:
            x_s = x0
        elif sampler == "ddpm":
            x_s = ddpm_step(x, x0, a_t, a_s, randn())
        elif sampler == "dpmpp_2m":
            first_order = step == last - 1  # the jump into t = 0: see the module docstring
            x_s = dpmpp_2m_step(x, x0, a_t, a_s, *((None, None) if first_order else (x0_prev, a_prev)))
            x0_prev, a_prev = x0, a_t
        else:
            x_s = ddim_step(x, x0, a_t, a_s, randn() if eta > 0 else None, eta)
        if callback is not None:
            callback(step, t, x, x0)
        x = x_s
    return x
