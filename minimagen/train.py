"""Train an Imagen cascade: `minimagen-train`, `python -m minimagen.train`, or `Trainer(config).fit()`.

    minimagen-train --preset shapes --out runs/shapes             # 32 px base + 64 px super-res, on a CPU
    minimagen-train --preset shapes --out runs/shapes --resume    # continue exactly where it stopped
    minimagen-sample --model runs/shapes/model "a red circle on a blue background"

    from minimagen.train import TrainConfig, Trainer, train
    Trainer(TrainConfig.from_preset("tiny", out_dir="runs/tiny")).fit()
    train(preset="tiny", out_dir="runs/tiny", steps=(20, 10))       # the same, in one call

What a run writes into its output folder:
    checkpoint.safetensors   everything needed to continue exactly (see "Checkpoints" below)
    model/                   the EMA weights as an Imagen.save_pretrained folder, for sampling
    log.jsonl                one JSON line per `log_every` steps: step, unet, loss, lr, images_per_s, time
    samples/step_XXXXXX.png  a grid of EMA samples with fixed captions and a fixed seed

How the U-Nets are scheduled. The stages of a cascade are trained independently: the super-
resolution U-Net learns from downsampled *real* images, never from the base U-Net's output. So
the order does not change the result, and we train them in sequential blocks (all of U-Net 1's
steps, then all of U-Net 2's) rather than round-robin: only one U-Net, its optimizer and its data
are live at a time (the other's data is never drawn, its images can be drawn at its own, smaller
size), the position in a run is just "U-Net u, step s", and under `accelerate` only the U-Net being
trained is wrapped for distributed training. `--steps 3000,1000` gives each U-Net its own budget;
with `--time-limit` each U-Net gets a share of the wall-clock time in proportion to its work
(steps x parameters x pixels of a training image).

Exact resume. A resumed run ends with bit-identical weights to an uninterrupted one because
nothing random depends on the process's history:
  - the data order is a pure function of (seed, U-Net, position): `StepSampler` draws epoch e's
    permutation from a torch.Generator seeded by (seed, U-Net, e) and starts at the saved position;
  - before each micro-batch the global torch RNG is reseeded from (seed, U-Net, step, micro-batch,
    process), so the noise, timesteps and caption dropout of step s are the same however the run
    got there (this also keeps resume exact with several processes);
  - model, EMA, optimizer and LR-scheduler states, step counters and the RNG states of torch (CPU
    and CUDA), Python and NumPy are saved and restored.

Checkpoints. One safetensors file, never a pickle (loading a stranger's checkpoint cannot run code):
tensors named `model.<state-dict key>` (raw weights), `ema.<u>.<key>` (AveragedModel state),
`optimizer.<u>.<param index>.<name>` (AdamW moments and step), `rng.torch`, `rng.cuda.<i>`; and in
the file's metadata, under "minimagen_train", a JSON with the config, step counters, data
positions, optimizer param groups, scheduler states, Python/NumPy RNG states and a SHA-256 of all
tensor bytes (so a damaged file is refused instead of resumed). The file is written to a temporary
name and renamed, so a crash while saving leaves the previous checkpoint intact.
"""

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
import types
import typing
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, atomic_write, load_tensors, load_weights, model_config
from .Imagen import Imagen, default_cond_scales
from .Unet import PRESETS as UNET_PRESETS
from .utils import cpu_has_fast_bf16, get_device, image_grid, set_seed

