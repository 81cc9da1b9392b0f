"""Hugging Face `datasets` wrappers: rows with an image and a caption -> (image, caption) samples.

    HFImageTextDataset(ds, ...)          for a map-style `datasets.Dataset` (random access)
    HFIterableImageTextDataset(ds, ...)  for a streamed `datasets.IterableDataset`

Both give (image (3, size, size) float in [0, 1], caption str), with images made square exactly
as ImageFolderDataset does (`to_square_tensor`). The image column may hold PIL images (what a
`datasets.Image` feature decodes to), dicts with "bytes" or "path" (an undecoded Image feature),
file paths or arrays (h, w[, c]) of uint8. A caption column holding a list of captions (as in
COCO) uses the first.
"""
import io

import numpy as np
import torch
from PIL import Image

from .transforms import to_square_tensor


def _to_pil(value):
    """Whatever an image column holds -> PIL image."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return Image.open(io.BytesIO(value["bytes"]))
        if value.get("path") is not None:
            return Image.open(value["path"])
    if isinstance(value, str):
        return Image.open(value)
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        return Image.fromarray(value)
    raise ValueError(f"cannot read an image from a {type(value).__name__}; expected a PIL image, "
                     f"a dict with 'bytes' or 'path', a file path or a uint8 array")


def _to_caption(value):
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return value if isinstance(value, str) else str(value)


def _check_columns(column_names, image_column, caption_column):
    """ValueError naming the argument when a column is missing (skipped when names are unknown)."""
    if column_names is None:  # some streamed datasets do not know their columns up front
        return
    for argument, column in (("image_column", image_column), ("caption_column", caption_column)):
        if column not in column_names:
            raise ValueError(f"{argument}={column!r} is not a column of this dataset; "
                             f"available columns: {list(column_names)}")


class HFImageTextDataset(torch.utils.data.Dataset):
    """Map-style wrapper of a `datasets.Dataset`; item i -> (image (3, s, s) in [0, 1], str)."""

    def __init__(self, dataset, image_column="image", caption_column="text", size=64):
        import datasets  # only needed by this module; keeps `import minimagen.data` light

        if isinstance(dataset, datasets.IterableDataset):
            raise ValueError("dataset is a streamed datasets.IterableDataset; wrap it with "
                             "HFIterableImageTextDataset instead")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int (pixels per side), got {size!r}")
        _check_columns(dataset.column_names, image_column, caption_column)
        if len(dataset) == 0:
            raise ValueError("dataset holds no rows (length 0); expected images with captions")
        self.dataset, self.size = dataset, size
        self.image_column, self.caption_column = image_column, caption_column

    def __len__(self):
        return len(self.dataset)

    def caption(self, i):
        return _to_caption(self.dataset[i][self.caption_column])

    def captions(self):
        # Reading only the caption column never decodes an image.
        return [_to_caption(c) for c in self.dataset[self.caption_column]]

    def __getitem__(self, i):
        row = self.dataset[int(i)]
        image = _to_pil(row[self.image_column])
        return to_square_tensor(image, self.size), _to_caption(row[self.caption_column])


class HFIterableImageTextDataset(torch.utils.data.IterableDataset):
    """Wrapper of a streamed `datasets.IterableDataset`; yields (image (3, s, s), caption).

    In a DataLoader with several workers, the underlying datasets.IterableDataset notices it is
    inside a worker and iterates only that worker's shards, so no sample is repeated (provided
    the dataset has at least as many shards as there are workers).
    """

    def __init__(self, dataset, image_column="image", caption_column="text", size=64):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int (pixels per side), got {size!r}")
        _check_columns(getattr(dataset, "column_names", None), image_column, caption_column)
        self.dataset, self.size = dataset, size
        self.image_column, self.caption_column = image_column, caption_column

    def __iter__(self):
        for row in self.dataset:
            _check_columns(list(row), self.image_column, self.caption_column)
            image = _to_pil(row[self.image_column])
            yield to_square_tensor(image, self.size), _to_caption(row[self.caption_column])
