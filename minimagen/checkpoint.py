"""Saving and loading models: a JSON config with a format version, and safetensors weights.

A model folder holds
    config.json          {"format": "minimagen", "format_version": 1, "imagen": {...}, "unets": [{...}, ...]}
    model.safetensors    every parameter, by its state-dict name
Weights are never unpickled, so loading a folder from a stranger cannot run code. Each file is
written atomically (to a temporary file in the same folder, then renamed), so a crash mid-save never
leaves half a file. The two files share a random `save_id` (in the config and in the weights' metadata):
a crash between the two renames leaves a pair that does not match, which loading reports instead of
silently mixing old and new.
"""

import json
import os
import tempfile
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A model or training checkpoint that cannot be read: missing, truncated, corrupt or of an unknown format."""


def atomic_write(path, write_fn) -> None:
    """Call write_fn(temporary_path), then rename the result onto `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, data) -> None:
    """Atomically write `data` as indented JSON."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    atomic_write(path, write)


def read_json(path, what: str = "config") -> dict:
    """Read a JSON file, turning a missing or corrupt file into a CheckpointError."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError as err:
        raise CheckpointError(f"{what} file not found: {path}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{what} file {path} is corrupt or truncated ({err})") from err


def save_tensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Atomically write a dict of tensors as safetensors (contiguous copies, shared storage split)."""
    tensors = {k: v.detach().contiguous().clone().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_tensors(path, with_metadata: bool = False):
    """Read a safetensors file (and its metadata dict if asked), turning a missing, truncated or
    corrupt file into a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        if not with_metadata:
            return load_file(str(path))
        with safe_open(str(path), framework="pt") as f:  # one read for both tensors and metadata
            return {key: f.get_tensor(key) for key in f.keys()}, f.metadata() or {}
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"weights file {path} is corrupt or truncated ({err})") from err


def model_config(imagen) -> dict:
    """Everything needed to rebuild `imagen`, JSON-serialisable."""
    return {
        "format": "minimagen",
        "format_version": FORMAT_VERSION,
        "imagen": {k: list(v) if isinstance(v, tuple) else v for k, v in imagen.config.items()},
        "unets": [{k: list(v) if isinstance(v, tuple) else v for k, v in u.config.items()} for u in imagen.unets],
    }


def build_from_config(config: dict, source="config"):
    """An Imagen with fresh weights from a config written by model_config."""
    from .Imagen import Imagen
    from .Unet import Unet

    if config.get("format") != "minimagen" or "format_version" not in config:
        raise CheckpointError(f"{source} is not a MinImagen model config (no 'format': 'minimagen')")
    version = config["format_version"]
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{source} has format_version {version!r}; this MinImagen reads format_version "
                              f"{FORMAT_VERSION}. Upgrade minimagen to load it.")
    unets = [Unet(**u) for u in config["unets"]]
    return Imagen(unets, **config["imagen"])


def save_imagen(imagen, directory, dtype: torch.dtype | None = None) -> None:
    """Write config.json and model.safetensors into `directory` (weights cast to `dtype` if given)."""
    directory = Path(directory)
    state = imagen.state_dict()
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_id = uuid.uuid4().hex
    save_tensors(directory / WEIGHTS_NAME, state, metadata={"save_id": save_id})
    write_json(directory / CONFIG_NAME, {**model_config(imagen), "save_id": save_id})


def load_imagen(directory, device=None):
    """Rebuild the Imagen saved in `directory`, weights in float32, on `device`, in eval mode."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"model folder not found: {directory}")
    config = read_json(directory / CONFIG_NAME)
    imagen = build_from_config(config, source=str(directory / CONFIG_NAME))
    state, metadata = load_tensors(directory / WEIGHTS_NAME, with_metadata=True)
    if config.get("save_id") != metadata.get("save_id"):
        raise CheckpointError(f"{directory}: config.json and model.safetensors come from different saves "
                              "(a save was interrupted?); save the model again")
    load_weights(imagen, state, source=str(directory / WEIGHTS_NAME))
    return imagen.to(device or "cpu").eval()


def load_weights(module: torch.nn.Module, state: dict, source="weights") -> None:
    """Load `state` into `module` strictly (float32), with a clear error on mismatched keys or shapes."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not match the model config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}, the config expects "
                                  f"{tuple(expected[key].shape)}")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