CHECKPOINT_NAME = "checkpoint.safetensors"
MODEL_DIR = "model"
LOG_NAME = "log.jsonl"
SAMPLES_DIR = "samples"
CHECKPOINT_FORMAT = "minimagen-train"
CHECKPOINT_VERSION = 1
METADATA_KEY = "minimagen_train"
DATA_KINDS = ("shapes", "emoji", "folder:PATH", "hf:PATH_OR_NAME")


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite. Attributes: step, unet, loss, checkpoint (last good one or None)."""

    def __init__(self, message, step=None, unet=None, loss=None, checkpoint=None):
        super().__init__(message)
        self.step, self.unet, self.loss, self.checkpoint = step, unet, loss, checkpoint


class RunExistsError(ValueError):
    """The output folder already holds a run, and neither resume nor overwrite was asked for."""


# Configuration ---------------------------------------------------------------------------------


def _f(default, help):
    """A dataclass field with its help text: the comment in the code is the line in `--help`."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of a training run. Defaults are the `shapes` preset; see PRESETS for the others."""

    preset: str = _f("shapes", "preset the defaults come from: " + ", ".join(("shapes", "emoji", "original", "tiny")))
    out_dir: str | None = _f(None, "output folder (default runs/<preset>)")
    resume: bool = _f(False, "continue the run saved in the output folder, exactly")
    overwrite: bool = _f(False, "start afresh even if the output folder holds a run (its checkpoint, "
                                "model, log and samples are replaced)")
    # Model
    unets: tuple = _f(("SmallBase", "SmallSuper"), "U-Net classes from minimagen.Unet, base first: "
                                                    + ",".join(UNET_PRESETS))
    unet_dims: tuple | None = _f(None, "override each U-Net's width `dim` (one per U-Net); default: the class's")
    image_sizes: tuple = _f((32, 64), "output side of each stage, in pixels")
    text_encoder: str = _f("minilm", "text encoder name (minilm works offline; t5_small, t5_base, ... need the hub)")
    timesteps: int = _f(1000, "diffusion steps T of every stage")
    noise_schedule: str = _f("cosine", "beta schedule: cosine or linear")
    # v rather than eps: at high noise an eps error turns into a large x0 error, and with a short
    # CPU budget the base U-Net never learns that regime well enough to sample from pure noise.
    pred_objective: str = _f("v", "what the U-Nets predict: eps, x0 or v")
    # Crops make the super-resolution steps 3-4x cheaper, so it can take the ~1,500 steps it needs to
    # stop leaving grain in its 64 px output, at about a third of the base's time.
    random_crop_sizes: tuple | None = _f((0, 32), "train each super-resolution U-Net on random crops of this side, "
                                                  "one per U-Net (0 = whole images; the base never crops)")
    cond_drop_prob: float = _f(0.1, "chance of dropping the caption in training (for classifier-free guidance)")
    loss_type: str = _f("l2", "l1, l2 or huber")
    min_snr_gamma: float | None = _f(None, "min-SNR loss weighting gamma (e.g. 5); off when not given")
    # Data
    data: str = _f("shapes", "training data: " + ", ".join(DATA_KINDS))
    data_size: int = _f(20_000, "number of distinct pictures in the shapes data (drawn on the fly)")
    image_column: str = _f("image", "image column of a Hugging Face dataset (hf:)")
    caption_column: str = _f("text", "caption column of a Hugging Face dataset (hf:)")
    text_cache_dir: str | None = _f(None, "text-embedding cache folder (default $MINIMAGEN_CACHE or "
                                          "~/.cache/minimagen/text_embeds)")
    warm_cache_max_captions: int = _f(50_000, "encode all captions before training when the data has at most "
                                              "this many distinct ones; otherwise encode each on first use")
    num_workers: int = _f(0, "DataLoader worker processes (0: load in the training process, best on a small CPU)")
    # Optimisation
    unet: str = _f("all", "which U-Net to train: all, or its 1-based number")
    steps: tuple = _f((2000, 1500), "optimizer steps per U-Net: one number for all, or one per U-Net")
    batch_size: int = _f(32, "images per micro-batch (per process)")
    grad_accum: int = _f(1, "micro-batches per optimizer step (gradient accumulation)")
    lr: float = _f(1e-3, "peak AdamW learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    adam_betas: tuple = _f((0.9, 0.99), "AdamW betas")
    warmup_steps: int = _f(100, "linear learning-rate warm-up, in optimizer steps of each U-Net")
    lr_schedule: str = _f("cosine", "after warm-up: constant, or cosine decay to 0 at the last step")
    max_grad_norm: float | None = _f(1.0, "clip the gradient norm to this (0 or none: no clipping)")
    ema_decay: float = _f(0.995, "decay of the EMA weights used for sampling and export")
    ema_start: int = _f(100, "for a U-Net's first steps the EMA copies the weights; it averages afterwards")
    seed: int = _f(0, "seed of the weights, the data order and every random draw")
    precision: str = _f("auto", "auto (bf16 autocast where the hardware multiplies bf16 natively: a CUDA GPU "
                                       "or a CPU with AMX/AVX512-BF16; else fp32), bf16 or no")
    device: str = _f("auto", "auto, cpu, cuda or mps")
    num_threads: int | None = _f(None, "CPU threads for torch (default: torch's choice, one per core); 1 is much "
                                       "faster when other jobs share the CPU")
    # Bookkeeping
    log_every: int = _f(10, "write a log.jsonl line every this many steps")
    sample_every: int = _f(200, "save a sample grid every this many steps (0: only at the end of each U-Net)")
    checkpoint_every: int = _f(200, "save a checkpoint every this many steps (0: only at the end of each U-Net)")
    sample_steps: int = _f(25, "denoising steps per stage for the sample grids")
    sample_sampler: str = _f("ddim", "sampler for the sample grids: ddpm or ddim")
    sample_cond_scale: tuple | None = _f(None, "guidance scale of the sample grids: one for every stage or one per "
                                               "stage (default 3 on the base, 1 on super-resolution stages)")
    sample_captions: tuple | None = _f(None, "captions of the sample grids (default: chosen from the data; "
                                             "for shapes, seen and held-out combinations)")
    time_limit: float | None = _f(None, "stop cleanly (checkpoint and export) after this many minutes of training, "
                                        "shared between the U-Nets in proportion to their work "
                                        "(steps left x measured seconds per step)")
    progress: bool = _f(True, "show a progress bar")

    def __post_init__(self):
        if self.out_dir is None:
            self.out_dir = os.path.join("runs", self.preset)
        # JSON and the CLI give lists; keep tuples so configs compare equal however they were made.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                setattr(self, f.name, tuple(value))
        if isinstance(self.unet, int):
            self.unet = str(self.unet)

    @classmethod
    def from_preset(cls, name: str = "shapes", **overrides) -> "TrainConfig":
        """The preset's settings, with `overrides` (field names) on top."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {unknown}")
        return cls(**{**PRESETS[name], **overrides, "preset": name})

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        # Runs saved before random_crop_sizes existed trained on whole images: keep resuming them so.
        data = {"random_crop_sizes": None, **data}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CheckpointError(f"the checkpoint's config has fields this MinImagen does not know: {unknown}")
        return cls(**data)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    # Derived values ----------------------------------------------------------------------------

    @property
    def num_unets(self) -> int:
        return len(self.unets)

    def unet_numbers(self) -> list:
        """The 1-based numbers of the U-Nets this run trains."""
        return list(range(1, self.num_unets + 1)) if self.unet == "all" else [int(self.unet)]

    def target_steps(self) -> list:
        """Optimizer steps to reach, one per U-Net."""
        return list(self.steps) * self.num_unets if len(self.steps) == 1 else list(self.steps)

    def validate(self) -> None:
        """ValueError naming the setting, before any work is done."""
        n = self.num_unets

        def need(ok, message):
            if not ok:
                raise ValueError(message)

        need(not (self.resume and self.overwrite), "resume and overwrite exclude each other: pick one")
        need(self.preset in PRESETS, f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        need(n >= 1, "unets must name at least one U-Net class")
        bad = [u for u in self.unets if u not in UNET_PRESETS]
        need(not bad, f"unets must be among {list(UNET_PRESETS)}, got {bad}")
        need(len(self.image_sizes) == n, f"image_sizes must hold one size per U-Net ({n}), got {self.image_sizes}")
        need(self.random_crop_sizes is None or len(self.random_crop_sizes) == n,
             f"random_crop_sizes must hold one side per U-Net ({n}, 0 = no crop), got {self.random_crop_sizes}")
        need(self.unet_dims is None or len(self.unet_dims) == n,
             f"unet_dims must hold one width per U-Net ({n}), got {self.unet_dims}")
        need(self.unet == "all" or (self.unet.isdigit() and 1 <= int(self.unet) <= n),
             f"unet must be 'all' or a U-Net number from 1 to {n}, got {self.unet!r}")
        need(len(self.steps) in (1, n) and all(isinstance(s, int) and s >= 0 for s in self.steps),
             f"steps must be one non-negative integer or one per U-Net ({n}), got {self.steps}")
        kind, _, arg = self.data.partition(":")
        need(kind in ("shapes", "emoji", "folder", "hf", "custom") and (bool(arg) == (kind in ("folder", "hf"))),
             f"data must be one of {', '.join(DATA_KINDS)}; got {self.data!r}")
        if kind == "folder":
            need(Path(arg).expanduser().is_dir(), f"data: the folder {arg!r} does not exist")
        for name in ("batch_size", "grad_accum", "timesteps", "data_size", "sample_steps", "log_every"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                 f"{name} must be a positive integer, got {getattr(self, name)!r}")
        need(self.num_threads is None or (isinstance(self.num_threads, int) and self.num_threads >= 1),
             f"num_threads must be a positive integer, got {self.num_threads!r}")
        for name in ("warmup_steps", "ema_start", "sample_every", "checkpoint_every", "num_workers"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 0,
                 f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        need(self.sample_steps <= self.timesteps,
             f"sample_steps must be at most timesteps ({self.timesteps}), got {self.sample_steps}")
        need(self.lr > 0, f"lr must be positive, got {self.lr}")
        need(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        need(self.max_grad_norm is None or self.max_grad_norm >= 0,
             f"max_grad_norm must be positive (or 0/None for no clipping), got {self.max_grad_norm}")
        need(self.time_limit is None or self.time_limit > 0, f"time_limit must be positive minutes, got {self.time_limit}")
        need(self.lr_schedule in ("constant", "cosine"), f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        need(self.precision in ("auto", "bf16", "no"), f"precision must be auto, bf16 or no, got {self.precision!r}")
        need(self.device in ("auto", "cpu", "cuda", "mps"), f"device must be auto, cpu, cuda or mps, got {self.device!r}")
        need(self.sample_sampler in ("ddpm", "ddim"), f"sample_sampler must be ddpm or ddim, got {self.sample_sampler!r}")
        need(len(self.adam_betas) == 2, f"adam_betas must be two numbers, got {self.adam_betas}")
        scales = self.sample_cond_scale
        need(scales is None or (isinstance(scales, (int, float)) and not isinstance(scales, bool))
             or (isinstance(scales, tuple) and len(scales) in (1, n)
                 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scales)),
             f"sample_cond_scale must be one number or one per U-Net ({n}), got {scales!r}")
        need(not self.sample_captions or all(isinstance(c, str) and c for c in self.sample_captions),
             "sample_captions must be non-empty strings")


# Presets: field values on top of the TrainConfig defaults (which are the shapes preset).
PRESETS = {
    # SmallBase (2.8M parameters, 32 px) + SmallSuper (0.7M, 32 -> 64 px) on coloured shapes:
    # meant to train on a 2-core CPU in about 15 minutes (pass --time-limit 14 to guarantee it).
    "shapes": dict(),
    # The same networks on every emoji of the Noto Color Emoji font (1,262 in Debian 12's), about 10 minutes on a
    # 2-core CPU. The 64 px stage trains on 32 px crops as in shapes: 400 steps on whole images left its samples
    # grainy (benchmarks/super_resolution.py: grain 0.12 against the base's 0.02); 1,500 on crops do not (0.02).
    "emoji": dict(data="emoji", steps=(1200, 1500), sample_every=500, checkpoint_every=500),
    # The original MinImagen's Base (1.6B) and Super (0.7B) U-Nets and its training settings
    # (t5_base, lr 1e-4, cond_drop_prob 0.15), for a GPU.
    "original": dict(unets=("Base", "Super"), text_encoder="t5_base", random_crop_sizes=None, batch_size=4, lr=1e-4,
                     cond_drop_prob=0.15,
                     steps=(50_000, 50_000), warmup_steps=1000, ema_decay=0.9999, ema_start=1000, lr_schedule="constant",
                     sample_every=2000, checkpoint_every=2000, sample_steps=100),
    # The original's test U-Nets at 16 -> 32 px: a whole run takes seconds (tests, smoke checks).
    "tiny": dict(unets=("BaseTest", "SuperTest"), image_sizes=(16, 32), random_crop_sizes=None, timesteps=100,
                 batch_size=4, steps=(4, 4),
                 data_size=64, warmup_steps=2, ema_start=0, ema_decay=0.9, log_every=1, sample_every=0,
                 checkpoint_every=0, sample_steps=4),
}

# Settings that may differ when resuming: they change neither the model nor the maths of a step.
# `steps` may grow to train longer (with the cosine schedule, that stretches the remaining decay).
RESUMABLE_FIELDS = {"out_dir", "resume", "overwrite", "unet", "steps", "text_cache_dir", "num_workers", "log_every",
                    "sample_every", "checkpoint_every", "sample_steps", "sample_sampler", "sample_cond_scale",
                    "sample_captions", "time_limit", "progress", "device", "warm_cache_max_captions", "num_threads"}


# Data --------------------------------------------------------------------------------------------


def _mix(*numbers) -> int:
    """A 63-bit seed from a tuple of integers (stable across runs and machines, unlike hash())."""
    digest = hashlib.sha256("/".join(str(int(n)) for n in numbers).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class StepSampler(torch.utils.data.Sampler):
    """Dataset indices at positions [start, start + count) of an endless stream of shuffled epochs.

    Epoch e is a permutation of range(n) drawn from a torch.Generator seeded by (seed, e); position
    p is element p % n of epoch p // n. So the data order is a pure function of (seed, position) and
    a resumed run picks up at exactly the saved position. (No `generator` or `set_epoch` attribute:
    accelerate would take those over.)
    """

    def __init__(self, n: int, seed: int, start: int, count: int):
        self.n, self.seed, self.start, self.count = n, seed, start, count

    def __len__(self):
        return self.count

    def __iter__(self):
        position, end = self.start, self.start + self.count
        while position < end:
            epoch, offset = divmod(position, self.n)
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(_mix(self.seed, epoch)))
            take = min(self.n - offset, end - position)
            yield from order[offset:offset + take].tolist()
            position += take


def collate_images_and_texts(batch) -> dict:
    """list of (image (3, s, s), caption) -> {"images": (b, 3, s, s), "texts": b str} (embeddings come later)."""
    return {"images": torch.stack([image for image, _ in batch]), "texts": [caption for _, caption in batch]}


def build_dataset(config: TrainConfig, size: int):
    """The training data named by config.data, with images (3, size, size) in [-1, 1]."""
    from . import data

    kind, _, arg = config.data.partition(":")
    if kind == "shapes":
        return data.ShapesDataset(size=size, length=config.data_size, seed=config.seed)
    if kind == "emoji":
        return data.EmojiDataset(size=size)
    if kind == "folder":
        return data.ImageFolderDataset(arg, size=size)
    if kind == "hf":
        import datasets

        if Path(arg).expanduser().is_dir():
            ds = datasets.load_from_disk(str(Path(arg).expanduser()))
        else:
            ds = datasets.load_dataset(arg, split="train")
        if isinstance(ds, datasets.DatasetDict):  # a saved DatasetDict: train on its "train" split
            ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
        return data.HFImageTextDataset(ds, image_column=config.image_column,
                                       caption_column=config.caption_column, size=size)
    raise ValueError(f"data must be one of {', '.join(DATA_KINDS)}; got {config.data!r}")


def default_sample_captions(config: TrainConfig, dataset) -> list:
    """Captions for the sample grids: for shapes, 4 seen and 4 held-out combinations (can it compose?)."""
    if config.data == "shapes":
        from .data.shapes import HELD_OUT, make_caption

        seen = [("red", "circle", "blue"), ("yellow", "triangle", "purple"), ("white", "square", "black"),
                ("blue", "triangle", "orange")]
        return [make_caption(*c) for c in seen] + [make_caption(*c) for c in HELD_OUT[:4]]
    captions = dataset.captions() if hasattr(dataset, "captions") else [dataset[i][1] for i in range(min(64, len(dataset)))]
    return list(dict.fromkeys(captions))[:8]


# Checkpoint files --------------------------------------------------------------------------------


def _tensors_digest(tensors: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_checkpoint(path, tensors: dict, meta: dict) -> None:
    """Atomically write `tensors` and the JSON `meta` (plus a digest of the tensors) as one safetensors file."""
    tensors = {k: v.detach().contiguous().clone().cpu() for k, v in tensors.items()}  # split shared storage
    meta = {**meta, "tensors_sha256": _tensors_digest(tensors)}
    metadata = {METADATA_KEY: json.dumps(meta)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_checkpoint_meta(path) -> dict:
    """The JSON metadata of a training checkpoint, without reading its tensors; CheckpointError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for a bad header
        raise CheckpointError(f"training checkpoint {path} is corrupt or truncated ({err})") from err
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path} is not a MinImagen training checkpoint (no '{METADATA_KEY}' metadata)")
    try:
        meta = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"training checkpoint {path} has corrupt metadata ({err})") from err
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a MinImagen training checkpoint")
    if meta.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has format_version {meta.get('format_version')!r}; this MinImagen reads "
                              f"version {CHECKPOINT_VERSION}")
    return meta


