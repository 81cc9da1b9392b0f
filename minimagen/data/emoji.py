"""Emoji of the Noto Color Emoji font, captioned with their Unicode names.

About 1,300 small, colourful, varied pictures with short captions ("red apple", "sailboat"): a
step up from shapes that needs no download. Item i -> (image (3, size, size) float in [0, 1],
caption str).

The package ships every emoji already rendered at 64 px (emoji_atlas/, made from Debian 12's font
by tools/make_emoji_atlas.py, with the font's licence), so sizes up to 64 need no font and give
the same pixels on every machine. Larger sizes, or an explicit font_path=, render from the font.

Noto Color Emoji is a bitmap (CBDT) font: its glyphs are 136x128 PNGs, so FreeType only loads it
at the one size they were drawn for (109 px) and Pillow must be told to draw the colour bitmap
(`embedded_color=True`) onto an RGBA canvas.
"""
import functools
import json
import os
import shutil
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageDraw, ImageFont

from .transforms import to_square_tensor

# The shipped renderings: ATLAS_SIZE px tiles, COLUMNS a row (see tools/make_emoji_atlas.py).
ATLAS_DIR = Path(__file__).resolve().parent / "emoji_atlas"
ATLAS_SIZE = 64
COLUMNS = 40

# The only size a CBDT font can be opened at; other sizes raise "invalid pixel size".
NOTO_PIXEL_SIZE = 109

# Unicode blocks that hold single-code-point pictographs.
EMOJI_RANGES = (
    (0x2600, 0x26FF),    # Miscellaneous Symbols (sun, umbrella, snowman ...)
    (0x2700, 0x27BF),    # Dingbats (scissors, pencil ...)
    (0x1F300, 0x1F5FF),  # Miscellaneous Symbols and Pictographs
    (0x1F600, 0x1F64F),  # Emoticons
    (0x1F680, 0x1F6FF),  # Transport and Map Symbols
    (0x1F900, 0x1F9FF),  # Supplemental Symbols and Pictographs
    (0x1FA70, 0x1FAFF),  # Symbols and Pictographs Extended-A
)
# Glyphs the font draws but that are not pictures on their own: skin-tone swatches (modifiers).
EXCLUDED = set(range(0x1F3FB, 0x1F3FF + 1))

COMMON_FONT_PATHS = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",  # Debian, Ubuntu, Colab
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",  # Arch
    "/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf",  # Fedora
    "/usr/share/fonts/google-noto-color-emoji-fonts/NotoColorEmoji.ttf",  # newer Fedora
    "~/.fonts/NotoColorEmoji.ttf",
    "~/.local/share/fonts/NotoColorEmoji.ttf",
    "~/Library/Fonts/NotoColorEmoji.ttf",  # macOS, user-installed
    "/Library/Fonts/NotoColorEmoji.ttf",
)

INSTALL_HINT = (
    "Install it with `sudo apt-get install fonts-noto-color-emoji` (the same command works on "
    "Colab, as `!sudo apt-get install fonts-noto-color-emoji`), or pass font_path= pointing "
    "at NotoColorEmoji.ttf"
)


@functools.lru_cache(maxsize=None)
def load_atlas():
    """(tiles uint8 (n, ATLAS_SIZE, ATLAS_SIZE, 3), code points tuple, captions tuple), read once."""
    index = json.loads((ATLAS_DIR / f"emoji_{ATLAS_SIZE}.json").read_text())
    with Image.open(ATLAS_DIR / f"emoji_{ATLAS_SIZE}.webp") as image:
        pixels = np.asarray(image.convert("RGB"))
    n, s = len(index["codepoints"]), ATLAS_SIZE
    # (rows*s, COLUMNS*s, 3) -> (rows*COLUMNS, s, s, 3), then drop the blank tiles after the last emoji.
    tiles = rearrange(pixels, "(r h) (c w) ch -> (r c) h w ch", h=s, w=s)[:n]
    return tiles, tuple(index["codepoints"]), tuple(index["captions"])


