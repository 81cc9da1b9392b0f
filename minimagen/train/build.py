"""What a Trainer is built from, each a function of the config: the cascade, one AdamW and one
learning-rate schedule per U-Net, and the precision the forward passes run in."""

import math

import torch

from .. import t5
from ..Imagen import Imagen, default_sampling
from ..Unet import PRESETS as UNET_PRESETS
from ..utils import cpu_has_fast_bf16


def build_imagen(config) -> Imagen:
    """A freshly initialised cascade as the config describes it."""
    unets = []
    for i, name in enumerate(config.unets):
        kwargs = {"dim": config.unet_dims[i]} if config.unet_dims else {}
        unets.append(UNET_PRESETS[name](**kwargs))
    timesteps = (config.timesteps,) * len(unets)
    sampling = {**default_sampling(timesteps), "cond_scale": list(config.cond_scale)}  # what sample() will use
    return Imagen(unets, image_sizes=config.image_sizes, text_encoder_name=config.text_encoder,
                  text_embed_dim=t5.get_encoded_dim(config.text_encoder), timesteps=config.timesteps,
                  noise_schedules=config.noise_schedule, pred_objectives=config.pred_objective,
                  cond_drop_prob=config.cond_drop_prob, loss_type=config.loss_type,
                  min_snr_gamma=config.min_snr_gamma, random_crop_sizes=config.random_crop_sizes,
                  lowres_sample_noise_level=config.lowres_sample_noise_level, sampling=sampling)


def make_optimizer(unet: torch.nn.Module, config) -> torch.optim.AdamW:
    """AdamW for one U-Net; torch's fused kernel where this torch and device have one.

    The fused version updates every parameter in one pass instead of a handful of small ops per
    tensor: 10% less CPU time per training step of the Super-structure U-Net measured in
    benchmarks/README.md. Same maths.
    """
    settings = dict(lr=config.lr, betas=tuple(config.adam_betas), weight_decay=config.weight_decay)
    try:
        return torch.optim.AdamW(unet.parameters(), fused=True, **settings)
    except (RuntimeError, ValueError, TypeError):  # older torch on CPU, or a device without the kernel
        return torch.optim.AdamW(unet.parameters(), **settings)


def lr_multiplier(step: int, warmup: int, total: int, schedule: str) -> float:
    """Learning-rate factor for optimizer step `step` (0-based): linear warm-up, then constant or cosine to 0."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, config, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of a U-Net trained for `total` optimizer steps (see lr_multiplier)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, config.warmup_steps, total, config.lr_schedule))


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' | 'bf16' | 'no' -> 'bf16' (the forward passes run under bf16 autocast) or 'no' (fp32).

    auto picks bf16 where the hardware multiplies bf16 natively: a CUDA GPU that supports it, or a
    CPU with AMX or AVX512-BF16 (on such a CPU a shapes base step was 1.6x faster: benchmarks/README.md).
    """
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        native = cpu_has_fast_bf16()
    else:
        native = False
    if precision == "auto":
        return "bf16" if native else "no"
    if precision == "bf16" and not native:
        where = "this CPU has no bf16 instructions (AMX or AVX512-BF16), so bf16 would be emulated and slower" \
            if device.type == "cpu" else f"bf16 autocast is not supported on {device.type} here"
        raise ValueError(f"precision='bf16': {where}; use precision 'no' (fp32) or 'auto'")
    return precision