def read_checkpoint(path):
    """(tensors, meta) of a training checkpoint, checked against its digest; CheckpointError if unusable."""
    meta = read_checkpoint_meta(path)
    tensors = load_tensors(path)
    if _tensors_digest(tensors) != meta.get("tensors_sha256"):
        raise CheckpointError(f"training checkpoint {path} is corrupt: its tensors do not match their checksum")
    return tensors, meta


def _subdict(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _rng_state() -> tuple:
    """(tensors, JSON) of the RNG states of torch (CPU, every CUDA device), Python and NumPy."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    py_version, py_state, py_gauss = random.getstate()
    meta = {"python": [py_version, list(py_state), py_gauss]}
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        meta["numpy"] = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    except ImportError:
        pass
    return tensors, meta


def _set_rng_state(tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(len(_subdict(tensors, "rng.cuda.")))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    if "numpy" in meta:
        try:
            import numpy as np

            name, keys, pos, has_gauss, cached = meta["numpy"]
            np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
        except ImportError:
            pass


# The trainer -------------------------------------------------------------------------------------


def lr_multiplier(step: int, warmup: int, total: int, schedule: str) -> float:
    """Learning-rate factor for optimizer step `step` (0-based): linear warm-up, then constant or cosine to 0."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(unet: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW for one U-Net; torch's fused kernel where this torch and device have one.

    The fused version updates every parameter in one pass instead of a handful of small ops per
    tensor: 10% less CPU time per training step of the Super-structure U-Net measured in
    benchmarks/README.md. Same maths.
    """
    settings = dict(lr=config.lr, betas=tuple(config.adam_betas), weight_decay=config.weight_decay)
    try:
        return torch.optim.AdamW(unet.parameters(), fused=True, **settings)
    except (RuntimeError, ValueError, TypeError):  # older torch on CPU, or a device without the kernel
        return torch.optim.AdamW(unet.parameters(), **settings)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' | 'bf16' | 'no' -> 'bf16' (the forward passes run under bf16 autocast) or 'no' (fp32).

    auto picks bf16 where the hardware multiplies bf16 natively: a CUDA GPU that supports it, or a
    CPU with AMX or AVX512-BF16 (on such a CPU a shapes base step was 1.6x faster: benchmarks/README.md).
    """
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        native = cpu_has_fast_bf16()
    else:
        native = False
    if precision == "auto":
        return "bf16" if native else "no"
    if precision == "bf16" and not native:
        where = "this CPU has no bf16 instructions (AMX or AVX512-BF16), so bf16 would be emulated and slower" \
            if device.type == "cpu" else f"bf16 autocast is not supported on {device.type} here"
        raise ValueError(f"precision='bf16': {where}; use precision 'no' (fp32) or 'auto'")
    return precision


def build_imagen(config: TrainConfig) -> Imagen:
    """A freshly initialised cascade as the config describes it."""
    unets = []
    for i, name in enumerate(config.unets):
        kwargs = {"dim": config.unet_dims[i]} if config.unet_dims else {}
        unets.append(UNET_PRESETS[name](**kwargs))
    from . import t5

    return Imagen(unets, image_sizes=config.image_sizes, text_encoder_name=config.text_encoder,
                  text_embed_dim=t5.get_encoded_dim(config.text_encoder), timesteps=config.timesteps,
                  noise_schedules=config.noise_schedule, pred_objectives=config.pred_objective,
                  cond_drop_prob=config.cond_drop_prob, loss_type=config.loss_type,
                  min_snr_gamma=config.min_snr_gamma, random_crop_sizes=config.random_crop_sizes)


class Trainer:
    """Trains the U-Nets of an Imagen cascade; see the module docstring.

    config: a TrainConfig. dataset (optional, Python API only): your own data instead of
        config.data: a dataset of (image (3, s, s) in [-1, 1], caption), or a function
        size -> such a dataset; its images must be at least as large as the stage trained on them.
    Nothing is written before fit(). Attributes: imagen (raw weights), ema_imagen (the EMA weights,
    what is sampled and exported), steps_done (per U-Net), global_step.
    """

    def __init__(self, config: TrainConfig, dataset=None):
        from accelerate import Accelerator

        from .data import TextEmbeddingCache

        if dataset is not None and config.data != "custom":
            config = dataclasses.replace(config, data="custom")
        config.validate()
        self.config, self.user_dataset = config, dataset
        self.out_dir = Path(config.out_dir)
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME

        # Everything that can fail on bad input fails here, before any work is done or file touched.
        state = None
        if config.resume:
            if not self.checkpoint_path.exists():
                raise FileNotFoundError(f"cannot resume: there is no checkpoint at {self.checkpoint_path}. "
                                        f"Start a new run without resume.")
            state = read_checkpoint(self.checkpoint_path)  # CheckpointError if damaged
            self._check_resumable(state[1]["config"])
        elif not config.overwrite and (self.checkpoint_path.exists() or (self.out_dir / MODEL_DIR).exists()):
            raise RunExistsError(f"{self.out_dir} already holds a training run ({CHECKPOINT_NAME} or {MODEL_DIR}/). "
                                 f"Continue it with --resume (resume=True), choose another --out, or replace it "
                                 f"with --overwrite (overwrite=True).")

        if config.data == "custom" and dataset is None:
            raise ValueError("this run trains on a dataset given from Python (data='custom'): pass it again, "
                             "Trainer(config, dataset=...)")
        if config.data == "emoji":
            from .data import find_emoji_font

            find_emoji_font()  # FileNotFoundError with the install command, before anything else happens
        if config.num_threads:
            torch.set_num_threads(config.num_threads)

        # Device and precision. accelerate runs as one plain process without any configuration, and
        # as one process per GPU under `accelerate launch`.
        device = get_device() if config.device == "auto" else torch.device(config.device)
        if config.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch sees no CUDA GPU")
        self.precision = resolve_precision(config.precision, device)
        # step_scheduler_with_optimizer=False: we step the LR scheduler once per optimizer step
        # ourselves; accelerate's default would step it once per process, speeding up warm-up.
        # mixed_precision="no": compute_loss autocasts itself, because accelerate fixes one precision
        # per process and a notebook could then not train in bf16 and afterwards in fp32.
        self.accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, mixed_precision="no",
                                       cpu=device.type == "cpu", step_scheduler_with_optimizer=False)
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process

        # Model, EMA copies, one optimizer and one LR schedule per U-Net.
        set_seed(config.seed)
        self.imagen = build_imagen(config).to(self.device)
        self.emas = [AveragedModel(unet, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
                     for unet in self.imagen.unets]
        # An Imagen around the EMA U-Nets (shared modules, not copies): what we sample and export.
        self.ema_imagen = Imagen([ema.module for ema in self.emas], **self.imagen.config).to(self.device).eval()
        self.optimizers = [make_optimizer(unet, config) for unet in self.imagen.unets]
        targets = config.target_steps()
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step, total=targets[i]: lr_multiplier(step, config.warmup_steps, total, config.lr_schedule))
            for i, opt in enumerate(self.optimizers)]
        self.steps_done = [0] * config.num_unets
        self.data_position = [0] * config.num_unets  # samples drawn from each U-Net's data stream
        self.train_time = 0.0  # seconds spent training, summed over resumed runs
        self.last_checkpoint_step = None
        self.last_sample_step = None
        self.cache = TextEmbeddingCache(config.text_encoder, cache_dir=config.text_cache_dir)
        self._datasets = {}
        self._sample_captions = list(config.sample_captions) if config.sample_captions else None
        self._training_unet = {}  # U-Net index -> the module accelerate prepared (DDP-wrapped when distributed)
        self._step_costs = {}  # U-Net number -> measured seconds per step, for sharing a time limit
        if state is not None:
            try:
                self._load_state(*state)
            except (KeyError, IndexError, TypeError) as err:  # a checkpoint from another version of this file
                raise CheckpointError(f"{self.checkpoint_path} lacks part of the training state ({err!r})") from err
            self.last_checkpoint_step = self.global_step

    @property
    def global_step(self) -> int:
        """Optimizer steps taken, summed over the U-Nets; names the samples and log lines."""
        return sum(self.steps_done)

    def _check_resumable(self, stored: dict) -> None:
        stored = TrainConfig.from_dict(stored)
        changed = [f.name for f in dataclasses.fields(TrainConfig)
                   if f.name not in RESUMABLE_FIELDS and getattr(stored, f.name) != getattr(self.config, f.name)]
        if changed:
            details = ", ".join(f"{k}: {getattr(stored, k)!r} -> {getattr(self.config, k)!r}" for k in changed)
            raise ValueError(f"cannot resume {self.checkpoint_path} with different settings ({details}); only "
                             f"{', '.join(sorted(RESUMABLE_FIELDS))} may change on resume")

    # State -------------------------------------------------------------------------------------

    def state(self) -> tuple:
        """(tensors, meta): everything needed to continue exactly, as written to checkpoint.safetensors."""
        tensors = {f"model.{k}": v for k, v in self.imagen.state_dict().items()}
        optimizers = []
        for u, (ema, opt) in enumerate(zip(self.emas, self.optimizers), start=1):
            tensors.update({f"ema.{u}.{k}": v for k, v in ema.state_dict().items()})
            state = opt.state_dict()
            extra = {}
            for index, values in state["state"].items():
                for name, value in values.items():
                    if torch.is_tensor(value):
                        tensors[f"optimizer.{u}.{index}.{name}"] = value
                    else:
                        extra.setdefault(str(index), {})[name] = value
            optimizers.append({"param_groups": state["param_groups"], "extra": extra})
        rng_tensors, rng_meta = _rng_state()
        tensors.update(rng_tensors)
        meta = {
            "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(), "model": model_config(self.imagen),
            "global_step": self.global_step, "steps_done": self.steps_done,
            "data_position": self.data_position,  # samples drawn so far from each U-Net's data stream
            "num_processes": self.accelerator.num_processes,
            "optimizers": optimizers, "schedulers": [s.state_dict() for s in self.schedulers],
            "rng": rng_meta, "train_time": self.train_time, "saved_at": time.time(),
        }
        return tensors, meta

    def _load_state(self, tensors: dict, meta: dict) -> None:
        source = str(self.checkpoint_path)
        load_weights(self.imagen, _subdict(tensors, "model."), source=source)
        for u, (ema, opt, sched) in enumerate(zip(self.emas, self.optimizers, self.schedulers), start=1):
            load_weights(ema, _subdict(tensors, f"ema.{u}."), source=source)
            saved = meta["optimizers"][u - 1]
            state = {}
            for key, value in _subdict(tensors, f"optimizer.{u}.").items():
                index, name = key.split(".", 1)
                state.setdefault(int(index), {})[name] = value
            for index, values in saved["extra"].items():
                state.setdefault(int(index), {}).update(values)
            # JSON turned tuples (betas) into lists; give them back as the optimizer made them.
            groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
                      for group in saved["param_groups"]]
            opt.load_state_dict({"state": dict(sorted(state.items())), "param_groups": groups})
            sched.load_state_dict(meta["schedulers"][u - 1])
        if meta["num_processes"] != self.accelerator.num_processes:
            warnings.warn(f"{source} was written by a run with {meta['num_processes']} processes and this one has "
                          f"{self.accelerator.num_processes}: training continues from the same data position, "
                          f"but is not bit-identical to a run that kept the same number", stacklevel=3)
        self.steps_done = list(meta["steps_done"])
        self.data_position = list(meta["data_position"])
        self.train_time = meta.get("train_time", 0.0)
        _set_rng_state(tensors, meta["rng"])

    def save_checkpoint(self) -> Path:
        """Write checkpoint.safetensors (atomically) and export the EMA model to model/; main process only."""
        if self.is_main:
            tensors, meta = self.state()
            write_checkpoint(self.checkpoint_path, tensors, meta)
            self.export()
        self.last_checkpoint_step = self.global_step
        return self.checkpoint_path

    def export(self, directory=None) -> Path:
        """Save the EMA weights as an Imagen folder (config.json + model.safetensors) for minimagen-sample."""
        directory = Path(directory or self.out_dir / MODEL_DIR)
        self.ema_imagen.save_pretrained(directory)
        return directory

    # Data ----------------------------------------------------------------------------------------

    def dataset(self, unet_number: int):
        """The training data of one U-Net, its images at that stage's size (built once, captions cached)."""
        size = self.config.image_sizes[unet_number - 1]
        if size not in self._datasets:
            if self.user_dataset is not None:
                ds = self.user_dataset(size) if callable(self.user_dataset) and not hasattr(
                    self.user_dataset, "__getitem__") else self.user_dataset
            else:
                ds = build_dataset(self.config, size)
            self._datasets[size] = (ds, self._warm_cache(ds))
        return self._datasets[size]

    def _warm_cache(self, dataset) -> bool:
        """Encode every distinct caption now when there are few (shapes: ~150), so that no step runs the
        text encoder; returns whether that was done (else captions are encoded on first use)."""
        if not hasattr(dataset, "captions"):
            return False
        captions = list(dict.fromkeys(dataset.captions()))
        if len(captions) > self.config.warm_cache_max_captions:
            return False
        # The main process encodes; the others then find every caption on disk.
        with self.accelerator.main_process_first():
            self.cache.precompute(captions, progress=self.config.progress and self.is_main)
        return True

    def dataloader(self, unet_number: int):
        """A DataLoader over exactly the batches U-Net `unet_number` has still to see, from its saved position."""
        from .data import TextImageCollator

        i = unet_number - 1
        dataset, warmed = self.dataset(unet_number)
        cfg = self.config
        per_step = cfg.batch_size * cfg.grad_accum * self.accelerator.num_processes
        remaining = max(0, cfg.target_steps()[i] - self.steps_done[i])
        sampler = StepSampler(len(dataset), seed=_mix(cfg.seed, unet_number), start=self.data_position[i],
                              count=remaining * per_step)
        return torch.utils.data.DataLoader(
            dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
            collate_fn=TextImageCollator(self.cache) if warmed else collate_images_and_texts,
            # A private generator: creating a DataLoader iterator otherwise draws from the global RNG.
            generator=torch.Generator().manual_seed(cfg.seed), pin_memory=self.device.type == "cuda")

    # One step ------------------------------------------------------------------------------------

    @contextmanager
    def _unet_for_forward(self, index: int):
        """Put the prepared (maybe DDP-wrapped) U-Net into the cascade for one forward pass, so gradients
        are synchronised across processes; the cascade keeps its plain U-Net the rest of the time."""
        prepared = self._training_unet.get(index)
        plain = self.imagen.unets[index]
        if prepared is None or prepared is plain:
            yield
            return
        self.imagen.unets._modules[str(index)] = prepared
        try:
            yield
        finally:
            self.imagen.unets._modules[str(index)] = plain

    def compute_loss(self, unet_number: int, batch: dict) -> torch.Tensor:
        """The diffusion loss (a scalar) of U-Net `unet_number` on one micro-batch."""
        images = (batch["images"].to(self.device) + 1) / 2  # datasets give [-1, 1]; Imagen takes [0, 1]
        if "text_embeds" in batch:
            embeds, masks = batch["text_embeds"], batch["text_masks"]
        else:
            embeds, masks = self.cache.encode(batch["texts"])  # encoded on first sight, then cached
        with self._unet_for_forward(unet_number - 1), self._autocast():
            return self.imagen(images, text_embeds=embeds.to(self.device), text_masks=masks.to(self.device),
                               unet_number=unet_number)

    def _autocast(self):
        """bf16 autocast for a forward pass when this run trains in bf16, else a no-op context."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _rng_devices(self) -> list:
        """The CUDA devices whose random state torch.random.fork_rng must save (none on a CPU)."""
        return [self.device.index or 0] if self.device.type == "cuda" else []

    def _reseed(self, unet_number: int, micro: int) -> None:
        """Make this micro-batch's random draws (noise, times, caption dropout) a function of where we are."""
        torch.manual_seed(_mix(self.config.seed, unet_number, self.steps_done[unet_number - 1], micro,
                               self.accelerator.process_index))

    def _update_ema(self, index: int) -> None:
        ema = self.emas[index]
        if self.steps_done[index] <= self.config.ema_start:
            ema.n_averaged.zero_()  # AveragedModel copies the weights when it has averaged nothing yet
        ema.update_parameters(self.imagen.unets[index])

    def _time_is_up(self, deadline: float) -> bool:
        """Whether any process has passed the deadline: all must stop at the same step, or the others
        would wait forever for its gradients."""
        late = torch.tensor(float(time.monotonic() >= deadline), device=self.device)
        return self.accelerator.reduce(late, reduction="sum").item() > 0

    def _diverged(self, unet_number: int, loss: float) -> TrainingDivergedError:
        step = self.global_step + 1
        if self.last_checkpoint_step is not None and self.checkpoint_path.exists():
            where = (f"The last good checkpoint is {self.checkpoint_path} (step {self.last_checkpoint_step}); "
                     f"continue from it with `minimagen-train --resume --out {self.out_dir}`, perhaps with a "
                     f"lower --lr or --max-grad-norm.")
            checkpoint = self.checkpoint_path
        else:
            where = "No checkpoint was written yet; try a lower --lr or --max-grad-norm."
            checkpoint = None
        return TrainingDivergedError(
            f"training diverged: the loss of U-Net {unet_number} is {loss} at step {step} "
            f"(U-Net {unet_number} step {self.steps_done[unet_number - 1] + 1}). {where}",
            step=step, unet=unet_number, loss=loss, checkpoint=checkpoint)

    # Samples and logs ----------------------------------------------------------------------------

    def sample_captions(self) -> list:
        if self._sample_captions is None:
            self._sample_captions = default_sample_captions(self.config, self.dataset(self.config.unet_numbers()[0])[0])
        return self._sample_captions

    @torch.no_grad()
    def save_samples(self, stop_at_unet: int) -> Path | None:
        """A grid of EMA samples (fixed captions, fixed seed) up to U-Net stop_at_unet -> samples/step_XXXXXX.png."""
        if not self.is_main:
            return None
        cfg = self.config
        captions = self.sample_captions()
        embeds, masks = self.cache.encode(captions)
        scales = default_cond_scales(cfg.num_unets) if cfg.sample_cond_scale is None else cfg.sample_cond_scale
        # Sampling must not disturb the training RNG stream.
        with torch.random.fork_rng(devices=self._rng_devices()):
            images = self.ema_imagen.sample(text_embeds=embeds.to(self.device), text_masks=masks.to(self.device),
                                            cond_scale=scales, sampler=cfg.sample_sampler, steps=cfg.sample_steps,
                                            seed=cfg.seed, progress=False, stop_at_unet=stop_at_unet)
        grid = image_grid(images, captions, nrow=4, min_size=128)
        path = self.out_dir / SAMPLES_DIR / f"step_{self.global_step:06d}.png"
        atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"))
        self.last_sample_step = self.global_step
        return path

    def _log(self, record: dict) -> None:
        if self.is_main:
            with open(self.out_dir / LOG_NAME, "a") as f:
                f.write(json.dumps(record) + "\n")

    def _prepare_out_dir(self) -> None:
        """Create the output folder; with overwrite, remove the files of the run it replaces; with resume,
        drop log lines past the checkpoint (the interrupted run's lost steps are about to be redone)."""
        if not self.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log = self.out_dir / LOG_NAME
        if self.config.resume:
            if log.exists():
                lines = [line for line in log.read_text().splitlines()
                         if line.strip() and json.loads(line).get("step", 0) <= self.global_step]
                atomic_write(log, lambda tmp: Path(tmp).write_text("".join(line + "\n" for line in lines)))
        elif self.config.overwrite:
            for path in [self.checkpoint_path, log, self.out_dir / MODEL_DIR / "config.json",
                         self.out_dir / MODEL_DIR / "model.safetensors",
                         *(self.out_dir / SAMPLES_DIR).glob("step_*.png")]:
                if path.exists():
                    path.unlink()
        elif log.exists():
            log.unlink()  # a run that stopped before its first checkpoint: nothing in it to keep

    # The loop ------------------------------------------------------------------------------------

    def fit(self) -> Path:
        """Train the chosen U-Nets to their step targets (or until the time limit); returns the output folder."""
        cfg = self.config
        self._prepare_out_dir()
        start = time.monotonic()
        budget = cfg.time_limit * 60 if cfg.time_limit else None
        targets = cfg.target_steps()
        todo = [u for u in cfg.unet_numbers() if self.steps_done[u - 1] < targets[u - 1]]
        if self.is_main:
            sizes = ", ".join(f"U-Net {u} ({cfg.unets[u - 1]}, {cfg.image_sizes[u - 1]}px, "
                              f"{sum(p.numel() for p in self.imagen.unets[u - 1].parameters()) / 1e6:.2f}M params): "
                              f"{self.steps_done[u - 1]}/{targets[u - 1]} steps" for u in cfg.unet_numbers())
            precision = "bf16 autocast" if self.precision == "bf16" else "fp32"
            tqdm.write(f"minimagen-train: {sizes}; device {self.device} ({precision}), "
                       f"{self.accelerator.num_processes} process(es), output {self.out_dir}")
        out_of_time = False
        for k, u in enumerate(todo):
            deadline = None
            if budget is not None:
                # Share what is left of the time budget in proportion to the work still to do, in
                # measured seconds per step.
                work = [(targets[v - 1] - self.steps_done[v - 1]) * self._step_cost(v) for v in todo[k:]]
                deadline = time.monotonic() + max(0.0, budget - (time.monotonic() - start)) * work[0] / sum(work)
            finished = self._train_unet(u, deadline)
            out_of_time |= not finished
        if self.last_checkpoint_step != self.global_step or not (self.out_dir / MODEL_DIR).exists():
            self.save_checkpoint()
        trained = [u for u in range(1, cfg.num_unets + 1) if self.steps_done[u - 1] > 0]
        if self.last_sample_step != self.global_step and trained:
            self.save_samples(max(trained))
        if self.is_main:
            status = ", ".join(f"U-Net {u} {self.steps_done[u - 1]}/{targets[u - 1]}" for u in cfg.unet_numbers())
            why = "time limit reached; continue with --resume" if out_of_time else "done"
            tqdm.write(f"minimagen-train: {why} ({status}). Model: {self.out_dir / MODEL_DIR}; try\n"
                       f"  minimagen-sample --model {self.out_dir / MODEL_DIR} \"{self.sample_captions()[0]}\"")
        return self.out_dir

    def _step_cost(self, unet_number: int) -> float:
        """Seconds of one training step of U-Net `unet_number` on this machine, measured once.

        Measured rather than estimated, because how two U-Nets' steps compare depends on the machine
        and the precision: a SmallBase step takes 2.4 times a SmallSuper step on 32 px crops in fp32 on
        a CPU and 2.1 times under bf16 autocast, while its parameters x pixels are 4 times as many
        (benchmarks/step_variants.py). The probe is a forward and backward pass on random inputs of
        a real batch's shape; it leaves the weights, their gradients and every random stream as they were.
        """
        if unet_number not in self._step_costs:
            cfg, side = self.config, self.config.image_sizes[unet_number - 1]
            unet = self.imagen.unets[unet_number - 1]
            sync = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else (lambda: None)
            unet.train()
            with torch.random.fork_rng(devices=self._rng_devices()):
                batch = dict(images=torch.rand(cfg.batch_size, self.imagen.channels, side, side) * 2 - 1,
                             text_embeds=torch.randn(cfg.batch_size, 8, self.imagen.text_embed_dim),
                             text_masks=torch.ones(cfg.batch_size, 8, dtype=torch.bool))
                for attempt in range(2):  # the first pass also pays for one-off set-up; time the second
                    sync()
                    start = time.perf_counter()
                    self.compute_loss(unet_number, batch).backward()
                    sync()
                    seconds = time.perf_counter() - start
                    unet.zero_grad(set_to_none=True)
            unet.eval()
            self._step_costs[unet_number] = seconds
        return self._step_costs[unet_number]

    def _train_unet(self, unet_number: int, deadline: float | None) -> bool:
        """Train one U-Net up to its target; returns False when stopped by the deadline."""
        cfg, acc = self.config, self.accelerator
        i = unet_number - 1
        target = cfg.target_steps()[i]
        loader = self.dataloader(unet_number)
        unet = self.imagen.unets[i].train()
        prepared, optimizer, loader, scheduler = acc.prepare(unet, self.optimizers[i], loader, self.schedulers[i])
        self._training_unet[i] = prepared
        images_per_step = cfg.batch_size * cfg.grad_accum * acc.num_processes
        bar = tqdm(total=target, initial=self.steps_done[i], desc=f"U-Net {unet_number}",
                   disable=not (cfg.progress and self.is_main), dynamic_ncols=True)
        batches = iter(loader)
        losses, interval_time, interval_images = [], 0.0, 0
        finished = True
        try:
            while self.steps_done[i] < target:
                tick = time.perf_counter()
                step_losses = []
                for micro in range(cfg.grad_accum):
                    batch = next(batches)
                    self._reseed(unet_number, micro)
                    with acc.accumulate(prepared):
                        loss = self.compute_loss(unet_number, batch)
                        value = acc.reduce(loss.detach().float(), reduction="mean").item()  # mean over processes
                        if not math.isfinite(value):
                            raise self._diverged(unet_number, value)
                        step_losses.append(value)
                        acc.backward(loss)  # divides by grad_accum, so the accumulated gradient is a mean
                        if acc.sync_gradients and cfg.max_grad_norm:
                            acc.clip_grad_norm_(prepared.parameters(), cfg.max_grad_norm)  # torch's, after unscaling
                        optimizer.step()  # skipped by accelerate until the last micro-batch
                        if acc.sync_gradients:
                            scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                self.steps_done[i] += 1
                self.data_position[i] += images_per_step
                self._update_ema(i)
                elapsed = time.perf_counter() - tick
                self.train_time += elapsed
                losses.append(sum(step_losses) / len(step_losses))
                interval_time += elapsed
                interval_images += images_per_step
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", img_s=f"{images_per_step / max(elapsed, 1e-9):.1f}")

                step = self.global_step
                if self.steps_done[i] % cfg.log_every == 0 or self.steps_done[i] == target:
                    self._log({"step": step, "unet": unet_number, "unet_step": self.steps_done[i],
                               "loss": sum(losses) / len(losses), "lr": self.optimizers[i].param_groups[0]["lr"],
                               "images_per_s": interval_images / max(interval_time, 1e-9),
                               "time": round(self.train_time, 3)})
                    losses, interval_time, interval_images = [], 0.0, 0
                if cfg.sample_every and step % cfg.sample_every == 0:
                    self.save_samples(unet_number)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if deadline is not None and self.steps_done[i] < target and self._time_is_up(deadline):
                    finished = False
                    break
        finally:
            bar.close()
            self._training_unet.pop(i, None)
            unet.eval()
        # The end of a U-Net's block is a natural resting point: keep it, and show what it learnt.
        if self.last_checkpoint_step != self.global_step:
            self.save_checkpoint()
        if self.last_sample_step != self.global_step:
            self.save_samples(unet_number)
        return finished


