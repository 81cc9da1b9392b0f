"""A folder of your own images with captions; item i -> (image (3, size, size) in [0, 1], caption).

Captions come from either (or both; metadata wins):

- `metadata.jsonl` in `root`, one JSON object per line, `{"file_name": "cat.png", "text": "a cat"}`
  ("caption" is accepted instead of "text"); file_name is relative to root and may include
  sub-folders. This is the Hugging Face `imagefolder` convention, so the same folder also loads
  with `datasets.load_dataset("imagefolder", data_dir=root)`.
- a text file beside each image with the same stem: `cat.png` + `cat.txt`.

Every image is decoded once in __init__, so a corrupt file is found now rather than crashing a
DataLoader worker an hour into training. Unusable files are skipped, listed in `.skipped` as
(path, reason) and summarised in one warning.
"""
import json
import warnings
from pathlib import Path

import torch
from PIL import Image

from .transforms import to_square_tensor

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CAPTION_KEYS = ("text", "caption")
SKIPS_SHOWN = 5  # skipped files named in the warning; dataset.skipped has them all


def _read_metadata(root, skipped):
    """metadata.jsonl -> {absolute image path: caption}; bad lines are added to skipped.

    The file is UTF-8, with or without a byte-order mark (Windows editors write one); another
    encoding is refused with a ValueError naming the file and the first line that is not UTF-8.
    """
    path = root / "metadata.jsonl"
    captions = {}
    if not path.is_file():
        return captions
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for number, data in enumerate(raw.splitlines(), start=1):
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{number} is not UTF-8 ({e.reason} at byte {e.start}); save metadata.jsonl "
                             f"as UTF-8") from e
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            skipped.append((where, f"bad metadata line: invalid JSON ({e})"))
            continue
        text = None
        if isinstance(entry, dict):
            text = next((entry[k] for k in CAPTION_KEYS if k in entry), None)
        if not isinstance(text, str) or not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
            skipped.append((where, 'bad metadata line: expected {"file_name": "<path>", "text": "<caption>"} '
                                   "with both strings"))
            continue
        captions[(root / entry["file_name"]).resolve()] = text.strip()
    return captions


def _check_image(path, size):
    """Decode an image fully; returns None if fine, else the reason it cannot be used."""
    try:
        with Image.open(path) as image:
            # JPEGs can be decoded at a reduced scale (1/2 .. 1/8), which is much faster and
            # still reads the whole file, so truncation is still caught.
            image.draft("RGB", (size, size))
            image.load()
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return f"unreadable image: {type(e).__name__}: {e}"
    return None


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images under `root` (searched recursively) with captions; see the module docstring.

    Attributes: samples (list of (Path, caption)), skipped (list of (path str, reason)).
    Images of any mode and shape are made RGB, centre-cropped to a square and resized to `size`
    by `to_square_tensor`.
    """

    def __init__(self, root, size=64):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int (pixels per side), got {size!r}")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ValueError(f"root={str(root)!r} is not a folder; expected a folder of images "
                             f"with captions in metadata.jsonl or .txt files")
        self.root, self.size = root, size
        self.skipped = []
        from_metadata = _read_metadata(root, self.skipped)

        image_paths = sorted(p for p in root.rglob("*")
                             if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        on_disk = {p.resolve() for p in image_paths}
        for listed in from_metadata:
            if listed not in on_disk:
                reason = "missing file: listed in metadata.jsonl, not on disk"
                self.skipped.append((str(listed), reason))

        self.samples = []
        for path in image_paths:
            caption = from_metadata.get(path.resolve())
            txt = path.with_suffix(".txt")
            if caption is None and txt.is_file():
                caption = txt.read_text(encoding="utf-8", errors="replace").strip()
            if not caption:
                reason = "no caption: none in metadata.jsonl nor a .txt beside it"
                self.skipped.append((str(path), reason))
                continue
            problem = _check_image(path, size)
            if problem:
                self.skipped.append((str(path), problem))
                continue
            self.samples.append((path, caption))

        if self.skipped:
            reasons = {}
            for _, reason in self.skipped:
                kind = reason.split(":")[0]  # every reason starts with its kind
                reasons[kind] = reasons.get(kind, 0) + 1
            summary = ", ".join(f"{n} {kind}" for kind, n in reasons.items())
            shown = "; ".join(f"{where} ({reason})" for where, reason in self.skipped[:SKIPS_SHOWN])
            more = f"; and {len(self.skipped) - SKIPS_SHOWN} more" if len(self.skipped) > SKIPS_SHOWN else ""
            warnings.warn(f"ImageFolderDataset(root={str(root)!r}): skipped {len(self.skipped)} "
                          f"({summary}): {shown}{more}. dataset.skipped lists every path and reason", stacklevel=2)
        if not self.samples:
            raise ValueError(
                f"root={str(root)!r} holds no usable images. Expected image files "
                f"({', '.join(IMAGE_EXTENSIONS)}) with captions, either in metadata.jsonl "
                f'(one {{"file_name": ..., "text": ...}} per line) or in a .txt file with the '
                f"same name beside each image."
            )

    def __len__(self):
        return len(self.samples)

    def caption(self, i):
        return self.samples[i][1]

    def captions(self):
        return [caption for _, caption in self.samples]

    def __getitem__(self, i):
        path, caption = self.samples[i]
        with Image.open(path) as image:
            return to_square_tensor(image, self.size), caption
