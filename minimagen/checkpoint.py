"""Saving and loading models: a JSON config with a format version, and safetensors weights.

A model folder holds
    config.json          {"format": "minimagen", "format_version": 2, "imagen": {...}, "unets": [{...}, ...]}
    model.safetensors    every parameter, by its state-dict name
Weights are never unpickled, so loading a folder from a stranger cannot run code. Each file is
written atomically (to a temporary file in the same folder, then renamed), so a crash mid-save never
leaves half a file. The two files share a random `save_id` (in the config and in the weights' metadata):
a crash between the two renames leaves a pair that does not match, which loading reports instead of
silently mixing old and new. config.json also holds `weights_sha256`, a SHA-256 of every tensor
(`tensors_digest`), so flipped bytes in the weights are refused on load instead of sampled as NaN
(folders saved before it existed load unchecked). A full disk is reported as one sentence
(`DiskFullError`) naming the folder, the space needed and the space free.

This module is file formats only: it imports no model. `Imagen.save_pretrained` and
`Imagen.from_pretrained` turn a cascade into these files and back.
"""

import errno
import hashlib
import json
import os
import shutil
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


class DiskFullError(OSError):
    """No space left where a file was being written; its message is one sentence naming the folder."""


# The names of atomic_write's temporary files: `.<name>.<random>.tmp` beside the file they will become.
TEMP_PATTERN = ".*.tmp"


def disk_full_error(folder, needed_bytes: int | None = None) -> DiskFullError:
    """The one-sentence error for a full disk under `folder`: the space needed (when known) and free."""
    folder = Path(folder)
    free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    need = f"about {needed_bytes / 1e6:.1f} MB" if needed_bytes else "more space"
    return DiskFullError(errno.ENOSPC, f"the disk holding {folder} is full: writing there needs {need} and "
                                       f"{free / 1e6:.1f} MB are free; free some space and run the command again")


def is_disk_full(err: OSError) -> bool:
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def atomic_write(path, write_fn, size_hint: int | None = None) -> None:
    """Call write_fn(temporary_path), then rename the result onto `path` in one step.

    size_hint: the bytes the file will take, for the DiskFullError when the disk fills up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            write_fn(tmp)
        except OSError as err:
            if is_disk_full(err) and not isinstance(err, DiskFullError):
                raise disk_full_error(path.parent, size_hint) from err
            raise
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


def tensors_digest(tensors: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tensors_to_save(tensors: dict) -> dict:
    """Contiguous CPU copies of `tensors`; copying also splits shared storage, which safetensors refuses."""
    return {k: v.detach().contiguous().clone().cpu() for k, v in tensors.items()}


def write_tensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Atomically write tensors already made by tensors_to_save as one safetensors file."""
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), size_hint=size)


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
    _check_structure(config, source)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _one_or_list(check):
    return lambda v: check(v) or (isinstance(v, list) and len(v) > 0 and all(check(x) for x in v))


# The JSON form of each setting under "imagen" in config.json (what Imagen(**config["imagen"]) takes). A new
# Imagen setting needs its line here (tests/test_validation.py checks that every one has), or it is refused.
IMAGEN_CONFIG_FORMS = {
    "image_sizes": (lambda v: isinstance(v, list) and v and all(_is_int(x) and x > 0 for x in v),
                    "a list of positive integers, one per U-Net"),
    "text_encoder_name": (lambda v: isinstance(v, str) and v, "a text encoder name (a non-empty string)"),
    "text_embed_dim": (lambda v: v is None or (_is_int(v) and v > 0), "a positive integer"),
    "channels": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "timesteps": (_one_or_list(lambda x: _is_int(x) and x > 0), "a positive integer or a list of them"),
    "noise_schedules": (_one_or_list(lambda x: isinstance(x, str)), "a schedule name or a list of them"),
    "pred_objectives": (_one_or_list(lambda x: isinstance(x, str)), "an objective name or a list of them"),
    "cond_drop_prob": (_is_number, "a number in [0, 1]"),
    "loss_type": (lambda v: isinstance(v, str), "a loss name"),
    "min_snr_gamma": (lambda v: v is None or _is_number(v), "a number or null"),
    "lowres_noise_schedule": (lambda v: isinstance(v, str), "a schedule name"),
    "lowres_sample_noise_level": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "auto_normalize_img": (lambda v: isinstance(v, bool), "true or false"),
    "dynamic_thresholding": (_one_or_list(lambda x: isinstance(x, bool)), "true/false or a list of them"),
    "dynamic_thresholding_percentile": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "dynamic_thresholding_max": (lambda v: v is None or _is_number(v), "a number or null"),
    "only_train_unet_number": (lambda v: v is None or _is_int(v), "an integer or null"),
    "random_crop_sizes": (lambda v: v is None or _one_or_list(lambda x: x is None or _is_int(x))(v),
                          "null or a list of sides (null or an integer), one per U-Net"),
    "sampling": (lambda v: isinstance(v, dict), 'an object {"sampler", "steps", "cond_scale"}'),
}


def _check_structure(config: dict, source) -> None:
    """CheckpointError naming the key and the form expected, for a config.json of the wrong shape."""
    def need(ok, key, form):
        if not ok:
            raise CheckpointError(f"{source}: {key} must be {form}")

    imagen, unets = config.get("imagen"), config.get("unets")
    need(isinstance(imagen, dict), '"imagen"', "an object of the cascade's settings")
    need(isinstance(unets, list) and unets and all(isinstance(u, dict) for u in unets), '"unets"',
         "a non-empty list of objects, one U-Net's settings each")
    need("image_sizes" in imagen, '"imagen"', 'an object with the key "image_sizes"')
    unknown = sorted(set(imagen) - set(IMAGEN_CONFIG_FORMS))
    need(not unknown, f'"imagen" key {unknown[0]!r}' if unknown else "", f"one of {', '.join(IMAGEN_CONFIG_FORMS)}")
    for key, value in imagen.items():
        check, form = IMAGEN_CONFIG_FORMS[key]
        need(check(value), f'"imagen"."{key}"', f"{form}, got {value!r}")
    need(len(imagen["image_sizes"]) == len(unets), '"imagen"."image_sizes"',
         f"one size per U-Net ({len(unets)} in \"unets\"), got {imagen['image_sizes']!r}")
    for i, unet in enumerate(unets):
        bad = next((k for k, v in unet.items() if not isinstance(k, str) or isinstance(v, dict)), None)
        need(bad is None, f'"unets"[{i}]."{bad}"', "a number, string, boolean, null or list")


def save_model_folder(directory, config: dict, state: dict) -> None:
    """Write a model folder: `state` (name -> tensor) to model.safetensors, then `config` to config.json,
    each atomically, both stamped with one new save_id."""
    directory = Path(directory)
    save_id = uuid.uuid4().hex
    tensors = tensors_to_save(state)  # the digest is of exactly the bytes written
    write_tensors(directory / WEIGHTS_NAME, tensors, metadata={"save_id": save_id})
    write_json(directory / CONFIG_NAME, {**config, "save_id": save_id, "weights_sha256": tensors_digest(tensors)})


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
                              "(a save was interrupted?); save the model again (a training run's model/: "
                              "minimagen-train --export --out RUN_FOLDER)")
    if "weights_sha256" in config and tensors_digest(state) != config["weights_sha256"]:
        raise CheckpointError(f"{directory / WEIGHTS_NAME} is corrupt: its tensors do not match the checksum "
                              f"in {CONFIG_NAME}; save or download the model again")
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
