"""Gaussian diffusion: forward noising, prediction targets and losses (notebook 02).

Forward (one jump from the clean image, reparameterised):
    x_t = sqrt(alphas_cumprod_t) x_0 + sqrt(1 - alphas_cumprod_t) eps,      eps ~ N(0, I)

The reverse process needs the posterior q(x_s | x_t, x_0) of a jump t -> s; samplers.py computes it.

A network can be trained to predict any of three equivalent targets, converted by the identities
    x_0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)                     ('eps', as in DDPM and Imagen)
    v   = sqrt(a_t) eps - sqrt(1 - a_t) x_0                           ('v', Salimans & Ho 2022)
where a_t = alphas_cumprod_t. Whatever it predicts, sampling only needs x_0.
"""

import torch
import torch.nn.functional as F

from .schedules import NoiseSchedule

OBJECTIVES = ("eps", "x0", "v")
LOSS_TYPES = ("l1", "l2", "huber")


def extract(values: torch.Tensor, t: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
    """values (T,), t (b,) long -> values[t] shaped (b, 1, 1, ...) to broadcast against x_shape."""
    out = values.gather(0, t)
    return out.view(t.shape[0], *([1] * (len(x_shape) - 1)))


class GaussianDiffusion(NoiseSchedule):
    """A noise schedule plus the operations of the forward process, the targets and the loss.

    Times `t` are integer step indices (b,) in 0..T-1; images x are (b, c, h, w).
    """

    def sample_random_times(self, batch_size: int, device=None, generator=None) -> torch.Tensor:
        """Uniform training times: (batch_size,) long in 0..T-1."""
        return torch.randint(0, self.timesteps, (batch_size,), device=device, generator=generator)

    # Forward process -------------------------------------------------------------------------

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None):
        """Sample x_t ~ q(x_t | x_0). x_start: (b, c, h, w); t: (b,) long. Returns x_t like x_start."""
        if noise is None:
            noise = torch.randn_like(x_start)
        return (
            extract(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise
        )

    def q_sample_continuous(self, x_start: torch.Tensor, tau: torch.Tensor, noise=None):
        """Noise x_start to continuous levels tau (b,) in [0, 1]; tau = 0 returns x_start exactly.

        Used for noise conditioning augmentation of the low-resolution image.
        """
        if noise is None:
            noise = torch.randn_like(x_start)
        a = self.continuous_alphas_cumprod(tau).to(x_start.dtype).view(-1, *([1] * (x_start.ndim - 1)))
        return a.sqrt() * x_start + (1 - a).sqrt() * noise

    # Conversions between eps, x0 and v --------------------------------------------------------

    def predict_start_from_noise(self, x_t, t, noise):
        """x_0 from x_t and eps."""
        a = extract(self.alphas_cumprod, t, x_t.shape)
        return (x_t - (1 - a).sqrt() * noise) / a.sqrt()

    def predict_noise_from_start(self, x_t, t, x_start):
        """eps from x_t and x_0."""
        a = extract(self.alphas_cumprod, t, x_t.shape)
        return (x_t - a.sqrt() * x_start) / (1 - a).sqrt()

    def predict_v(self, x_start, t, noise):
        """v = sqrt(a_t) eps - sqrt(1 - a_t) x_0."""
        a = extract(self.alphas_cumprod, t, x_start.shape)
        return a.sqrt() * noise - (1 - a).sqrt() * x_start

    def predict_start_from_v(self, x_t, t, v):
        """x_0 = sqrt(a_t) x_t - sqrt(1 - a_t) v."""
        a = extract(self.alphas_cumprod, t, x_t.shape)
        return a.sqrt() * x_t - (1 - a).sqrt() * v

    def model_output_to_start(self, model_output, x_t, t, objective: str = "eps"):
        """Whatever the network predicts (`objective`), return its implied x_0."""
        if objective == "eps":
            return self.predict_start_from_noise(x_t, t, model_output)
        if objective == "x0":
            return model_output
        if objective == "v":
            return self.predict_start_from_v(x_t, t, model_output)
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")

    def training_target(self, x_start, noise, t, objective: str = "eps"):
        """The tensor the network is trained to output for `objective`."""
        if objective == "eps":
            return noise
        if objective == "x0":
            return x_start
        if objective == "v":
            return self.predict_v(x_start, t, noise)
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")

    # Loss -------------------------------------------------------------------------------------

    def min_snr_weight(self, t: torch.Tensor, gamma: float, objective: str = "eps") -> torch.Tensor:
        """Min-SNR-gamma loss weights (Hang et al. 2023), (b,).

        Expressed as a weight on the x_0 error, min(snr, gamma) balances the timesteps; divided by
        the factor that turns x_0 error into the error of `objective` (snr for eps, snr + 1 for v).
        """
        snr = self.snr.gather(0, t)
        clipped = snr.clamp(max=gamma)
        if objective == "eps":
            return clipped / snr
        if objective == "v":
            return clipped / (snr + 1)
        return clipped

    def loss(self, model_output, target, t, loss_type: str = "l2", objective: str = "eps",
             min_snr_gamma: float | None = None) -> torch.Tensor:
        """Scalar loss: per-image mean of l1 / l2 / huber, optionally min-SNR weighted, then batch mean."""
        model_output = model_output.float()  # bf16 under autocast; the loss and its mean stay fp32
        if loss_type == "l1":
            per_pixel = F.l1_loss(model_output, target, reduction="none")
        elif loss_type == "l2":
            per_pixel = F.mse_loss(model_output, target, reduction="none")
        elif loss_type == "huber":
            per_pixel = F.smooth_l1_loss(model_output, target, reduction="none")
        else:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        per_image = per_pixel.flatten(1).mean(dim=1)
        if min_snr_gamma is not None:
            per_image = per_image * self.min_snr_weight(t, min_snr_gamma, objective)
        return per_image.mean()
