"""One image transform shared by every dataset: any PIL image -> (3, size, size) tensor in [0, 1].

The folder, Hugging Face and emoji datasets all go through `to_square_tensor`, so the same photo
gives the same tensor whichever way it was loaded. Steps:

1. undo EXIF rotation (phone photos are often stored sideways with a "rotate me" tag);
2. convert any mode to 8-bit RGB; transparent pixels become white, 16-bit greyscale is scaled
   down rather than clipped;
3. crop the largest centred square (never stretch: a stretched circle is an ellipse, and the
   model would learn that);
4. resize to `size` with LANCZOS, which antialiases when shrinking;
5. map bytes 0..255 to floats in [0, 1], the range `Imagen.forward` takes (see minimagen/images.py).
"""
import numpy as np
import torch
from PIL import Image, ImageOps


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an 8-bit RGB copy of a PIL image of any mode, EXIF rotation applied.

    Transparent areas are composited onto white (dropping alpha would reveal whatever colour the
    encoder left there, usually black). 16-bit greyscale ("I;16", "I") is divided by 257 so that
    65535 maps to 255; Pillow's own conversion would clip everything above 255 to white.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or image.mode == "I":
        # Mode "I" is 32-bit, but in practice it holds 16-bit greyscale (older Pillow loads such
        # PNGs as "I"). Scale 0..65535 down to 0..255.
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        # Float images come either in [0, 1] or in [0, 255]; guess from the maximum.
        pixels = np.asarray(image, dtype=np.float64)
        if pixels.max(initial=0.0) <= 1.0:
            pixels = pixels * 255.0
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("RGB")


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Crop the largest centred square of an RGB image and resize it to (size, size).

    The crop and the resize happen in one `resize(box=...)` call; `reducing_gap` lets Pillow
    shrink big photos by an integer factor first, which is much faster and looks the same.
    """
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    box = (left, top, left + side, top + side)
    return image.resize((size, size), Image.LANCZOS, box=box, reducing_gap=3.0)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image (h, w) -> float32 tensor (3, h, w) in [0, 1]."""
    pixels = np.array(image.convert("RGB"), dtype=np.uint8)  # (h, w, 3), a writable copy
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0


def to_square_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """Any PIL image -> float32 tensor (3, size, size) in [0, 1]: RGB, centre-cropped, resized."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int (pixels per side), got {size!r}")
    return to_tensor(center_crop_resize(to_rgb(image), size))
