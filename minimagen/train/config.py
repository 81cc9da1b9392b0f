"""The settings of a training run: TrainConfig, its presets, and which settings a resumed run may change.

Each TrainConfig field carries its help text, so the dataclass below is also `minimagen-train --help`
(cli.py turns every field into a flag). The lists of allowed values are defined once, next to the
code that uses them (samplers, schedules, objectives, losses, U-Net classes) or here, and shared by
`TrainConfig.validate` and the command line.
"""

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoint import CheckpointError
from ..diffusion import LOSS_TYPES, OBJECTIVES
from ..samplers import SAMPLERS
from ..schedules import SCHEDULES
from ..Unet import PRESETS as UNET_PRESETS
from .state import read_checkpoint_meta, resumable_checkpoint

PRECISIONS = ("auto", "bf16", "no")
DEVICES = ("auto", "cpu", "cuda", "mps")
LR_SCHEDULES = ("constant", "cosine")
DATA_KINDS = ("shapes", "emoji", "folder:PATH", "hf:PATH_OR_NAME")

# Presets: field values on top of the TrainConfig defaults (which are the shapes preset).
PRESETS = {
    # SmallBase (2.8M parameters, 16 px) + SmallSuper (0.7M, 16 -> 64 px) on coloured shapes:
    # meant to train on a 2-core CPU in about 15 minutes (pass --time-limit 14 to guarantee it).
    "shapes": dict(),
    # The same networks on every emoji of the Noto Color Emoji font (1,262 in Debian 12's), about 10 minutes on a
    # 2-core CPU. The 64 px stage trains on 32 px crops as in shapes: 400 steps on whole images left its samples
    # grainy (benchmarks/super_resolution.py: grain 0.12 against the base's 0.02); 1,500 on crops do not (0.02).
    # Emoji carry detail a 16 px base cannot hold: a 32 px base, with the settings it was tuned with.
    "emoji": dict(data="emoji", image_sizes=(32, 64), lr=1e-3, cond_scale=(3.0, 1.0), lowres_sample_noise_level=0.2,
                  steps=(1200, 1500), sample_every=500, checkpoint_every=500),
    # The original MinImagen's Base (1.6B) and Super (0.7B) U-Nets and its training settings
    # (t5_base, lr 1e-4, cond_drop_prob 0.15), for a GPU.
    "original": dict(unets=("Base", "Super"), text_encoder="t5_base", image_sizes=(32, 64), random_crop_sizes=None,
                     cond_scale=(3.0, 1.0), lowres_sample_noise_level=0.2, batch_size=4, lr=1e-4,
                     cond_drop_prob=0.15,
                     steps=(50_000, 50_000), warmup_steps=1000, ema_decay=0.9999, ema_start=1000, lr_schedule="constant",
                     sample_every=2000, checkpoint_every=2000, sample_steps=100),
    # The original's test U-Nets at 16 -> 32 px: a whole run takes seconds (tests, smoke checks).
    "tiny": dict(unets=("BaseTest", "SuperTest"), image_sizes=(16, 32), random_crop_sizes=None, timesteps=100,
                 lr=1e-3, cond_scale=(3.0, 1.0), lowres_sample_noise_level=0.2,
                 batch_size=4, steps=(4, 4),
                 data_size=64, warmup_steps=2, ema_start=0, ema_decay=0.9, log_every=1, sample_every=0,
                 checkpoint_every=0, sample_steps=4),
}


def _f(default, help):
    """A dataclass field with its help text: the comment in the code is the line in `--help`."""
    return field(default=default, metadata={"help": help})


def _or(choices) -> str:
    """("a", "b", "c") -> "a, b or c"."""
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]


