"""Pretrained MinImagen models shipped inside the package.

    from minimagen.pretrained import load_pretrained, available
    imagen = load_pretrained("shapes")           # an Imagen in eval mode, float32
    images = imagen.sample(["a red circle on a blue background"], cond_scale=3, seed=0)

Each model is a folder `minimagen/pretrained/<name>/` written by `Imagen.save_pretrained` with
the weights in float16 (half the download; they are loaded back as float32):
    config.json, model.safetensors
To make one from a training run:
    minimagen-train --preset shapes --out runs/shapes
    python -c "from minimagen.pretrained import export; export('runs/shapes/model', 'shapes')"
"""

from pathlib import Path

import torch

from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME
from ..Imagen import Imagen

PRETRAINED_DIR = Path(__file__).resolve().parent
TRAIN_COMMANDS = {"shapes": "minimagen-train --preset shapes --out runs/shapes",
                  "emoji": "minimagen-train --preset emoji --out runs/emoji"}


def available() -> list:
    """Names of the pretrained models present in this installation (folders with config and weights)."""
    return sorted(p.name for p in PRETRAINED_DIR.iterdir()
                  if p.is_dir() and (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file())


def path_of(name: str) -> Path:
    """The folder of pretrained model `name`; FileNotFoundError saying how to get it when it is missing."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"name must be the name of a pretrained model (e.g. 'shapes'), got {name!r}")
    folder = PRETRAINED_DIR / name
    if not ((folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()):
        command = TRAIN_COMMANDS.get(name, f"minimagen-train --preset shapes --out runs/{name}")
        have = ", ".join(available()) or "none"
        raise FileNotFoundError(
            f"The pretrained weights '{name}' are not in this installation (looked in {folder}; available: {have}). "
            f"Train them yourself with `{command}` and pass the result to `--model runs/{name}/model` "
            f"(or Imagen.from_pretrained), or copy them here with "
            f"minimagen.pretrained.export('runs/{name}/model', '{name}').")
    return folder


def load_pretrained(name: str = "shapes", device=None):
    """The pretrained Imagen `name` (weights stored in float16, loaded as float32), on `device`, in eval mode.

    Its folder is checked before use: a damaged file (checksum) or malformed config.json is a CheckpointError.
    """
    return Imagen.from_pretrained(path_of(name), device=device)  # it checks the device before reading weights


def export(model_dir, name: str, dest=None) -> Path:
    """Copy a trained model folder (e.g. runs/shapes/model) into the package as `name`, weights in float16."""
    dest = Path(dest) if dest is not None else PRETRAINED_DIR / name
    imagen = Imagen.from_pretrained(model_dir)
    imagen.save_pretrained(dest, dtype=torch.float16)
    return dest


__all__ = ["available", "load_pretrained", "path_of", "export", "PRETRAINED_DIR"]
