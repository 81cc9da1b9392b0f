"""`minimagen-train` (also `python -m minimagen.train` and `accelerate launch -m minimagen.train`), and
`train()`, the same in one Python call: settings -> resolve_config -> Trainer(...).fit().

One flag per TrainConfig field, its help the field's; the allowed values are config.CHOICES.
"""

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path

from ..checkpoint import CheckpointError, load_weights
from ..Imagen import Imagen
from ..utils import sigterm_as_ctrl_c
from .config import CHOICES, PRESETS, TrainConfig, resolve_config
from .lock import RunLockedError
from .state import CHECKPOINT_NAME, MODEL_DIR, read_checkpoint
from .stops import TrainingDivergedError, exit_code
from .trainer import Trainer

CLI_METAVARS = {"steps": "N[,N]", "unets": "NAME,NAME", "image_sizes": "N,N", "unet_dims": "N,N",
                "adam_betas": "B1,B2", "time_limit": "MINUTES", "data": "SPEC", "out_dir": "DIR",
                "text_cache_dir": "DIR", "unet": "all|N", "text_encoder": "NAME", "image_column": "NAME",
                "caption_column": "NAME"}


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
        elif f.name in CHOICES:
            parser.add_argument(*names, dest=f.name, choices=CHOICES[f.name], help=help_text)
        else:
            base = next((a for a in typing.get_args(f.type) if a is not type(None)), f.type)
            metavar = CLI_METAVARS.get(f.name) or {int: "N", float: "X"}.get(base, "TEXT")
            parser.add_argument(*names, dest=f.name, type=_cli_type(f.type), metavar=metavar, help=help_text)
    parser.add_argument("--export", nargs="?", const="", metavar="DIR",
                        help="train nothing: write the EMA model of --out's checkpoint to DIR (default <out>/model), "
                             "e.g. to repair a model/ a crash left broken")
    return parser


def main(argv=None) -> int:
    """`minimagen-train`: parse flags, train, and turn user errors into one clear line and exit code 2.

    SIGTERM ends a run as Ctrl-C does (a checkpoint, one line saying how to resume; exit code 143).
    """
    settings = vars(build_parser().parse_args(argv))
    if "sample_captions" in settings:
        settings["sample_captions"] = tuple(settings["sample_captions"])
    trainer, export_to = None, settings.pop("export", None)
    with sigterm_as_ctrl_c() as stop:
        try:
            if export_to is not None:
                print(export_run(settings.get("out_dir") or Path("runs") / settings.get("preset", "shapes"), export_to))
                return 0
            trainer = Trainer(resolve_config(settings))
            trainer.fit()
        except TrainingDivergedError as err:
            print(f"minimagen-train: error: {err}", file=sys.stderr)
            return 1
        except (ValueError, CheckpointError, FileNotFoundError, OSError, RunLockedError) as err:
            print(f"minimagen-train: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as err:
            saved = trainer is not None and trainer.last_checkpoint_step is not None
            where = (f"the last checkpoint is {trainer.checkpoint_path} (step {trainer.last_checkpoint_step}); "
                     f"continue with --resume --out {trainer.out_dir}" if saved else "no checkpoint was written")
            print(f"\nminimagen-train: interrupted; {where}", file=sys.stderr)
            return exit_code(getattr(err, "signal", None) or stop.signal)
    return 0


def export_run(out_dir, dest: str = "") -> Path:
    """Write the EMA model of a run's checkpoint as a model folder (default <out_dir>/model): the repair for a
    model/ that a crash during its export left broken or stale. Returns the folder."""
    out_dir = Path(out_dir)
    tensors, meta = read_checkpoint(out_dir / CHECKPOINT_NAME)
    imagen = Imagen.from_config(meta["model"], source=str(out_dir / CHECKPOINT_NAME))
    for u, unet in enumerate(imagen.unets, start=1):
        prefix = f"ema.{u}.module."
        load_weights(unet, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                     source=str(out_dir / CHECKPOINT_NAME))
    dest = Path(dest) if dest else out_dir / MODEL_DIR
    imagen.save_pretrained(dest)
    return dest


def train(**settings) -> Path:
    """Train from a notebook: `train(preset="tiny", out_dir="runs/tiny", steps=(20, 10))`; returns the folder.

    Takes TrainConfig field names; with resume=True the saved run's settings are the defaults.
    """
    return Trainer(resolve_config(settings)).fit()