# Python API and command line ---------------------------------------------------------------------


def resolve_config(overrides: dict) -> TrainConfig:
    """A TrainConfig from explicitly given settings: the preset's, or with resume, the saved run's.

    On resume the checkpoint's config is the base and only RESUMABLE_FIELDS may be given anew
    (others must equal the saved values), so `--resume --out DIR` alone continues a run.
    """
    overrides = dict(overrides)
    preset = overrides.get("preset", "shapes")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f"unknown settings: {unknown}")
    if overrides.get("resume"):
        out_dir = overrides.get("out_dir") or os.path.join("runs", preset)
        path = Path(out_dir) / CHECKPOINT_NAME
        if path.exists():
            stored = TrainConfig.from_dict(read_checkpoint_meta(path)["config"])
            fixed = {k: v for k, v in overrides.items() if k not in RESUMABLE_FIELDS}
            probe = dataclasses.replace(stored, **fixed)  # normalises lists to tuples before comparing
            changed = [k for k in fixed if getattr(probe, k) != getattr(stored, k)]
            if changed:
                details = ", ".join(f"{k}: {getattr(stored, k)!r} -> {getattr(probe, k)!r}" for k in changed)
                raise ValueError(f"cannot change {', '.join(changed)} when resuming {path} ({details}); only "
                                 f"{', '.join(sorted(RESUMABLE_FIELDS))} may change")
            given = {k: v for k, v in overrides.items() if k in RESUMABLE_FIELDS}
            return dataclasses.replace(stored, **{**given, "out_dir": str(out_dir), "resume": True, "overwrite": False})
    return TrainConfig.from_preset(preset, **{k: v for k, v in overrides.items() if k != "preset"})