@dataclass
class TrainConfig:
    """Every setting of a training run. Defaults are the `shapes` preset; see PRESETS for the others."""

    preset: str = _f("shapes", "preset the defaults come from: " + ", ".join(PRESETS))
    out_dir: str | None = _f(None, "output folder (default runs/<preset>)")
    resume: bool = _f(False, "continue the run saved in the output folder, exactly")
    overwrite: bool = _f(False, "start afresh even if the output folder holds a run (its checkpoint, "
                                "model, log and samples are replaced)")
    # Model
    unets: tuple = _f(("SmallBase", "SmallSuper"), "U-Net classes from minimagen.Unet, base first: "
                                                    + ",".join(UNET_PRESETS))
    unet_dims: tuple | None = _f(None, "override each U-Net's width `dim` (one per U-Net); default: the class's")
    # A 16 px base: a step costs half a 32 px one, and the base learns the asked shape in ~3,000-4,500 steps
    # instead of painting blobs (benchmarks/README.md, "Drawing the asked shape").
    image_sizes: tuple = _f((16, 64), "output side of each stage, in pixels")
    text_encoder: str = _f("minilm", "text encoder name (minilm works offline; t5_small, t5_base, ... need the hub)")
    timesteps: int = _f(1000, "diffusion steps T of every stage")
    noise_schedule: str = _f("cosine", "beta schedule: " + _or(SCHEDULES))
    # v rather than eps: at high noise an eps error turns into a large x0 error, and with a short
    # CPU budget the base U-Net never learns that regime well enough to sample from pure noise.
    pred_objective: str = _f("v", "what the U-Nets predict: " + _or(OBJECTIVES))
    # Crops make the super-resolution steps 3-4x cheaper, so it can take the ~1,500 steps it needs to
    # stop leaving grain in its 64 px output, at about a third of the base's time.
    random_crop_sizes: tuple | None = _f((0, 32), "train each super-resolution U-Net on random crops of this side, "
                                                  "one per U-Net (0 = whole images; the base never crops)")
    cond_drop_prob: float = _f(0.1, "chance of dropping the caption in training (for classifier-free guidance)")
    loss_type: str = _f("l2", _or(LOSS_TYPES))
    min_snr_gamma: float | None = _f(None, "min-SNR loss weighting gamma (e.g. 5); off when not given")
    cond_scale: tuple = _f((5.0, 1.0), "the guidance scale the model recommends for sampling, one per U-Net (saved in "
                                       "its config.json; minimagen-sample uses it unless told otherwise)")
    # 0.1 rather than 0.2: the 16 -> 64 px stage then keeps the base's shape more often.
    lowres_sample_noise_level: float = _f(0.1, "noise level in [0, 1] of the low-resolution image each super-"
                                               "resolution stage sees when sampling (saved in the model)")
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
    steps: tuple = _f((4000, 1200), "optimizer steps per U-Net: one number for all, or one per U-Net")
    batch_size: int = _f(32, "images per micro-batch (per process)")
    grad_accum: int = _f(1, "micro-batches per optimizer step (gradient accumulation)")
    lr: float = _f(5e-4, "peak AdamW learning rate")
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
    device: str = _f("auto", _or(DEVICES))
    num_threads: int | None = _f(None, "CPU threads for torch (default: torch's choice, one per core); 1 is much "
                                       "faster when other jobs share the CPU")
    # Bookkeeping
    log_every: int = _f(10, "write a log.jsonl line every this many steps")
    sample_every: int = _f(200, "save a sample grid every this many steps (0: only at the end of each U-Net)")
    checkpoint_every: int = _f(200, "save a checkpoint every this many steps (0: only at the end of each U-Net)")
    sample_steps: int = _f(25, "denoising steps per stage for the sample grids")
    sample_sampler: str = _f("dpmpp_2m", "sampler for the sample grids: " + _or(SAMPLERS))
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
        _check_names({**overrides, "preset": name})
        return cls(**{**PRESETS[name], **overrides, "preset": name})

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        # Runs saved before a field existed keep resuming as they were made: on whole images (random_crop_sizes),
        # with the guidance and low-resolution noise level every model then had (cond_scale, lowres_...).
        stages = len(data.get("unets", ())) or 1
        data = {"random_crop_sizes": None, "cond_scale": (3.0,) + (1.0,) * (stages - 1),
                "lowres_sample_noise_level": 0.2, **data}
        unknown = sorted(set(data) - FIELD_NAMES)
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
        _check_names({"preset": self.preset})
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            need(value in allowed, f"{name} must be one of {', '.join(allowed)}, got {value!r}")
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
        kinds = {k.partition(":")[0]: ":" in k for k in DATA_KINDS}  # kind -> whether it takes an argument
        need(kind == "custom" or (kind in kinds and bool(arg) == kinds[kind]),
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
        need(len(self.adam_betas) == 2, f"adam_betas must be two numbers, got {self.adam_betas}")
        need(len(self.cond_scale) == n and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in self.cond_scale),
             f"cond_scale must hold one number per U-Net ({n}), got {self.cond_scale!r}")
        need(isinstance(self.lowres_sample_noise_level, (int, float)) and 0 <= self.lowres_sample_noise_level <= 1,
             f"lowres_sample_noise_level must be a number in [0, 1], got {self.lowres_sample_noise_level!r}")
        scales = self.sample_cond_scale
        need(scales is None or (isinstance(scales, (int, float)) and not isinstance(scales, bool))
             or (isinstance(scales, tuple) and len(scales) in (1, n)
                 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scales)),
             f"sample_cond_scale must be one number or one per U-Net ({n}), got {scales!r}")
        need(not self.sample_captions or all(isinstance(c, str) and c for c in self.sample_captions),
             "sample_captions must be non-empty strings")


