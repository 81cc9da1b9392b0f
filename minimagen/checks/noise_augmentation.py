"""07 · Super-resolution and noise conditioning augmentation: exercise 7.1."""

import torch
import torch.nn.functional as F

from ..diffusion import GaussianDiffusion
from .common import _b, _call, _checker, _close, _compare, _Failed, _passed


@_checker
def check_noise_augmentation(fn):
    """Exercise 7.1. fn(images, low_size, high_size, noise_level, noise, schedule) -> (b, c, high, high)."""
    from ..Imagen import resize_image_to

    g = torch.Generator().manual_seed(8)
    images = torch.rand(4, 3, 16, 16, generator=g)  # in [0, 1], as they enter Imagen
    noise = torch.randn(4, 3, 16, 16, generator=g)
    levels = torch.tensor([0.0, 0.1, 0.3, 0.7])
    schedule = GaussianDiffusion("linear", 1000)  # Imagen's lowres_noise_schedule
    low_size, high_size = 8, 16

    def noised(upsampled, a_levels=None, sqrt=True):
        a = schedule.continuous_alphas_cumprod(levels) if a_levels is None else a_levels
        a = _b(a)
        return (a.sqrt() * upsampled + (1 - a).sqrt() * noise) if sqrt else (a * upsampled + (1 - a) * noise)

    normalised = images * 2 - 1
    upsampled = resize_image_to(resize_image_to(normalised, low_size), high_size)
    expected = schedule.q_sample_continuous(upsampled, levels, noise)
    got = _call(fn, images.clone(), low_size, high_size, levels.clone(), noise.clone(), schedule)

    up01 = resize_image_to(resize_image_to(images, low_size), high_size)
    plain = F.interpolate(F.interpolate(normalised, size=low_size, mode="bilinear", align_corners=False),
                          size=high_size, mode="bilinear", align_corners=False)
    variants = [
        (noised(up01) * 2 - 1, "normalise to [-1, 1] BEFORE adding noise: noising the [0, 1] image and then "
                               "normalising doubles the noise and shifts the image"),
        (noised(up01), "normalise the images to [-1, 1] first (images * 2 - 1)"),
        (noised(normalised), "you skipped the downsizing: the super-resolution stage sees the previous stage's "
                             "low_size image, upsampled back to high_size"),
        (noised(plain), "downsize with resize_image_to (bilinear, antialiased); plain interpolation aliases"),
        (noised(upsampled, 1 - levels), "the level is a time on the schedule: a = schedule.continuous_alphas_cumprod("
                                        "noise_level), not 1 - noise_level"),
        (noised(upsampled, sqrt=False), "missing sqrt: sqrt(a) * image + sqrt(1 - a) * noise"),
        (noised(upsampled, torch.ones(4)), "you added no noise: a = schedule.continuous_alphas_cumprod(noise_level)"),
        (upsampled + _b(levels) * noise, "noise the image along the schedule: sqrt(a) * image + sqrt(1 - a) * noise, "
                                         "a = schedule.continuous_alphas_cumprod(noise_level)"),
    ]
    if torch.is_tensor(got) and got.shape == expected.shape and got.dtype == expected.dtype:
        if not _close(got[0], upsampled[0], 1e-5, 1e-4) and _close(got[1:], expected[1:], 1e-5, 1e-4):
            raise _Failed("level 0 must give the clean upsampled image back (image 0 has noise_level 0)")
    diff = _compare(got, expected, what="augmented low-res image", variants=variants)
    return _passed(diff)
