"""Coloured shapes on coloured backgrounds: a text-to-image task small enough to train on a CPU.

Every caption is exactly

    a <colour> <shape> on a <colour> background            (size_words=False)
    a <small|large> <colour> <shape> on a <colour> background   (size_words=True)

with 8 colours and 3 shapes, so there are 8 * 3 * 7 = 168 (fg, shape, bg) combinations
(foreground never equals background). Images are drawn on the fly: item i of a dataset with a
given seed is always the same picture, so no files are needed and every run sees the same data.

`HELD_OUT` is a fixed set of 16 combinations that training never sees. A model that draws
"a red circle on a yellow background" well, having seen red things, circles and yellow
backgrounds only in other combinations, is composing words rather than memorising captions.
`held_out_dataset()` yields only those combinations, for evaluation.

`score_image` checks a picture against its caption with pixel statistics alone (no classifier),
so samples can be graded cheaply: background colour, foreground colour, and roughly the shape.
"""
import random
import re

import numpy as np
import torch
from PIL import Image, ImageDraw

from .transforms import to_tensor

# Palette: name -> RGB. Chosen far apart so the nearest-colour rule in score_image is reliable.
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 50, 180),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")

# The shape's extent (diameter / side / triangle base and height) as a fraction of the image side.
# 35% is still ~11 px at 32 px; 75% leaves background around it. "small" and "large" are two bands
# with a gap between them, so a size word never labels two nearly equal sizes differently.
EXTENTS = {"small": (0.35, 0.50), "large": (0.60, 0.75)}

# Drawing at 4x and box-downsampling gives antialiased edges (PIL's drawing has none).
SUPERSAMPLE = 4

# 16 of the 168 combinations (~10%), each colour exactly twice as foreground and twice as
# background, no (fg, bg) pair twice. Found once by walking a random.Random(0) shuffle of
# all_combinations() and keeping a triple while its fg and bg were used fewer than twice;
# written out literally so it can never change under us.
HELD_OUT = (
    ("red", "circle", "yellow"),
    ("red", "triangle", "green"),
    ("green", "square", "blue"),
    ("green", "square", "orange"),
    ("blue", "circle", "green"),
    ("blue", "square", "yellow"),
    ("yellow", "square", "orange"),
    ("yellow", "triangle", "white"),
    ("purple", "circle", "white"),
    ("purple", "triangle", "black"),
    ("orange", "circle", "red"),
    ("orange", "square", "black"),
    ("white", "square", "purple"),
    ("white", "triangle", "blue"),
    ("black", "circle", "red"),
    ("black", "square", "purple"),
)

_NAMES = "|".join(COLOURS)
CAPTION_RE = re.compile(
    rf"^a (?:(small|large) )?({_NAMES}) ({'|'.join(SHAPES)}) on a ({_NAMES}) background$"
)


def all_combinations():
    """All 168 (fg, shape, bg) triples with fg != bg, in a fixed order."""
    return [(fg, shape, bg) for fg in COLOURS for shape in SHAPES for bg in COLOURS if fg != bg]


def make_caption(fg, shape, bg, size_word=None):
    """("red", "circle", "blue", "small") -> "a small red circle on a blue background"."""
    size = f"{size_word} " if size_word else ""
    return f"a {size}{fg} {shape} on a {bg} background"


def parse_caption(caption):
    """"a [small|large] <fg> <shape> on a <bg> background" -> (fg, shape, bg); else ValueError."""
    match = CAPTION_RE.match(caption) if isinstance(caption, str) else None
    if match is None:
        raise ValueError(
            f"caption must look like 'a [small|large] <colour> <shape> on a <colour> background' "
            f"with colours {list(COLOURS)} and shapes {list(SHAPES)}; got {caption!r}"
        )
    _, fg, shape, bg = match.groups()
    return fg, shape, bg


