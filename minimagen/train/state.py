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

import json
import os
import random
import shutil
import time
import warnings
from pathlib import Path

import torch
from safetensors import safe_open

from ..checkpoint import (TEMP_PATTERN, CheckpointError, atomic_write, disk_full_error, is_disk_full,
                          load_model_folder, load_tensors, load_weights, tensors_digest, tensors_to_save,
                          write_tensors)
from .lock import check_unlocked

CHECKPOINT_NAME = "checkpoint.safetensors"
MODEL_DIR = "model"
LOG_NAME = "log.jsonl"
SAMPLES_DIR = "samples"
PREVIOUS_CHECKPOINT_NAME = "checkpoint.previous.safetensors"
REPLACED_DIR = ".replaced_run"  # an --overwrite'n run, kept until the new run's first checkpoint
RUN_FILES = (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME, MODEL_DIR, LOG_NAME, SAMPLES_DIR)
CHECKPOINT_FORMAT = "minimagen-train"
CHECKPOINT_VERSION = 1
METADATA_KEY = "minimagen_train"


class RunExistsError(ValueError):
    """The output folder already holds a run, and neither resume nor overwrite was asked for."""


# The checkpoint file -----------------------------------------------------------------------------


def write_checkpoint(path, tensors: dict, meta: dict, keep_previous: bool = False) -> None:
    """Atomically write `tensors` and the JSON `meta` (plus a digest of the tensors) as one safetensors file.

    keep_previous: first keep the checkpoint being replaced as checkpoint.previous.safetensors (a hard
    link, so nothing is copied; the two files then take twice the space), the way back when the newest
    one already holds weights on their way to a NaN.
    """
    path = Path(path)
    tensors = tensors_to_save(tensors)  # the digest is of exactly the bytes written
    meta = {**meta, "tensors_sha256": tensors_digest(tensors)}
    if keep_previous and path.exists():
        _link_or_copy(path, path.with_name(PREVIOUS_CHECKPOINT_NAME))
    write_tensors(path, tensors, metadata={METADATA_KEY: json.dumps(meta)})


def _link_or_copy(source: Path, dest: Path) -> None:
    """Make `dest` the same file as `source` atomically: a hard link where the file system has them."""
    def link(tmp):
        os.remove(tmp)
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (some network or Windows file systems): copy
            shutil.copyfile(source, tmp)
    atomic_write(dest, link)


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
        "loss": trainer.last_loss,  # of the step before this checkpoint: tells a sane one from one about to diverge
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
        _set_peak_lr(opt, sched, trainer.config.lr)
    processes = trainer.accelerator.num_processes
    if meta["num_processes"] != processes:
        warnings.warn(f"{source} was written by a run with {meta['num_processes']} processes and this one has "
                      f"{processes}: training continues from the same data position, "
                      f"but is not bit-identical to a run that kept the same number", stacklevel=3)
    trainer.steps_done = list(meta["steps_done"])
    trainer.data_position = list(meta["data_position"])
    trainer.train_time = meta.get("train_time", 0.0)
    set_rng_state(tensors, meta["rng"])


def file_id(path: Path):
    """(inode, size, modification time) of a file, or None: tells whether someone replaced it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _set_peak_lr(optimizer, scheduler, lr: float) -> None:
    """A resumed run given another --lr (to get past a NaN): the schedule continues from the same step
    with the new peak, lr x lr_multiplier(step)."""
    if scheduler.base_lrs == [lr] * len(scheduler.base_lrs):
        return
    scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in optimizer.param_groups:
        group["initial_lr"], group["lr"] = lr, lr * factor
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def model_matches(model_dir: Path, imagen) -> bool:
    """Whether model_dir is a readable model folder holding exactly `imagen`'s weights."""
    try:
        _, state = load_model_folder(model_dir)
    except CheckpointError:
        return False
    expected = imagen.state_dict()
    return state.keys() == expected.keys() and all(torch.equal(state[k], expected[k].cpu()) for k in state)


# The folder ------------------------------------------------------------------------------------


