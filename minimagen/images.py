"""Images at the model's edge: the one range contract, resizing and cropping (notebooks 07-08).

Outside the model an image is a float tensor (b, 3, h, w) in [0, 1]: what data sets yield, what
`Imagen.forward` takes and what `Imagen.sample` returns. Inside, diffusion works in [-1, 1], so
that pure noise N(0, I) and a clean image have the same scale. `normalize` and `unnormalize` are
the only two places the range changes, once on the way in and once on the way out:

    x_model = 2 x_image - 1,        x_image = (x_model + 1) / 2.
"""

import torch
import torch.nn.functional as F


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(b, c, h, w) in [0, 1] -> the same in [-1, 1]."""
    return images * 2 - 1


def unnormalize(images: torch.Tensor) -> torch.Tensor:
    """(b, c, h, w) in [-1, 1] -> the same in [0, 1]."""
    return (images + 1) / 2


def resize_image_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """(b, c, h, w) -> (b, c, size, size); antialiased bilinear, so downsizing does not alias."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def random_crop(size: int, *images: torch.Tensor) -> tuple:
    """The same random size x size window of each image in every tensor: (b, c, h, w) each -> (b, c, size, size).

    One window per image (drawn from torch's global generator), shared across the tensors, so an
    image and its low-resolution condition stay aligned.
    """
    b, _, h, w = images[0].shape
    windows = list(zip(torch.randint(0, h - size + 1, (b,)).tolist(), torch.randint(0, w - size + 1, (b,)).tolist()))
    return tuple(torch.stack([x[i, :, top:top + size, left:left + size] for i, (top, left) in enumerate(windows)])
                 for x in images)


def to_pil(images: torch.Tensor) -> list:
    """(b, c, h, w) in [0, 1], c = 1 or 3 -> b PIL images (greyscale for c = 1), rounded to 8 bits."""
    from PIL import Image

    array = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a) for a in array]
