"""Datasets for MinImagen. Every dataset yields (image, caption): image a float tensor
(3, size, size) in [0, 1], caption a str.

Datasets
    ShapesDataset, held_out_dataset   coloured shapes drawn on the fly (shapes.py)
    EmojiDataset                      Noto Color Emoji glyphs named by Unicode (emoji.py)
    ImageFolderDataset                your images + metadata.jsonl or .txt captions (folder.py)
    HFImageTextDataset,
    HFIterableImageTextDataset        Hugging Face `datasets`, map-style and streamed (hf.py)
Shapes helpers
    COLOURS, SHAPES, HELD_OUT, all_combinations, parse_caption, render_shape, score_image
Text embeddings
    TextEmbeddingCache, TextImageCollator (cache.py)
Transforms
    to_square_tensor: any PIL image -> (3, size, size) in [0, 1], centre-cropped (transforms.py)

Model code never imports this package.
"""
from .cache import TextEmbeddingCache, TextImageCollator
from .emoji import EmojiDataset, find_emoji_font
from .folder import ImageFolderDataset
from .hf import HFImageTextDataset, HFIterableImageTextDataset
from .order import StepSampler, collate_images_and_texts, mix_seed
from .shapes import (
    COLOURS,
    HELD_OUT,
    SHAPES,
    ShapesDataset,
    all_combinations,
    held_out_dataset,
    parse_caption,
    render_shape,
    score_image,
)
from .transforms import to_square_tensor

__all__ = [
    "ShapesDataset", "held_out_dataset", "EmojiDataset", "find_emoji_font", "ImageFolderDataset",
    "HFImageTextDataset", "HFIterableImageTextDataset", "COLOURS", "SHAPES", "HELD_OUT",
    "all_combinations", "parse_caption", "render_shape", "score_image", "TextEmbeddingCache",
    "TextImageCollator", "to_square_tensor", "StepSampler", "mix_seed", "collate_images_and_texts",
]