def open_run(out_dir: Path, resume: bool, overwrite: bool):
    """Before anything is written: the saved run's (tensors, meta) to resume, or None to start afresh.

    FileNotFoundError if resuming without a checkpoint; CheckpointError if it is damaged;
    RunExistsError if the folder holds a run that is neither resumed nor overwritten; RunLockedError
    if another process trains there. An --overwrite that never reached its first checkpoint (killed)
    has its replaced run put back first.
    """
    path = out_dir / CHECKPOINT_NAME
    check_unlocked(out_dir)
    if restore_replaced_run(out_dir):
        warnings.warn(f"{out_dir}: an --overwrite stopped before its first checkpoint; the run it was replacing "
                      f"is back in place", stacklevel=3)
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
    """Create the output folder; with overwrite, move the run it replaces into .replaced_run/ (removed
    once the new run writes its first checkpoint, put back if it never does); with resume, drop log lines
    past `step`, the checkpoint's (the interrupted run's lost steps are about to be redone)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / LOG_NAME
    if resume:
        if log.exists():
            atomic_write(log, lambda tmp: Path(tmp).write_text("".join(line + "\n" for line in read_log(log, step))))
    elif overwrite:
        set_aside_run(out_dir)
    elif log.exists():
        log.unlink()  # a run that stopped before its first checkpoint: nothing in it to keep


def read_log(log: Path, up_to_step: int | None = None) -> list:
    """The lines of log.jsonl (up to `up_to_step`), without the damaged ones a power cut leaves, with a warning."""
    lines = []
    for number, line in enumerate(log.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = record.get("step", 0) if isinstance(record, dict) else None
        except json.JSONDecodeError:
            step = None
        if not isinstance(step, int):
            warnings.warn(f"{log}:{number} is damaged (an interrupted write?) and was dropped", stacklevel=2)
        elif up_to_step is None or step <= up_to_step:
            lines.append(line)
    return lines


def append_log(out_dir: Path, record: dict) -> None:
    """One line of log.jsonl."""
    try:
        with open(out_dir / LOG_NAME, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(out_dir, 4096) from err
        raise


def remove_temporary_files(out_dir: Path) -> list:
    """Delete the temporary files a killed process left behind (atomic_write's `.<name>.<random>.tmp`)."""
    stale = [p for folder in (out_dir, out_dir / MODEL_DIR, out_dir / SAMPLES_DIR) if folder.is_dir()
             for p in folder.glob(TEMP_PATTERN) if p.is_file()]
    for path in stale:
        path.unlink()
    return stale


# Replacing a run (--overwrite) without losing it before the new one has a checkpoint ---------------


def set_aside_run(out_dir: Path) -> None:
    """Move the run files of out_dir into out_dir/.replaced_run/."""
    replaced = out_dir / REPLACED_DIR
    if replaced.exists():  # an earlier --overwrite never reached its first checkpoint: that run is the one to keep
        restore_replaced_run(out_dir)
    replaced.mkdir()
    for name in RUN_FILES:
        if (out_dir / name).exists():
            os.replace(out_dir / name, replaced / name)


def restore_replaced_run(out_dir: Path) -> bool:
    """Put back a run set aside by an --overwrite that stopped before its first checkpoint; True if one was."""
    replaced = out_dir / REPLACED_DIR
    if not replaced.is_dir():
        return False
    for name in RUN_FILES:
        current = out_dir / name
        if current.is_dir():
            shutil.rmtree(current)
        elif current.exists():
            current.unlink()
        if (replaced / name).exists():
            os.replace(replaced / name, current)
    shutil.rmtree(replaced)
    return True


def resumable_checkpoint(out_dir: Path) -> Path:
    """The checkpoint --resume continues: the folder's, or the one an unfinished --overwrite set aside
    (open_run puts it back)."""
    path, replaced = out_dir / CHECKPOINT_NAME, out_dir / REPLACED_DIR / CHECKPOINT_NAME
    return replaced if not path.exists() and replaced.exists() else path


def discard_replaced_run(out_dir: Path) -> None:
    """The new run has its first checkpoint: the run it replaced can go."""
    shutil.rmtree(out_dir / REPLACED_DIR, ignore_errors=True)