def find_emoji_font():
    """Path of NotoColorEmoji.ttf from common locations or fontconfig; FileNotFoundError if none."""
    for path in COMMON_FONT_PATHS:
        path = os.path.expanduser(path)
        if os.path.isfile(path):
            return path
    if shutil.which("fc-match"):
        # fc-match always answers with *some* font, so check it really is the emoji one.
        try:
            out = subprocess.run(["fc-match", "-f", "%{file}", "Noto Color Emoji"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if "coloremoji" in os.path.basename(out).lower() and os.path.isfile(out):
            return out
    raise FileNotFoundError(f"Noto Color Emoji font not found. {INSTALL_HINT}.")


@functools.lru_cache(maxsize=None)
def _load_font(font_path):
    # Cached per path and never stored on the dataset, so the dataset pickles cleanly into
    # DataLoader workers.
    return ImageFont.truetype(font_path, NOTO_PIXEL_SIZE)


@functools.lru_cache(maxsize=None)
def usable_codepoints(font_path):
    """Code points in EMOJI_RANGES that have a Unicode name and that the font draws (non-empty).

    Scanning ~2,500 code points takes a fraction of a second; the result is cached per font path.
    """
    font = _load_font(font_path)
    found = []
    for first, last in EMOJI_RANGES:
        for cp in range(first, last + 1):
            ch = chr(cp)
            if cp in EXCLUDED or unicodedata.name(ch, None) is None:
                continue
            # Missing glyphs come back as an empty bitmap (no bounding box).
            if font.getmask(ch, mode="RGBA").getbbox() is not None:
                found.append(cp)
    return tuple(found)


def emoji_caption(cp):
    """Caption of a code point: its Unicode name lowercased (0x1F34E -> "red apple")."""
    return unicodedata.name(chr(cp)).lower()


def render_emoji(cp, font_path, margin=0.06):
    """Draw one emoji on white; returns a square RGB PIL image (about 120 px a side).

    The glyph is cropped to its visible pixels and centred with `margin` (fraction of the side)
    of white around it, so every emoji fills the frame the same way.
    """
    font = _load_font(font_path)
    # Canvas a little larger than the 136x128 glyph bitmaps; transparent until drawn on.
    glyph = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(glyph).text((0, 0), chr(cp), font=font, embedded_color=True)
    bbox = glyph.getchannel("A").getbbox()
    if bbox is None:
        raise ValueError(f"the font at {font_path} draws nothing for U+{cp:04X}")
    glyph = glyph.crop(bbox)
    side = round(max(glyph.size) * (1 + 2 * margin))
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    offset = ((side - glyph.width) // 2, (side - glyph.height) // 2)
    canvas.alpha_composite(glyph, offset)
    return canvas.convert("RGB")


class EmojiDataset(torch.utils.data.Dataset):
    """Emoji on white; item i -> (image (3, size, size) float in [0, 1], caption str).

    Sizes up to 64 read the shipped renderings (no font needed, the same pixels everywhere).
    font_path: NotoColorEmoji.ttf to render from instead (needed for sizes above 64; found
    automatically there when None). include_names: optional list of captions ("red apple", ...)
    to keep only those emoji; ValueError lists any not found.
    Attributes: codepoints (tuple of ints) and names (their captions), in code point order.
    """

    def __init__(self, size=64, font_path=None, include_names=None):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int (pixels per side), got {size!r}")
        self.size = size
        self.font_path = None
        if font_path is None and size <= ATLAS_SIZE:
            _, codepoints, names = load_atlas()
        else:
            if font_path is None:
                try:
                    font_path = find_emoji_font()
                except FileNotFoundError as e:
                    raise FileNotFoundError(f"EmojiDataset(size={size}) renders from the font: the shipped "
                                            f"emoji are {ATLAS_SIZE} px. {e}") from None
            elif not os.path.isfile(os.path.expanduser(str(font_path))):
                raise FileNotFoundError(f"font_path={str(font_path)!r} does not exist. {INSTALL_HINT}.")
            self.font_path = os.path.abspath(os.path.expanduser(str(font_path)))
            codepoints = usable_codepoints(self.font_path)
            names = tuple(emoji_caption(cp) for cp in codepoints)
        self._tile = {cp: i for i, cp in enumerate(codepoints)}  # code point -> atlas tile
        if include_names is not None:
            by_name = dict(zip(names, codepoints))
            missing = [n for n in include_names if n not in by_name]
            if missing:
                raise ValueError(f"include_names has names with no usable emoji: {missing[:10]}; "
                                 f"names are lowercased Unicode names like 'red apple'")
            codepoints, names = tuple(by_name[n] for n in include_names), tuple(include_names)
        if not codepoints:
            raise ValueError(f"no usable emoji found in font_path={self.font_path!r}")
        self.codepoints = tuple(codepoints)
        self.names = list(names)

    def __len__(self):
        return len(self.codepoints)

    def caption(self, i):
        return self.names[i]

    def captions(self):
        return list(self.names)

    def __getitem__(self, i):
        if self.font_path is None:
            image = Image.fromarray(load_atlas()[0][self._tile[self.codepoints[i]]])
        else:
            image = render_emoji(self.codepoints[i], self.font_path)
        return to_square_tensor(image, self.size), self.names[i]
