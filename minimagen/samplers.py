"""Reverse steps: from x_t and a predicted clean image x0 to a less noisy x_s (notebook 02).

Both samplers jump from time t to an earlier time s (s = t - 1 for full ancestral sampling, or
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
"""

import torch

SAMPLERS = ("ddpm", "ddim")


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