def train(**settings) -> Path:
    """Train from a notebook: `train(preset="tiny", out_dir="runs/tiny", steps=(20, 10))`; returns the folder.

    Takes TrainConfig field names; with resume=True the saved run's settings are the defaults.
    """
    return Trainer(resolve_config(settings)).fit()


def _cli_type(tp):
    """The argparse `type` for a TrainConfig field annotation (tuples are comma-separated lists)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] if isinstance(tp, types.UnionType) else []
    base = args[0] if args else tp

    def parse_none(text, parse):
        return None if text.lower() in ("none", "off", "") else parse(text)

    if base is tuple:
        def parse_tuple(text):
            items = [t.strip() for t in text.split(",") if t.strip()]
            for kind in (int, float):
                try:
                    return tuple(kind(t) for t in items)
                except ValueError:
                    pass
            return tuple(items)
        return (lambda text: parse_none(text, parse_tuple)) if args else parse_tuple
    return (lambda text: parse_none(text, base)) if args else base


CLI_CHOICES = {"noise_schedule": ("cosine", "linear"), "pred_objective": ("eps", "x0", "v"),
               "loss_type": ("l1", "l2", "huber"), "lr_schedule": ("constant", "cosine"),
               "precision": ("auto", "bf16", "no"), "device": ("auto", "cpu", "cuda", "mps"),
               "sample_sampler": ("ddpm", "ddim")}
CLI_METAVARS = {"steps": "N[,N]", "unets": "NAME,NAME", "image_sizes": "N,N", "unet_dims": "N,N",
                "adam_betas": "B1,B2", "time_limit": "MINUTES", "data": "SPEC", "out_dir": "DIR",
                "text_cache_dir": "DIR", "unet": "all|N", "text_encoder": "NAME", "image_column": "NAME",
                "caption_column": "NAME"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minimagen-train",
        description="Train a MinImagen cascade. Every setting starts at the preset's value; the flags below "
                    "override it. With --resume, the saved run's settings are used.",
        epilog="Examples:\n  minimagen-train --preset shapes --out runs/shapes --time-limit 14\n"
               "  minimagen-train --resume --out runs/shapes --steps 4000,1500\n"
               "  accelerate launch -m minimagen.train --preset original --data hf:my/dataset --out runs/big",
        formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS)
    flags = {"out_dir": ["--out", "--out-dir"], "sample_captions": ["--sample-caption"]}
    for f in dataclasses.fields(TrainConfig):
        names = flags.get(f.name, ["--" + f.name.replace("_", "-")])
        help_text = f.metadata["help"]
        if f.name == "preset":
            parser.add_argument(*names, choices=sorted(PRESETS), help=help_text + " (default shapes)")
        elif f.name == "progress":
            parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
        elif f.type is bool:
            parser.add_argument(*names, dest=f.name, action="store_true", help=help_text)
        elif f.name == "sample_captions":
            parser.add_argument(*names, dest=f.name, action="append", metavar="TEXT",
                                help=help_text + "; repeat the flag for several")
        elif f.name in CLI_CHOICES:
            parser.add_argument(*names, dest=f.name, choices=CLI_CHOICES[f.name], help=help_text)
        else:
            base = next((a for a in typing.get_args(f.type) if a is not type(None)), f.type)
            metavar = CLI_METAVARS.get(f.name) or {int: "N", float: "X"}.get(base, "TEXT")
            parser.add_argument(*names, dest=f.name, type=_cli_type(f.type), metavar=metavar, help=help_text)
    return parser


def main(argv=None) -> int:
    """`minimagen-train`: parse flags, train, and turn user errors into one clear line and exit code 2."""
    settings = vars(build_parser().parse_args(argv))
    if "sample_captions" in settings:
        settings["sample_captions"] = tuple(settings["sample_captions"])
    trainer = None
    try:
        trainer = Trainer(resolve_config(settings))
        trainer.fit()
    except TrainingDivergedError as err:
        print(f"minimagen-train: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, CheckpointError, FileNotFoundError, OSError) as err:
        print(f"minimagen-train: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = (f"the last checkpoint is {trainer.checkpoint_path} (step {trainer.last_checkpoint_step}); "
                 f"continue with --resume --out {trainer.out_dir}"
                 if trainer is not None and trainer.last_checkpoint_step is not None else "no checkpoint was written")
        print(f"\nminimagen-train: interrupted; {where}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
