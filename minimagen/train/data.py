"""The training data a config names (`--data shapes | emoji | folder:PATH | hf:PATH_OR_NAME`), the
DataLoader that draws it in its resumable order (minimagen.data.order), and the sample grids' captions."""

from pathlib import Path

import torch

from ..data import EmojiDataset, HFImageTextDataset, ImageFolderDataset, ShapesDataset
from ..data.order import StepSampler, mix_seed
from ..data.shapes import HELD_OUT, make_caption
from .config import DATA_KINDS


def build_dataset(config, size: int, user_dataset=None):
    """The training data named by config.data, with images (3, size, size) in [0, 1]; or the user's
    (data="custom"), given as a dataset or a function size -> dataset."""
    dataset = _open_dataset(config, size, user_dataset)
    if len(dataset) == 0:
        raise ValueError(f"data: the data set {config.data!r} holds no images (length 0)")
    return dataset


def _open_dataset(config, size: int, user_dataset):
    if user_dataset is not None:
        is_factory = callable(user_dataset) and not hasattr(user_dataset, "__getitem__")
        return user_dataset(size) if is_factory else user_dataset
    kind, _, arg = config.data.partition(":")
    if kind == "shapes":
        return ShapesDataset(size=size, length=config.data_size, seed=config.seed)
    if kind == "emoji":
        return EmojiDataset(size=size)
    if kind == "folder":
        return ImageFolderDataset(arg, size=size)
    if kind == "hf":
        import datasets

        if Path(arg).expanduser().is_dir():
            ds = datasets.load_from_disk(str(Path(arg).expanduser()))
        else:
            ds = datasets.load_dataset(arg, split="train")
        if isinstance(ds, datasets.DatasetDict):  # a saved DatasetDict: train on its "train" split
            ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
        return HFImageTextDataset(ds, image_column=config.image_column,
                                  caption_column=config.caption_column, size=size)
    raise ValueError(f"data must be one of {', '.join(DATA_KINDS)}; got {config.data!r}")


def default_sample_captions(config, dataset) -> list:
    """Captions for the sample grids: for shapes, 4 seen and 4 held-out combinations (can it compose?)."""
    if config.data == "shapes":
        seen = [("red", "circle", "blue"), ("yellow", "triangle", "purple"), ("white", "square", "black"),
                ("blue", "triangle", "orange")]
        return [make_caption(*c) for c in seen + list(HELD_OUT[:4])]
    captions = dataset.captions() if hasattr(dataset, "captions") else [dataset[i][1] for i in range(min(64, len(dataset)))]
    return list(dict.fromkeys(captions))[:8]


def step_dataloader(dataset, config, unet_number: int, start: int, count: int, collate, pin_memory: bool):
    """A DataLoader over data positions [start, start + count) of U-Net `unet_number`'s stream (StepSampler)."""
    sampler = StepSampler(len(dataset), seed=mix_seed(config.seed, unet_number), start=start, count=count)
    return torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers,
        collate_fn=collate,
        # A private generator: creating a DataLoader iterator otherwise draws from the global RNG.
        generator=torch.Generator().manual_seed(config.seed), pin_memory=pin_memory)


def warm_cache(cache, dataset, max_captions: int, accelerator, progress: bool) -> bool:
    """Encode every distinct caption now when there are few (shapes: ~150), so that no step runs the
    text encoder; returns whether that was done (else captions are encoded on first use)."""
    if not hasattr(dataset, "captions"):
        return False
    captions = list(dict.fromkeys(dataset.captions()))
    if len(captions) > max_captions:
        return False
    # The main process encodes; the others then find every caption on disk.
    with accelerator.main_process_first():
        cache.precompute(captions, progress=progress)
    return True
