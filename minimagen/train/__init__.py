"""Train an Imagen cascade: `minimagen-train`, `python -m minimagen.train`, or `Trainer(config).fit()`.

    minimagen-train --preset shapes --out runs/shapes             # 32 px base + 64 px super-res, on a CPU
    minimagen-train --preset shapes --out runs/shapes --resume    # continue exactly where it stopped
    minimagen-sample --model runs/shapes/model "a red circle on a blue background"

    from minimagen.train import TrainConfig, Trainer, train
    Trainer(TrainConfig.from_preset("tiny", out_dir="runs/tiny")).fit()
    train(preset="tiny", out_dir="runs/tiny", steps=(20, 10))       # the same, in one call

One batch's way, from the command line to an optimizer step:
    cli.py       flags -> settings -> `resolve_config` (config.py: TrainConfig, PRESETS, what resume may change)
    trainer.py   Trainer: builds the cascade (build.py), then `fit` -> `_train_unet` -> `compute_loss`
                 -> Imagen.forward -> backward -> optimizer step -> EMA
    data.py      the data set config.data names and its DataLoader, in minimagen.data.order's order
    state.py     the run folder: checkpoint.safetensors, model/, log.jsonl, samples/ (its docstring
                 lists them and the checkpoint format), the random-number states, the folder's lock
    lock.py      one trainer per run folder (fcntl lock on out/.lock, naming its holder)
    stops.py     how a run ends early: SIGINT/SIGTERM (after the step, with a checkpoint), a NaN loss

Exact resume. A resumed run ends with bit-identical weights to an uninterrupted one because
nothing random depends on the process's history:
  - the data order is a pure function of (seed, U-Net, position): `StepSampler` draws epoch e's
    permutation from a torch.Generator seeded by (seed, U-Net, e) and starts at the saved position;
  - before each micro-batch the global torch RNG is reseeded from (seed, U-Net, step, micro-batch,
    process), so the noise, timesteps and caption dropout of step s are the same however the run
    got there (this also keeps resume exact with several processes);
  - model, EMA, optimizer and LR-scheduler states, step counters and the RNG states of torch (CPU
    and CUDA), Python and NumPy are saved and restored.
"""

from ..data.order import StepSampler, collate_images_and_texts, mix_seed
from .build import build_imagen, lr_multiplier, make_optimizer, make_scheduler, resolve_precision
from .cli import CLI_METAVARS, build_parser, export_run, main, train
from .config import (CHOICES, DATA_KINDS, DEVICES, LR_SCHEDULES, PRECISIONS, PRESETS, RESUMABLE_FIELDS, TrainConfig,
                     check_resumable, resolve_config)
from .data import build_dataset, default_sample_captions
from .state import (CHECKPOINT_FORMAT, CHECKPOINT_NAME, CHECKPOINT_VERSION, LOG_NAME, METADATA_KEY, MODEL_DIR,
                    SAMPLES_DIR, RunExistsError, read_checkpoint, read_checkpoint_meta, write_checkpoint)
from .lock import RunLockedError
from .stops import TrainingDivergedError, TrainingInterrupted
from .trainer import Trainer

__all__ = [
    "TrainConfig", "PRESETS", "RESUMABLE_FIELDS", "CHOICES", "DATA_KINDS", "DEVICES", "LR_SCHEDULES", "PRECISIONS",
    "resolve_config", "check_resumable", "Trainer", "TrainingDivergedError", "TrainingInterrupted", "RunExistsError",
    "RunLockedError", "export_run", "train", "main",
    "build_parser", "CLI_METAVARS", "build_imagen", "make_optimizer", "make_scheduler", "lr_multiplier",
    "resolve_precision", "build_dataset", "default_sample_captions", "StepSampler", "collate_images_and_texts",
    "mix_seed", "read_checkpoint", "read_checkpoint_meta", "write_checkpoint", "CHECKPOINT_NAME", "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION", "METADATA_KEY", "MODEL_DIR", "LOG_NAME", "SAMPLES_DIR",
]
