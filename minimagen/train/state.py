"""The run folder on disk: the training checkpoint, the random-number states, the log and the folder itself.

A run's output folder holds:
    checkpoint.safetensors   everything needed to continue exactly (below)
    model/                   the EMA weights as an Imagen.save_pretrained folder, for sampling
    log.jsonl                one JSON line per `log_every` steps: step, unet, loss, lr, images_per_s, time
    samples/step_XXXXXX.png  a grid of EMA samples with fixed captions and a fixed seed

The checkpoint is one safetensors file, never a pickle (loading a stranger's checkpoint cannot run
code): tensors named `model.<state-dict key>` (raw weights), `ema.<u>.<key>` (AveragedModel state),
`optimizer.<u>.<param index>.<name>` (AdamW moments and step), `rng.torch`, `rng.cuda.<i>`; and in
the file's metadata, under "minimagen_train", a JSON with the config, step counters, data
positions, optimizer param groups, scheduler states, Python/NumPy RNG states and a SHA-256 of all
tensor bytes (so a damaged file is refused instead of resumed). The file is written to a temporary
name and renamed, so a crash while saving leaves the previous checkpoint intact.

This module knows files, not training: `training_state` and `load_training_state` read and set the
parts of a Trainer (its cascade, EMA copies, optimizers, schedulers and counters) by name.
"""

import hashlib
import json
import random
import time
import warnings
from pathlib import Path

import torch
from safetensors import safe_open

from ..checkpoint import (CONFIG_NAME, WEIGHTS_NAME, CheckpointError, atomic_write, load_tensors, load_weights,
                          tensors_to_save, write_tensors)

CHECKPOINT_NAME = "checkpoint.safetensors"
MODEL_DIR = "model"
LOG_NAME = "log.jsonl"
SAMPLES_DIR = "samples"
CHECKPOINT_FORMAT = "minimagen-train"
CHECKPOINT_VERSION = 1
METADATA_KEY = "minimagen_train"


class RunExistsError(ValueError):
    """The output folder already holds a run, and neither resume nor overwrite was asked for."""


# The checkpoint file -----------------------------------------------------------------------------


def tensors_digest(tensors: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_checkpoint(path, tensors: dict, meta: dict) -> None:
    """Atomically write `tensors` and the JSON `meta` (plus a digest of the tensors) as one safetensors file."""
    tensors = tensors_to_save(tensors)  # the digest is of exactly the bytes written
    meta = {**meta, "tensors_sha256": tensors_digest(tensors)}
    write_tensors(path, tensors, metadata={METADATA_KEY: json.dumps(meta)})


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
    if tensors_digest(tensors) != meta.get("tensors_sha256"):
        raise CheckpointError(f"training checkpoint {path} is corrupt: its tensors do not match their checksum")
    return tensors, meta


def _subdict(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# Random-number states ----------------------------------------------------------------------------


def rng_state() -> tuple:
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


def set_rng_state(tensors: dict, meta: dict) -> None:
    """Restore the states `rng_state` returned (CUDA's only on as many devices as were saved)."""
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


# A trainer's state as tensors + JSON ---------------------------------------------------------------


def training_state(trainer) -> tuple:
    """(tensors, meta): everything needed to continue `trainer` exactly, as checkpoint.safetensors holds it."""
    tensors = {f"model.{k}": v for k, v in trainer.imagen.state_dict().items()}
    optimizers = []
    for u, (ema, opt) in enumerate(zip(trainer.emas, trainer.optimizers), start=1):
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
    rng_tensors, rng_meta = rng_state()
    tensors.update(rng_tensors)
    meta = {
        "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
        "config": trainer.config.to_dict(), "model": trainer.imagen.model_config(),
        "global_step": trainer.global_step, "steps_done": trainer.steps_done,
        "data_position": trainer.data_position,  # samples drawn so far from each U-Net's data stream
        "num_processes": trainer.accelerator.num_processes,
        "optimizers": optimizers, "schedulers": [s.state_dict() for s in trainer.schedulers],
        "rng": rng_meta, "train_time": trainer.train_time, "saved_at": time.time(),
    }
    return tensors, meta


def load_training_state(trainer, tensors: dict, meta: dict, source: str) -> None:
    """Put a checkpoint's state (from read_checkpoint) into `trainer`, and restore the RNG states."""
    load_weights(trainer.imagen, _subdict(tensors, "model."), source=source)
    for u, (ema, opt, sched) in enumerate(zip(trainer.emas, trainer.optimizers, trainer.schedulers), start=1):
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
    processes = trainer.accelerator.num_processes
    if meta["num_processes"] != processes:
        warnings.warn(f"{source} was written by a run with {meta['num_processes']} processes and this one has "
                      f"{processes}: training continues from the same data position, "
                      f"but is not bit-identical to a run that kept the same number", stacklevel=3)
    trainer.steps_done = list(meta["steps_done"])
    trainer.data_position = list(meta["data_position"])
    trainer.train_time = meta.get("train_time", 0.0)
    set_rng_state(tensors, meta["rng"])


# The folder ------------------------------------------------------------------------------------


def open_run(out_dir: Path, resume: bool, overwrite: bool):
    """Before anything is written: the saved run's (tensors, meta) to resume, or None to start afresh.

    FileNotFoundError if resuming without a checkpoint; CheckpointError if it is damaged;
    RunExistsError if the folder holds a run that is neither resumed nor overwritten.
    """
    path = out_dir / CHECKPOINT_NAME
    if resume:
        if not path.exists():
            raise FileNotFoundError(f"cannot resume: there is no checkpoint at {path}. Start a new run without resume.")
        return read_checkpoint(path)
    if not overwrite and (path.exists() or (out_dir / MODEL_DIR).exists()):
        raise RunExistsError(f"{out_dir} already holds a training run ({CHECKPOINT_NAME} or {MODEL_DIR}/). "
                             f"Continue it with --resume (resume=True), choose another --out, or replace it "
                             f"with --overwrite (overwrite=True).")
    return None


def prepare_out_dir(out_dir: Path, resume: bool, overwrite: bool, step: int) -> None:
    """Create the output folder; with overwrite, remove the files of the run it replaces; with resume,
    drop log lines past `step`, the checkpoint's (the interrupted run's lost steps are about to be redone)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / LOG_NAME
    if resume:
        if log.exists():
            lines = [line for line in log.read_text().splitlines()
                     if line.strip() and json.loads(line).get("step", 0) <= step]
            atomic_write(log, lambda tmp: Path(tmp).write_text("".join(line + "\n" for line in lines)))
    elif overwrite:
        for path in [out_dir / CHECKPOINT_NAME, log, out_dir / MODEL_DIR / CONFIG_NAME,
                     out_dir / MODEL_DIR / WEIGHTS_NAME, *(out_dir / SAMPLES_DIR).glob("step_*.png")]:
            if path.exists():
                path.unlink()
    elif log.exists():
        log.unlink()  # a run that stopped before its first checkpoint: nothing in it to keep


def append_log(out_dir: Path, record: dict) -> None:
    """One line of log.jsonl."""
    with open(out_dir / LOG_NAME, "a") as f:
        f.write(json.dumps(record) + "\n")