def render_shape(fg, shape, bg, size, cx, cy, r):
    """Draw one shape; returns an RGB PIL image of (size, size).

    cx, cy: centre as fractions of the side, in [0, 1]; r: half the extent, as a fraction of the
    side (a circle of radius r, a square of side 2r, a triangle of base and height 2r pointing up).
    Fractions rather than pixels so the same item looks the same at every resolution.
    """
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    if fg not in COLOURS or bg not in COLOURS:
        raise ValueError(f"fg and bg must be in {list(COLOURS)}, got fg={fg!r}, bg={bg!r}")
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), COLOURS[bg])
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = ((cx - r) * big, (cy - r) * big, (cx + r) * big, (cy + r) * big)
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=COLOURS[fg])
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=COLOURS[fg])
    else:  # triangle: apex at the top centre, base along the bottom; fills half its bounding box
        draw.polygon([(cx * big, y0), (x1, y1), (x0, y1)], fill=COLOURS[fg])
    return image.resize((size, size), Image.BOX)


class ShapesDataset(torch.utils.data.Dataset):
    """Procedurally drawn shapes; item i -> (image (3, size, size) float in [0, 1], caption str).

    Reproducible: item i depends only on (seed, i), through its own random.Random, so the data is
    the same in every process and DataLoader worker. Combinations in `exclude` (default HELD_OUT)
    never appear; `include`, if given, lists the only combinations that may appear and overrides
    `exclude` (use `held_out_dataset()` for the held-out ones).
    """

    def __init__(self, size=64, length=10_000, seed=0, size_words=False, exclude=HELD_OUT,
                 include=None):
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int >= 8 (pixels per side), got {size!r}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        valid = set(all_combinations())
        if include is not None:
            combos = [tuple(c) for c in include]
            bad = [c for c in combos if c not in valid]
            if bad:
                raise ValueError(f"include must hold (fg, shape, bg) triples with fg != bg from "
                                 f"COLOURS and SHAPES; these are not: {bad[:5]}")
        else:
            excluded = {tuple(c) for c in exclude}
            combos = [c for c in all_combinations() if c not in excluded]
        if not combos:
            raise ValueError("include/exclude leave no (fg, shape, bg) combination to draw")
        self.size, self.length, self.seed, self.size_words = size, length, seed, size_words
        self.combinations = combos

    def __len__(self):
        return self.length

    def params(self, i):
        """The random choices behind item i: dict of fg, shape, bg, cx, cy, r, size_word."""
        i = int(i)  # numpy and tensor indices too: random.Random only takes plain ints
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for ShapesDataset of length {self.length}")
        # A private generator per item: no global RNG state, same answer in every process.
        rng = random.Random(self.seed * 1_000_003 + i)
        fg, shape, bg = rng.choice(self.combinations)
        size_word = rng.choice(("small", "large"))  # drawn even without size_words: same images
        r = rng.uniform(*EXTENTS[size_word]) / 2
        # Keep the whole shape inside the image.
        cx, cy = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
        return dict(fg=fg, shape=shape, bg=bg, cx=cx, cy=cy, r=r, size_word=size_word)

    def caption(self, i):
        """Caption of item i without drawing the image (cheap; used to warm the text cache)."""
        p = self.params(i)
        size_word = p["size_word"] if self.size_words else None
        return make_caption(p["fg"], p["shape"], p["bg"], size_word)

    def captions(self):
        """All captions, in index order."""
        return [self.caption(i) for i in range(self.length)]

    def __getitem__(self, i):
        p = self.params(i)
        image = render_shape(p["fg"], p["shape"], p["bg"], self.size, p["cx"], p["cy"], p["r"])
        return to_tensor(image), self.caption(i)


def held_out_dataset(size=64, length=1_000, seed=0, size_words=False):
    """A ShapesDataset drawing only the HELD_OUT combinations (for evaluation, never training)."""
    return ShapesDataset(size=size, length=length, seed=seed, size_words=size_words,
                         exclude=(), include=HELD_OUT)


# ---------------------------------------------------------------------------------------------
# Scoring a picture against its caption with pixel statistics.


def _nearest_colour(rgb):
    """Name of the palette colour closest (Euclidean, 0..255 RGB) to rgb."""
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], rgb)))


