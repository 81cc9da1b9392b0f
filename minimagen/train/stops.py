"""How a run ends early: on a signal (Ctrl-C, SIGTERM), or when its loss turns NaN.

A signal stops a run the way a time limit stops it: after the current step, with a checkpoint.

Ctrl-C sends SIGINT; `docker stop`, Slurm (at the end of a job's time) and systemd send SIGTERM. Both
mean "stop now, keep what you can", so both are handled alike: the first asks the training loop to
finish its step, write a checkpoint and end with `TrainingInterrupted` (the command line prints one
line saying how to resume); a second one interrupts at once. Outside the training steps (loading
data, writing samples) there is nothing half-done to keep, and a signal interrupts at once.
"""

import signal
import threading

from tqdm.auto import tqdm

from .state import CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME, read_checkpoint_meta

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """The run stopped on SIGINT or SIGTERM after a checkpoint. Attributes: signal, checkpoint, step."""

    def __init__(self, message, signal=None, checkpoint=None, step=None):
        super().__init__(message)
        self.signal, self.checkpoint, self.step = signal, checkpoint, step


class StopOnSignal:
    """A context in which SIGINT and SIGTERM set `.signal` while `.armed`, and raise KeyboardInterrupt otherwise.

    Handlers can only be installed from the main thread; elsewhere (a notebook's worker thread) the
    context does nothing and signals keep their usual effect.
    """

    def __init__(self):
        self.signal, self.armed, self._previous = None, False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        if self.armed and self.signal is None:
            self.signal = signum
            tqdm.write(f"minimagen-train: {signal.Signals(signum).name} received: stopping after this step "
                       f"(with a checkpoint); send it again to stop at once")
            return
        raise KeyboardInterrupt


def exit_code(signum) -> int:
    """The shell's exit status for a process ended by `signum`: 128 + its number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum or signal.SIGINT)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite. Attributes: step, unet, loss, checkpoint (last good one or None)."""

    def __init__(self, message, step=None, unet=None, loss=None, checkpoint=None):
        super().__init__(message)
        self.step, self.unet, self.loss, self.checkpoint = step, unet, loss, checkpoint


def diverged(trainer, unet_number: int, loss: float) -> TrainingDivergedError:
    """The error for a NaN or infinite loss: where the last finite checkpoints are, and how to continue from one."""
    step = trainer.global_step + 1
    cfg = trainer.config
    retry = (f"`minimagen-train --resume --out {trainer.out_dir} --lr {cfg.lr / 2:g} --max-grad-norm "
             f"{(cfg.max_grad_norm or 1.0) / 2:g}`")
    if trainer.last_checkpoint_step is not None and trainer.checkpoint_path.exists():
        saved = [(path, read_checkpoint_meta(path)) for path in
                 (trainer.checkpoint_path, trainer.out_dir / PREVIOUS_CHECKPOINT_NAME) if path.exists()]
        (path, meta), checkpoint = saved[0], trainer.checkpoint_path
        where = f"The last checkpoint, {path} (step {meta['global_step']}, loss {_loss(meta)}), is finite"
        if len(saved) > 1:
            before = saved[1][1]
            where += (f"; the one before is {saved[1][0]} (step {before['global_step']}, loss {_loss(before)}): "
                      f"if the loss was already rising, rename it to {CHECKPOINT_NAME} to go back to it")
        where += f". Continue with a lower learning rate or tighter clipping: {retry}."
    else:
        where, checkpoint = "No checkpoint was written yet; start again with a lower --lr or --max-grad-norm.", None
    return TrainingDivergedError(
        f"training diverged: the loss of U-Net {unet_number} is {loss} at step {step} "
        f"(U-Net {unet_number} step {trainer.steps_done[unet_number - 1] + 1}). {where}",
        step=step, unet=unet_number, loss=loss, checkpoint=checkpoint)


def _loss(meta: dict) -> str:
    return "unknown" if meta.get("loss") is None else f"{meta['loss']:.4g}"
