"""Noise schedules: how much noise the forward process adds at each step (notebook 01).

The forward process turns an image x_0 into noise in T small Gaussian steps,

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I),

and composes into one jump from the clean image,

    q(x_t | x_0) = N(sqrt(alphas_cumprod_t) x_0, (1 - alphas_cumprod_t) I),
    alphas_cumprod_t = prod_{s <= t} (1 - beta_s).

We define each schedule by a continuous curve alphas_cumprod(tau) for tau in [0, 1] with
alphas_cumprod(0) = 1, and read the T discrete steps off it at tau = (t + 1) / T. This has two
payoffs over writing betas down directly:
- any number of steps T >= 1 works (the original's linear schedule scaled betas by 1000 / T and
  broke for T < 20, where beta would exceed 1);
- the same curve gives a noise level for any continuous tau, which noise conditioning
  augmentation uses for the low-resolution image (tau = 0 means no noise at all).
"""

import math

import torch
from torch import nn

SCHEDULES = ("linear", "cosine")

# Betas are kept away from 1 so that 1 / sqrt(alphas) and the posterior stay finite.
MAX_BETA = 0.999


def linear_alphas_cumprod(tau: torch.Tensor) -> torch.Tensor:
    """The DDPM linear schedule as a continuous curve.

    DDPM's betas go linearly from 1e-4 to 0.02 over 1000 steps, i.e. beta(tau) ~ (0.1 + 19.9 tau) / T.
    Integrating log(1 - beta) over the steps gives
        alphas_cumprod(tau) = exp(-(0.1 tau + 9.95 tau^2)),
    which matches DDPM's discrete values at T = 1000 to within 0.001 (absolute; the first-order
    integration drops a -beta^2/2 term, so the relative error grows to a few % at the last steps).

    tau: any shape, in [0, 1]. Returns the same shape, in (0, 1].
    """
    tau = torch.as_tensor(tau, dtype=torch.float64)
    return torch.exp(-(0.1 * tau + 9.95 * tau**2))


def cosine_alphas_cumprod(tau: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """The cosine schedule of Nichol & Dhariwal (2021): f(tau) / f(0),
    f(tau) = cos^2(((tau + s) / (1 + s)) * pi / 2).

    It destroys information more slowly than the linear schedule at the start, which helps at low
    resolution where every pixel matters. tau: any shape, in [0, 1]; returns values in [0, 1].
    """
    tau = torch.as_tensor(tau, dtype=torch.float64)
    f = torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return (f / f0).clamp(0.0, 1.0)


def alphas_cumprod_curve(name: str):
    """The continuous curve tau -> alphas_cumprod(tau) of the schedule called `name`."""
    if name == "linear":
        return linear_alphas_cumprod
    if name == "cosine":
        return cosine_alphas_cumprod
    raise ValueError(f"noise_schedule must be one of {SCHEDULES}, got {name!r}")


def beta_schedule(name: str, timesteps: int) -> torch.Tensor:
    """betas: (timesteps,) float64 in (0, MAX_BETA], for schedule `name` ('linear' or 'cosine')."""
    if not isinstance(timesteps, int) or isinstance(timesteps, bool) or timesteps < 1:
        raise ValueError(f"timesteps must be an integer >= 1, got {timesteps!r}")
    curve = alphas_cumprod_curve(name)
    taus = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    ac = curve(taus)
    # beta_t = 1 - alphas_cumprod(t) / alphas_cumprod(t - 1), so the product telescopes back.
    betas = 1 - ac[1:] / ac[:-1]
    return betas.clamp(1e-8, MAX_BETA)


def linear_beta_schedule(timesteps: int) -> torch.Tensor:
    """betas (timesteps,) float64 of the linear schedule."""
    return beta_schedule("linear", timesteps)


def cosine_beta_schedule(timesteps: int) -> torch.Tensor:
    """betas (timesteps,) float64 of the cosine schedule."""
    return beta_schedule("cosine", timesteps)


class NoiseSchedule(nn.Module):
    """A discrete schedule of T steps and every quantity derived from it, as float32 buffers.

    Buffers (all of shape (T,)): betas, alphas, alphas_cumprod, alphas_cumprod_prev,
    sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod, snr. (The posterior of a reverse step is
    computed from alphas_cumprod by `samplers.posterior`, for any jump t -> s.)
    Everything is computed in float64 and stored in float32. The buffers are not saved in a
    state dict: they are a pure function of (name, timesteps).
    """

    def __init__(self, name: str = "cosine", timesteps: int = 1000):
        super().__init__()
        self.name = name
        self.timesteps = timesteps
        betas = beta_schedule(name, timesteps)
        alphas = 1 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])

        values = dict(
            betas=betas,
            alphas=alphas,
            alphas_cumprod=alphas_cumprod,
            alphas_cumprod_prev=alphas_cumprod_prev,
            sqrt_alphas_cumprod=alphas_cumprod.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1 - alphas_cumprod).sqrt(),
            # Signal-to-noise ratio alpha_bar / (1 - alpha_bar): min-SNR loss weighting uses it.
            snr=alphas_cumprod / (1 - alphas_cumprod),
        )
        for key, value in values.items():
            self.register_buffer(key, value.float(), persistent=False)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, timesteps={self.timesteps}"

    def continuous_alphas_cumprod(self, tau: torch.Tensor) -> torch.Tensor:
        """alphas_cumprod at continuous times tau in [0, 1] (any shape, float32, tau's device)."""
        tau = torch.as_tensor(tau)
        return alphas_cumprod_curve(self.name)(tau.double().cpu()).float().to(tau.device)

    def time_to_tau(self, t: torch.Tensor) -> torch.Tensor:
        """Discrete step index t in 0..T-1 -> continuous time (t + 1) / T in (0, 1], float32."""
        return (t.float() + 1) / self.timesteps
