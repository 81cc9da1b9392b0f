"""Static clipping and dynamic thresholding of the predicted clean image (notebook 03).

At every sampling step the model predicts x0, the clean image. Its pixels should lie in [-1, 1],
but with strong classifier-free guidance the prediction overshoots. Static clipping clamps each
pixel to [-1, 1], which flattens overshooting regions into saturated blobs. Dynamic thresholding
(Imagen, Saharia et al. 2022, section 2.3) instead picks, per image, s = the p-th percentile of
|x0|; if s > 1 it clamps to [-s, s] and divides by s, pulling the whole image back into range while
keeping its relative contrast:

    s = max(1, quantile(|x0|, p)),   x0 <- clamp(x0, -s, s) / s.
"""

import torch

# The percentile p of the original MinImagen, and of every model shipped here. (imagen-pytorch uses 0.95:
# a higher p lets more of the image stay saturated before it is scaled back.)
DYNAMIC_PERCENTILE = 0.9


def static_threshold(x0: torch.Tensor) -> torch.Tensor:
    """Clamp each pixel to [-1, 1]. x0: (b, c, h, w), any range."""
    return x0.clamp(-1.0, 1.0)


def dynamic_threshold(
    x0: torch.Tensor, percentile: float = DYNAMIC_PERCENTILE, max_value: float | None = None
) -> torch.Tensor:
    """Imagen's dynamic thresholding.

    x0: (b, c, h, w) predicted clean images, any range.
    percentile: p in (0, 1]; s is the p-quantile of |x0| over each image's pixels.
    max_value: optional upper cap on s (diffusers' `sample_max_value`), so one wild pixel cannot
        shrink the whole image towards grey.
    Returns (b, c, h, w) in [-1, 1]. Images already inside [-1, 1] come back unchanged, because
    s is never below 1.
    """
    if not 0.0 < percentile <= 1.0:
        raise ValueError(f"percentile must be in (0, 1], got {percentile}")
    flat = x0.detach().flatten(1).abs().float()
    s = torch.quantile(flat, percentile, dim=1).clamp(min=1.0)
    if max_value is not None:
        if max_value < 1.0:
            raise ValueError(f"max_value must be >= 1, got {max_value}")
        s = s.clamp(max=max_value)
    s = s.to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
    return torch.maximum(torch.minimum(x0, s), -s) / s
