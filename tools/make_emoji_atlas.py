#!/usr/bin/env python3
"""Render every emoji of the Noto Color Emoji font once, into the atlas the package ships.

    python tools/make_emoji_atlas.py            # needs the font (Debian: apt-get install fonts-noto-color-emoji)
    python tools/make_emoji_atlas.py --check    # the shipped atlas matches what this font renders

`EmojiDataset` reads the atlas, so emoji training works where the font cannot be installed (macOS,
Windows, Colab without apt) and every machine trains on the same pixels. Written to
minimagen/data/emoji_atlas/:

- emoji_64.webp: one 64 x 64 tile per emoji, row-major, COLUMNS tiles a row, lossless WebP
  (3.8 MB; PNG would be 4.7 MB). Each tile is exactly what rendering from the font gives at size 64.
- emoji_64.json: the code points and their captions in tile order, and the font they came from.
  Captions are stored rather than recomputed: older Pythons' `unicodedata` lacks newer emoji names.
- LICENSE: the font's licence (SIL Open Font License 1.1), which allows shipping renderings of it.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minimagen.data.emoji import (  # noqa: E402
    ATLAS_DIR, ATLAS_SIZE, COLUMNS, emoji_caption, find_emoji_font, render_emoji, usable_codepoints)
from minimagen.data.transforms import center_crop_resize  # noqa: E402

LICENCE = Path("/usr/share/doc/fonts-noto-color-emoji/copyright")  # Debian's copy of the OFL text


def render_atlas(font_path):
    """(atlas RGB PIL image, index dict) for every usable emoji of the font at font_path."""
    codepoints = usable_codepoints(font_path)
    rows = -(-len(codepoints) // COLUMNS)
    atlas = Image.new("RGB", (COLUMNS * ATLAS_SIZE, rows * ATLAS_SIZE), (255, 255, 255))
    for i, cp in enumerate(tqdm(codepoints, desc="rendering emoji", unit="emoji")):
        tile = center_crop_resize(render_emoji(cp, font_path), ATLAS_SIZE)
        atlas.paste(tile, ((i % COLUMNS) * ATLAS_SIZE, (i // COLUMNS) * ATLAS_SIZE))
    index = {"font": Path(font_path).name, "tile_size": ATLAS_SIZE, "columns": COLUMNS,
             "codepoints": list(codepoints), "captions": [emoji_caption(cp) for cp in codepoints]}
    return atlas, index


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped atlas, write nothing")
    args = parser.parse_args()
    atlas, index = render_atlas(find_emoji_font())
    image_path, index_path = ATLAS_DIR / f"emoji_{ATLAS_SIZE}.webp", ATLAS_DIR / f"emoji_{ATLAS_SIZE}.json"
    if args.check:
        shipped = json.loads(index_path.read_text())
        same = (shipped == index and np.array_equal(np.asarray(Image.open(image_path).convert("RGB")),
                                                     np.asarray(atlas)))
        print("the shipped emoji atlas matches this font" if same else "the shipped emoji atlas differs")
        sys.exit(0 if same else 1)
    ATLAS_DIR.mkdir(parents=True, exist_ok=True)
    atlas.save(image_path, "WEBP", lossless=True, quality=100, method=6)
    index_path.write_text(json.dumps(index, indent=0) + "\n")
    if LICENCE.is_file():
        shutil.copyfile(LICENCE, ATLAS_DIR / "LICENSE")
    print(f"{len(index['codepoints'])} emoji -> {image_path} ({image_path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
