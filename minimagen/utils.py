"""Small helpers shared by training, sampling and the notebooks: seeds, devices, image grids.

    set_seed(0)                                  # python, numpy and torch in one call
    device = get_device()                        # cuda, else mps (torch >= 2.9), else cpu
    grid = image_grid(images, captions, nrow=4)  # images (b, 3, h, w) in [0, 1] -> one PIL image
    paths = save_images(images, "out/", ["a.png", "b.png"])
    with sigterm_as_ctrl_c() as stop: ...        # the command lines: SIGTERM stops them as Ctrl-C does

Model code never imports this module; it uses minimagen.images for the image range.
"""

import math
import random
import signal
import threading
import types
from contextlib import contextmanager
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from .images import to_pil

@contextmanager
def sigterm_as_ctrl_c():
    """Within it, SIGTERM raises KeyboardInterrupt as Ctrl-C (SIGINT) does: `docker stop`, Slurm and systemd
    send SIGTERM, and a command line should keep what it made either way.

    Yields a record whose `.signal` is SIGTERM's number once SIGTERM arrived (None otherwise), for the exit
    status 128 + signal. Handlers can only be installed from the main thread; elsewhere it does nothing.
    """
    record = types.SimpleNamespace(signal=None)

    def handle(signum, frame):
        record.signal = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handle) if threading.current_thread() is threading.main_thread() else None
    try:
        yield record
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# MPS (Apple GPUs) missed or mis-computed some of the ops we use in older PyTorch releases;
# from 2.9 it runs the whole model, so only then is it picked automatically.
MIN_TORCH_FOR_MPS = (2, 9)


def set_seed(seed: int) -> None:
    """Seed Python's `random`, NumPy (if installed) and torch (CPU and every CUDA device)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)  # NumPy only takes 32-bit seeds
    except ImportError:
        pass
    torch.manual_seed(seed)  # also seeds all CUDA devices


def _torch_version() -> tuple:
    """'2.9.1+cu121' -> (2, 9)."""
    try:
        return tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    except ValueError:  # a development build with an odd version string
        return (0, 0)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX or AVX512-BF16).

    There, bf16 autocast makes convolutions several times faster than fp32; elsewhere bf16 is
    emulated and slower than fp32. (torch only offers private probes for this; a torch without
    them is treated as lacking the instructions.)
    """
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    except Exception:
        return False


def get_device(verbose: bool = False) -> torch.device:
    """The best available device: CUDA, else MPS (torch >= 2.9), else CPU. Never raises."""
    device = torch.device("cpu")
    try:
        if torch.cuda.is_available():
            device = torch.device("cuda")
        elif (_torch_version() >= MIN_TORCH_FOR_MPS and getattr(torch.backends, "mps", None) is not None
              and torch.backends.mps.is_available()):
            device = torch.device("mps")
    except Exception:  # a broken driver must not stop anyone from running on the CPU
        device = torch.device("cpu")
    if verbose:
        name = torch.cuda.get_device_name(0) if device.type == "cuda" else device.type
        print(f"Using device: {device} ({name})")
    return device


# Images --------------------------------------------------------------------------------------


def to_pil_images(images) -> list:
    """A tensor (b, 3, h, w) or (3, h, w) in [0, 1], or a list of PIL images -> list of RGB PIL images."""
    if isinstance(images, Image.Image):
        return [images.convert("RGB")]
    if torch.is_tensor(images):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be a (batch, 3, height, width) tensor in [0, 1], "
                             f"got shape {tuple(images.shape)}")
        return to_pil(images.expand(-1, 3, -1, -1))
    images = list(images)
    if not all(isinstance(im, Image.Image) for im in images):
        raise ValueError("images must be a tensor (batch, 3, height, width) in [0, 1] or a list of PIL images")
    return [im.convert("RGB") for im in images]


def _wrap(text: str, font, width: int, draw) -> list:
    """Split `text` into lines no wider than `width` pixels (words longer than a line are cut)."""
    lines = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if draw.textlength(candidate, font=font) <= width or not line:
                line = candidate
            else:
                lines.append(line)
                line = word
            # A single word wider than the cell: cut it into pieces that fit.
            while draw.textlength(line, font=font) > width and len(line) > 1:
                cut = len(line) - 1
                while cut > 1 and draw.textlength(line[:cut], font=font) > width:
                    cut -= 1
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return lines


def image_grid(images, captions=None, nrow: int | None = None, min_size: int = 0, padding: int = 2,
               background=(255, 255, 255)) -> Image.Image:
    """Lay out images in a grid, each caption drawn under its image; returns one RGB PIL image.

    images: a tensor (b, 3, h, w) in [0, 1] or a list of b PIL images (all the same size).
    captions: None or b strings, wrapped to the image width with PIL's default font.
    nrow: images per row (default: ceil(sqrt(b))).
    min_size: small images are enlarged (nearest neighbour, so pixels stay visible) until their
        side is at least this, which also leaves room for a readable caption.
    """
    pils = to_pil_images(images)
    if not pils:
        raise ValueError("images must hold at least one image")
    if captions is not None:
        captions = [captions] if isinstance(captions, str) else list(captions)
        if len(captions) != len(pils):
            raise ValueError(f"captions must hold one caption per image: {len(captions)} for {len(pils)} images")
    w, h = pils[0].size
    if any(im.size != (w, h) for im in pils):
        raise ValueError("images must all have the same size")
    if min_size and min(w, h) < min_size:
        factor = math.ceil(min_size / min(w, h))
        w, h = w * factor, h * factor
        pils = [im.resize((w, h), Image.NEAREST) for im in pils]

    nrow = nrow or math.ceil(math.sqrt(len(pils)))
    rows = math.ceil(len(pils) / nrow)
    font = ImageFont.load_default()
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [_wrap(c, font, w - 2, scratch) for c in captions] if captions else [[] for _ in pils]
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (10, 2)
    line_height = ascent + descent + 1
    # Every cell gets room for the longest caption, so rows line up.
    text_height = max(len(lines) for lines in wrapped) * line_height + (4 if captions else 0)
    cell_w, cell_h = w + padding, h + text_height + padding

    grid = Image.new("RGB", (nrow * cell_w + padding, rows * cell_h + padding), background)
    draw = ImageDraw.Draw(grid)
    for i, (im, lines) in enumerate(zip(pils, wrapped)):
        x = padding + (i % nrow) * cell_w
        y = padding + (i // nrow) * cell_h
        grid.paste(im, (x, y))
        for j, line in enumerate(lines):
            draw.text((x + 1, y + h + 2 + j * line_height), line, fill=(0, 0, 0), font=font)
    return grid


def save_images(images, directory, filenames) -> list:
    """Save each image as its own file in `directory` (created); returns the paths written.

    images: a tensor (b, 3, h, w) in [0, 1] or b PIL images; filenames: b names like "0_cat.png".
    """
    pils = to_pil_images(images)
    filenames = list(filenames)
    if len(filenames) != len(pils):
        raise ValueError(f"filenames must hold one name per image: {len(filenames)} for {len(pils)} images")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for im, name in zip(pils, filenames):
        path = directory / name
        im.save(path)
        paths.append(path)
    return paths


def slugify(text: str, max_length: int = 60) -> str:
    """"A red circle, on blue!" -> "a-red-circle-on-blue": safe in file names on every system."""
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in text.lower())
    slug = "-".join(part for part in slug.split("-") if part)
    return slug[:max_length].rstrip("-") or "image"


__all__ = ["set_seed", "get_device", "image_grid", "save_images", "to_pil_images", "slugify"]
