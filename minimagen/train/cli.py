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

from ..checkpoint import CheckpointError
from .config import CHOICES, PRESETS, TrainConfig, resolve_config
from .trainer import Trainer, TrainingDivergedError

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


def train(**settings) -> Path:
    """Train from a notebook: `train(preset="tiny", out_dir="runs/tiny", steps=(20, 10))`; returns the folder.

    Takes TrainConfig field names; with resume=True the saved run's settings are the defaults.
    """
    return Trainer(resolve_config(settings)).fit()
