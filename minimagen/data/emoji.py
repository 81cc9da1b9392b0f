"""Emoji rendered from the Noto Color Emoji font, captioned with their Unicode names.

A few thousand small, colourful, varied pictures with short captions ("red apple", "sailboat"):
a step up from shapes that still needs no download beyond a system font package. Item i ->
(image (3, size, size) float in [0, 1], caption str).

Noto Color Emoji is a bitmap (CBDT) font: its glyphs are 136x128 PNGs, so FreeType only loads it
at the one size they were drawn for (109 px) and Pillow must be told to draw the colour bitmap
(`embedded_color=True`) onto an RGBA canvas.
"""
import functools
import os
import shutil
import subprocess
import unicodedata

import torch
from PIL import Image, ImageDraw, ImageFont

from .transforms import to_square_tensor

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

    font_path: NotoColorEmoji.ttf; found automatically when None. include_names: optional list of
    captions ("red apple", ...) to keep only those emoji; ValueError lists any not found.
    Attributes: codepoints (tuple of ints) and names (their captions), in code point order.
    """

    def __init__(self, size=64, font_path=None, include_names=None):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int (pixels per side), got {size!r}")
        if font_path is None:
            font_path = find_emoji_font()
        elif not os.path.isfile(os.path.expanduser(str(font_path))):
            raise FileNotFoundError(f"font_path={str(font_path)!r} does not exist. {INSTALL_HINT}.")
        self.font_path = os.path.abspath(os.path.expanduser(str(font_path)))
        self.size = size
        codepoints = usable_codepoints(self.font_path)
        if include_names is not None:
            by_name = {emoji_caption(cp): cp for cp in codepoints}
            missing = [n for n in include_names if n not in by_name]
            if missing:
                raise ValueError(f"include_names has names with no usable emoji in this font: "
                                 f"{missing[:10]}; names are lowercased Unicode names like "
                                 f"'red apple'")
            codepoints = tuple(by_name[n] for n in include_names)
        if not codepoints:
            raise ValueError(f"no usable emoji found in font_path={self.font_path!r}")
        self.codepoints = codepoints
        self.names = [emoji_caption(cp) for cp in codepoints]

    def __len__(self):
        return len(self.codepoints)

    def caption(self, i):
        return self.names[i]

    def captions(self):
        return list(self.names)

    def __getitem__(self, i):
        image = render_emoji(self.codepoints[i], self.font_path)
        return to_square_tensor(image, self.size), self.names[i]