def _as_pixels(image):
    """PIL image or tensor (3, h, w) in [0, 1] -> float array (h, w, 3) in 0..255."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64)
    if isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] == 3:
        x = image.detach().float().cpu()
        if x.min() < -0.05:
            raise ValueError(
                f"score_image expects image values in [0, 1] (as data sets give and sample() returns); "
                f"got min {x.min().item():.2f}. For an image in the model's [-1, 1] pass (image + 1) / 2"
            )
        return x.clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float64) * 255.0
    raise ValueError(f"image must be a PIL image or a tensor (3, h, w) in [0, 1]; got "
                     f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}")


def _best_matching_shape(mask):
    """Name of the ideal shape (same area and centroid as the bool mask (h, w)) with best IoU."""
    ys, xs = np.nonzero(mask)
    area = len(xs)
    if area == 0:
        return None
    cx, cy = xs.mean(), ys.mean()
    y, x = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    radius = np.sqrt(area / np.pi)
    half_side = np.sqrt(area) / 2
    # Triangle of base = height = 2r (as render_shape draws it): area 2r^2, centroid 2/3 of the
    # way down from the apex, half-width growing by 1/2 per row below the apex.
    height = np.sqrt(2 * area)
    apex = cy - 2 * height / 3
    ideal = {
        "circle": (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2,
        "square": (np.abs(x - cx) <= half_side) & (np.abs(y - cy) <= half_side),
        "triangle": (y >= apex) & (y <= apex + height) & (np.abs(x - cx) <= (y - apex) / 2),
    }
    iou = {name: (m & mask).sum() / max((m | mask).sum(), 1) for name, m in ideal.items()}
    return max(iou, key=iou.get)


def score_image(image, caption):
    """Check an image against a shapes caption, without any model.

    image: PIL image or float tensor (3, h, w) in [0, 1]. caption: a ShapesDataset caption.
    Returns {"fg", "bg", "shape": the names read off the image (None when no foreground is
    found), "fg_ok", "bg_ok", "shape_ok", "joint_colour_ok": fg_ok and bg_ok}.

    How: the background is the median colour of the outer ring of pixels (the shape touches at
    most part of it). The foreground is the median of the pixels furthest from that background.
    Each is named by the nearest palette colour. The foreground mask is the pixels nearer the
    foreground colour than the background; the shape is whichever of an upright circle, square
    and triangle with the mask's area and centroid overlaps it best (intersection over union).
    """
    want_fg, want_shape, want_bg = parse_caption(caption)
    px = _as_pixels(image)
    h, w, _ = px.shape
    ring = max(1, min(h, w) // 16)
    border = np.concatenate([px[:ring].reshape(-1, 3), px[-ring:].reshape(-1, 3),
                             px[:, :ring].reshape(-1, 3), px[:, -ring:].reshape(-1, 3)])
    bg_rgb = np.median(border, axis=0)

    dist = np.linalg.norm(px - bg_rgb, axis=-1)  # (h, w): how unlike the background
    far = np.percentile(dist, 99)
    result = dict(fg=None, bg=_nearest_colour(bg_rgb), shape=None)
    # Closest two palette colours are ~80 apart; below ~40 there is no foreground to speak of.
    if far >= 40:
        fg_rgb = np.median(px[dist >= 0.5 * far], axis=0)
        result["fg"] = _nearest_colour(fg_rgb)
        # Which ideal shape, with the same area and centre as the foreground mask, overlaps the
        # mask best? Area and centroid are sums over many pixels, so noise barely moves them.
        mask = dist >= 0.5 * np.linalg.norm(fg_rgb - bg_rgb)
        result["shape"] = _best_matching_shape(mask)
    result["fg_ok"] = result["fg"] == want_fg
    result["bg_ok"] = result["bg"] == want_bg
    result["shape_ok"] = result["shape"] == want_shape
    result["joint_colour_ok"] = result["fg_ok"] and result["bg_ok"]
    return result