FIELD_NAMES = {f.name for f in dataclasses.fields(TrainConfig)}

# The settings that take one of a few values: checked by validate(), offered as choices by the CLI.
CHOICES = {"noise_schedule": SCHEDULES, "pred_objective": OBJECTIVES, "loss_type": LOSS_TYPES,
           "lr_schedule": LR_SCHEDULES, "precision": PRECISIONS, "device": DEVICES, "sample_sampler": SAMPLERS}

# Settings that may differ when resuming: they change neither the model nor the maths of a step.
# `steps` may grow to train longer (with the cosine schedule, that stretches the remaining decay).
# `lr` and `max_grad_norm` may change to continue past a NaN loss (the new peak lr scales the rest of the schedule).
RESUMABLE_FIELDS = {"out_dir", "resume", "overwrite", "unet", "steps", "text_cache_dir", "num_workers", "log_every",
                    "sample_every", "checkpoint_every", "sample_steps", "sample_sampler", "sample_cond_scale",
                    "sample_captions", "time_limit", "progress", "device", "warm_cache_max_captions", "num_threads",
                    "lr", "max_grad_norm"}
# Settings of one invocation: a resumed run takes them from its own command line or their defaults, never
# from the saved run (`--unet 2 --time-limit 5` once does not make every later --resume train U-Net 2 for 5 min).
PER_INVOCATION_FIELDS = ("unet", "time_limit")


def _check_names(settings: dict) -> None:
    """ValueError for a preset or a setting that TrainConfig does not know."""
    preset = settings.get("preset", "shapes")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    unknown = sorted(set(settings) - FIELD_NAMES)
    if unknown:
        raise ValueError(f"unknown TrainConfig fields: {unknown}")


def check_resumable(stored: TrainConfig, config: TrainConfig, path) -> None:
    """ValueError naming each setting outside RESUMABLE_FIELDS that `config` changes from the saved run's."""
    changed = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name not in RESUMABLE_FIELDS and getattr(stored, f.name) != getattr(config, f.name)]
    if changed:
        details = ", ".join(f"{k}: {getattr(stored, k)!r} -> {getattr(config, k)!r}" for k in changed)
        raise ValueError(f"cannot change {', '.join(changed)} when resuming {path} ({details}); only "
                         f"{', '.join(sorted(RESUMABLE_FIELDS))} may change")


def resolve_config(overrides: dict) -> TrainConfig:
    """A TrainConfig from explicitly given settings: the preset's, or with resume, the saved run's.

    On resume the checkpoint's config is the base and only RESUMABLE_FIELDS may be given anew
    (others must equal the saved values), so `--resume --out DIR` alone continues a run.
    """
    _check_names(overrides)
    preset = overrides.get("preset", "shapes")
    if overrides.get("resume"):
        out_dir = overrides.get("out_dir") or os.path.join("runs", preset)
        path = resumable_checkpoint(Path(out_dir))
        if path.exists():
            stored = TrainConfig.from_dict(read_checkpoint_meta(path)["config"])
            once = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in PER_INVOCATION_FIELDS}
            config = dataclasses.replace(stored, **{**once, **overrides, "out_dir": str(out_dir), "overwrite": False})
            check_resumable(stored, config, path)
            return config
    return TrainConfig.from_preset(preset, **{k: v for k, v in overrides.items() if k != "preset"})
