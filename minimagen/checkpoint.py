"""Saving and loading models: a JSON config with a format version, and safetensors weights.

A model folder holds
    config.json          {"format": "minimagen", "format_version": 2, "imagen": {...}, "unets": [{...}, ...]}
    model.safetensors    every parameter, by its state-dict name
Weights are never unpickled, so loading a folder from a stranger cannot run code. Each file is
written atomically (to a temporary file in the same folder, then renamed), so a crash mid-save never
leaves half a file. The two files share a random `save_id` (in the config and in the weights' metadata):
a crash between the two renames leaves a pair that does not match, which loading reports instead of
silently mixing old and new.

This module is file formats only: it imports no model. `Imagen.save_pretrained` and
`Imagen.from_pretrained` turn a cascade into these files and back.
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

FORMAT_VERSION = 2  # 2 added the recommended sampling settings ("sampling") to the Imagen config
READABLE_VERSIONS = (1, 2)
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


def tensors_to_save(tensors: dict) -> dict:
    """Contiguous CPU copies of `tensors`; copying also splits shared storage, which safetensors refuses."""
    return {k: v.detach().contiguous().clone().cpu() for k, v in tensors.items()}


def write_tensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Atomically write tensors already made by tensors_to_save as one safetensors file."""
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_tensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Atomically write a dict of tensors as safetensors (contiguous CPU copies, shared storage split)."""
    write_tensors(path, tensors_to_save(tensors), metadata)


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


def check_model_config(config, source="config") -> None:
    """CheckpointError unless `config` is a model config this version reads (format_version 1 or 2;
    version 1 folders predate the recommended sampling settings, which then take their defaults)."""
    if not isinstance(config, dict) or config.get("format") != "minimagen" or "format_version" not in config:
        raise CheckpointError(f"{source} is not a MinImagen model config (no 'format': 'minimagen')")
    version = config["format_version"]
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{source} has format_version {version!r}; this MinImagen reads format_version "
                              f"{READABLE_VERSIONS[0]} to {FORMAT_VERSION}. Upgrade minimagen to load it.")


def save_model_folder(directory, config: dict, state: dict) -> None:
    """Write a model folder: `state` (name -> tensor) to model.safetensors, then `config` to config.json,
    each atomically, both stamped with one new save_id."""
    directory = Path(directory)
    save_id = uuid.uuid4().hex
    save_tensors(directory / WEIGHTS_NAME, state, metadata={"save_id": save_id})
    write_json(directory / CONFIG_NAME, {**config, "save_id": save_id})


def load_model_folder(directory) -> tuple:
    """(config, state) of a model folder, checked to come from one save; CheckpointError if unusable."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"model folder not found: {directory}")
    config = read_json(directory / CONFIG_NAME)
    check_model_config(config, source=str(directory / CONFIG_NAME))
    state, metadata = load_tensors(directory / WEIGHTS_NAME, with_metadata=True)
    if config.get("save_id") != metadata.get("save_id"):
        raise CheckpointError(f"{directory}: config.json and model.safetensors come from different saves "
                              "(a save was interrupted?); save the model again")
    return config, state


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
