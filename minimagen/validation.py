"""Checks of what a caller hands the public entry points, before any work: one ValueError each, naming
the argument and what was expected.

`Imagen.forward` and `Imagen.sample` call `check_forward_args` / `check_sample_args` on their first
line with `locals()` (their arguments, by name); the command lines, the trainer and
`Imagen.from_pretrained` use the single checks (`check_device`, `check_seed`, ...). Each check says why in
one sentence rather than letting a wrong value run: a uint8 or [0, 255] image trains on garbage
without a word, a NaN guidance scale samples black pictures, a seed of 2.5 is silently truncated.
"""

import math
import numbers
import warnings

import torch

SEED_RANGE = (0, 2**64 - 1)  # what torch.Generator.manual_seed accepts without wrapping around
RANGE_TOLERANCE = 1e-3  # resizing can overshoot [0, 1] by rounding; a [-1, 1] or [0, 255] image cannot pass


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_images(images, name: str = "images", channels: int = 3, unit_range: bool = True) -> None:
    """images: a float tensor (b, channels, s, s) with finite values in [0, 1] ([-1, 1] if not unit_range)."""
    low, high = (0.0, 1.0) if unit_range else (-1.0, 1.0)
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != channels:
        got = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"{name} must be a (batch, {channels}, height, width) tensor, got {got}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [{low:g}, {high:g}], got dtype {images.dtype} "
                         f"(for 8-bit pixels: images.float() / 255)")
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"{name} must be square, got {images.shape[-2]}x{images.shape[-1]}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    lo, hi = images.min().item(), images.max().item()
    if lo < low - RANGE_TOLERANCE or hi > high + RANGE_TOLERANCE:
        hint = " (pixel values in [0, 255]? divide by 255)" if hi > 2 else \
            " (a [-1, 1] image? minimagen.images.unnormalize maps it to [0, 1])" if lo < -0.5 and unit_range else ""
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got values from {lo:.3g} to {hi:.3g}{hint}")


def check_device(device, name: str = "device") -> torch.device:
    """A device name or torch.device that exists on this machine, as a torch.device."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{name} must be a device name like cpu, cuda, cuda:1 or mps, got {device!r}") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name}: {device} does not exist here (this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s))")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"{name}: MPS is not available on this machine")
    return device


def check_seed(seed, name: str = "seed") -> None:
    """seed: None or an integer in SEED_RANGE."""
    if seed is None:
        return
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ValueError(f"{name} must be an integer from 0 to 2**64 - 1, got {seed!r}")


def check_cond_scale(cond_scale, name: str = "cond_scale") -> None:
    """cond_scale: None, a finite number, or a sequence of finite numbers (one per stage)."""
    if cond_scale is None:
        return
    values = list(cond_scale) if isinstance(cond_scale, (list, tuple)) else [cond_scale]
    if not values or not all(_is_number(v) and math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be a finite number or one per stage, got {cond_scale!r}")


def check_noise_level(level, name: str = "lowres_sample_noise_level") -> None:
    """level: None or a number in [0, 1]."""
    if level is not None and not (_is_number(level) and 0 <= level <= 1):
        raise ValueError(f"{name} must be a number in [0, 1] (0: no noise), got {level!r}")


def check_forward_args(args: dict) -> None:
    """The arguments of Imagen.forward (its locals() on entry): images of the stage's size and range."""
    imagen, images = args["self"], args["images"]
    with warnings.catch_warnings():  # forward() itself warns once about unet_number=0
        warnings.simplefilter("ignore")
        index = imagen._unet_index(args["unet_number"])
    check_images(images, "images", imagen.channels, imagen.auto_normalize_img)
    size = imagen.image_sizes[index]
    if images.shape[-1] < size:
        raise ValueError(f"images must be at least {size}x{size} for U-Net {index + 1} "
                         f"(image_sizes={imagen.image_sizes}), got {images.shape[-2]}x{images.shape[-1]}")
    embeds = args.get("text_embeds")
    if torch.is_tensor(embeds) and not torch.isfinite(embeds).all():
        raise ValueError("text_embeds holds NaN or infinite values")


def check_sample_args(args: dict) -> None:
    """The arguments of Imagen.sample (its locals() on entry): guidance, seed, device, noise level,
    steps, eta and the low-resolution images."""
    imagen = args["self"]
    check_cond_scale(args.get("cond_scale"))
    check_seed(args.get("seed"))
    if args.get("device") is not None:
        check_device(args["device"])
    check_noise_level(args.get("lowres_sample_noise_level"))
    steps = args.get("steps")
    if steps is not None:
        values = list(steps) if isinstance(steps, (list, tuple)) else [steps]
        if not values or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in values):
            raise ValueError(f"steps must be a positive integer or one per stage, got {steps!r}")
    eta = args.get("eta", 0.0)
    if not (_is_number(eta) and math.isfinite(eta) and eta >= 0):
        raise ValueError(f"eta must be a finite number >= 0 (0: deterministic DDIM), got {eta!r}")
    if args.get("lowres_images") is not None:
        check_images(args["lowres_images"], "lowres_images", imagen.channels, imagen.auto_normalize_img)
