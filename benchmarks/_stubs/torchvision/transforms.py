"""The three torchvision.transforms names the original MinImagen imports (see __init__.py)."""
import numpy as np
import torch
from PIL import Image


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class ToTensor:
    """PIL image / HWC uint8 array -> (c, h, w) float tensor in [0, 1]."""

    def __call__(self, pic):
        a = np.asarray(pic)
        if a.ndim == 2:
            a = a[:, :, None]
        t = torch.from_numpy(a.copy()).permute(2, 0, 1)
        return t.float().div(255) if t.dtype == torch.uint8 else t.float()


class ToPILImage:
    """(c, h, w) float tensor in [0, 1] -> PIL image."""

    def __call__(self, pic):
        a = (pic.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
