"""The Trainer: the U-Nets of a cascade, trained one after another to their step targets.

Read in order: `__init__` builds everything (and fails on bad input before any file is touched),
`fit` shares the time among the U-Nets, `_train_unet` takes one optimizer step after another,
`compute_loss` sends one micro-batch through `Imagen.forward`. The helpers of a step, the data, the
state and the sample grids come after.

How the U-Nets are scheduled. The stages of a cascade are trained independently: the super-
resolution U-Net learns from downsampled *real* images, never from the base U-Net's output. So
the order does not change the result, and we train them in sequential blocks (all of U-Net 1's
steps, then all of U-Net 2's) rather than round-robin: only one U-Net, its optimizer and its data
are live at a time (the other's data is never drawn, its images can be drawn at its own, smaller
size), the position in a run is just "U-Net u, step s", and under `accelerate` only the U-Net being
trained is wrapped for distributed training. `--steps 3000,1000` gives each U-Net its own budget;
with `--time-limit` each U-Net gets a share of the wall-clock time that is left in proportion to
its work still to do: its steps left x its seconds per step, measured once on this machine by a
forward and backward pass on a batch of its shape (`_step_cost`).
"""

import dataclasses
import math
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ..checkpoint import CheckpointError, atomic_write
from ..data import TextEmbeddingCache, TextImageCollator
from ..data.order import collate_images_and_texts, mix_seed
from ..Imagen import Imagen
from ..utils import get_device, image_grid, set_seed
from ..validation import check_device
from .build import build_imagen, make_optimizer, make_scheduler, resolve_precision
from .config import TrainConfig, check_resumable
from .data import build_dataset, default_sample_captions, step_dataloader, warm_cache
from .stops import StopOnSignal, TrainingInterrupted, diverged
from .lock import RunLock
from .state import (CHECKPOINT_NAME, MODEL_DIR, SAMPLES_DIR, RunExistsError, append_log,
                    discard_replaced_run, file_id, load_training_state, model_matches, open_run, prepare_out_dir,
                    remove_temporary_files, restore_replaced_run, training_state, write_checkpoint)


class Trainer:
    """Trains the U-Nets of an Imagen cascade; see the module docstring and minimagen.train's.

    config: a TrainConfig. dataset (optional, Python API only): your own data instead of
        config.data: a dataset of (image (3, s, s) in [0, 1], caption), or a function
        size -> such a dataset; its images must be at least as large as the stage trained on them.
    Nothing is written before fit(). Attributes: imagen (raw weights), ema_imagen (the EMA weights,
    what is sampled and exported), steps_done (per U-Net), global_step.
    """

    def __init__(self, config: TrainConfig, dataset=None):
        from accelerate import Accelerator

        if dataset is not None and config.data != "custom":
            config = dataclasses.replace(config, data="custom")
        config.validate()
        self.config, self.user_dataset = config, dataset
        self.out_dir = Path(config.out_dir)
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME

        # Everything that can fail on bad input fails here, before any work is done or file touched.
        saved = open_run(self.out_dir, config.resume, config.overwrite)  # (tensors, meta) to resume, or None
        self._opened = file_id(self.checkpoint_path)  # fit() checks no one else wrote it in between
        if saved is not None:
            check_resumable(TrainConfig.from_dict(saved[1]["config"]), config, self.checkpoint_path)
        if config.data == "custom" and dataset is None:
            raise ValueError("this run trains on a dataset given from Python (data='custom'): pass it again, "
                             "Trainer(config, dataset=...)")
        if config.num_threads:
            torch.set_num_threads(config.num_threads)

        # Device and precision. accelerate runs as one plain process without any configuration, and
        # as one process per GPU under `accelerate launch`.
        device = get_device() if config.device == "auto" else check_device(config.device, "device")
        self.precision = resolve_precision(config.precision, device)
        # step_scheduler_with_optimizer=False: we step the LR scheduler once per optimizer step
        # ourselves; accelerate's default would step it once per process, speeding up warm-up.
        # mixed_precision="no": compute_loss autocasts itself, because accelerate fixes one precision
        # per process and a notebook could then not train in bf16 and afterwards in fp32.
        self.accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, mixed_precision="no",
                                       cpu=device.type == "cpu", step_scheduler_with_optimizer=False)
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process

        # Model, EMA copies, one optimizer and one LR schedule per U-Net.
        set_seed(config.seed)
        self.imagen = build_imagen(config).to(self.device)
        self.emas = [AveragedModel(unet, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
                     for unet in self.imagen.unets]
        # An Imagen around the EMA U-Nets (shared modules, not copies): what we sample and export.
        self.ema_imagen = Imagen([ema.module for ema in self.emas], **self.imagen.config).to(self.device).eval()
        self.optimizers = [make_optimizer(unet, config) for unet in self.imagen.unets]
        self.schedulers = [make_scheduler(opt, config, steps)
                           for opt, steps in zip(self.optimizers, config.target_steps())]
        self.steps_done = [0] * config.num_unets
        self.data_position = [0] * config.num_unets  # samples drawn from each U-Net's data stream
        self.train_time = 0.0  # seconds spent training, summed over resumed runs
        self.last_checkpoint_step = None
        self.last_sample_step = None
        self.last_loss = None  # the loss of the latest step, saved with each checkpoint
        self._stop = StopOnSignal()
        self.cache = TextEmbeddingCache(config.text_encoder, cache_dir=config.text_cache_dir)
        self._datasets = {}
        self._sample_captions = list(config.sample_captions) if config.sample_captions else None
        self._training_unet = {}  # U-Net index -> the module accelerate prepared (DDP-wrapped when distributed)
        self._step_costs = {}  # U-Net number -> measured seconds per step, for sharing a time limit
        if saved is not None:
            try:
                load_training_state(self, *saved, source=str(self.checkpoint_path))
            except (KeyError, IndexError, TypeError) as err:  # a checkpoint from another version of this file
                raise CheckpointError(f"{self.checkpoint_path} lacks part of the training state ({err!r})") from err
            self.last_checkpoint_step = self.global_step

    # The loop ------------------------------------------------------------------------------------

    def fit(self) -> Path:
        """Train the chosen U-Nets to their step targets (or until the time limit); returns the output folder.

        Everything that can fail on the data or the text encoder fails before the run folder is touched
        (`_preflight`); then the folder is locked against a second trainer, the temporary files of a
        killed run are removed, and a resumed run's model/ is re-exported if it is not the checkpoint's.
        SIGINT or SIGTERM stop it after the current step with a checkpoint (TrainingInterrupted).
        """
        cfg = self.config
        self._preflight()
        lock = RunLock(self.out_dir) if self.is_main else None
        if lock is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            stale = lock.acquire()
            if stale:
                tqdm.write(f"minimagen-train: took over the lock of a process that no longer runs ({stale})")
        try:
            if file_id(self.checkpoint_path) != self._opened:
                raise RunExistsError(f"{self.checkpoint_path} changed since this Trainer opened it (another run "
                                     f"wrote it); start again")
            if self.is_main:
                remove_temporary_files(self.out_dir)
                prepare_out_dir(self.out_dir, cfg.resume, cfg.overwrite, self.global_step)
                if cfg.resume and not model_matches(self.out_dir / MODEL_DIR, self.ema_imagen):
                    tqdm.write(f"minimagen-train: {self.out_dir / MODEL_DIR} did not hold the checkpoint's model "
                               f"(an export was interrupted): exported again")
                    self.export()
            with self._stop:
                return self._fit()
        except BaseException:
            if self.is_main and cfg.overwrite and self.last_checkpoint_step is None:
                restore_replaced_run(self.out_dir)  # the new run has nothing to show: the old one comes back
            raise
        finally:
            if lock is not None:
                lock.release()

    def _preflight(self) -> None:
        """Open the data of every U-Net still to train, load the text encoder and build a first batch."""
        cfg = self.config
        todo = self._unfinished(cfg.unet_numbers())
        for u in todo:
            self.dataset(u)
        if todo:
            batch = next(iter(self.dataloader(todo[0])))
            if "text_embeds" not in batch:
                self.cache.encode(batch["texts"][:1])
        self.sample_captions()

    def _unfinished(self, unet_numbers) -> list:
        """Those of unet_numbers (1-based) whose U-Net has steps left to its target."""
        targets = self.config.target_steps()
        return [u for u in unet_numbers if self.steps_done[u - 1] < targets[u - 1]]

    def _fit(self) -> Path:
        cfg = self.config
        start = time.monotonic()
        budget = cfg.time_limit * 60 if cfg.time_limit else None
        targets = cfg.target_steps()
        todo = self._unfinished(cfg.unet_numbers())
        if self.is_main:
            sizes = ", ".join(f"U-Net {u} ({cfg.unets[u - 1]}, {cfg.image_sizes[u - 1]}px, "
                              f"{sum(p.numel() for p in self.imagen.unets[u - 1].parameters()) / 1e6:.2f}M params): "
                              f"{self.steps_done[u - 1]}/{targets[u - 1]} steps" for u in cfg.unet_numbers())
            precision = "bf16 autocast" if self.precision == "bf16" else "fp32"
            tqdm.write(f"minimagen-train: {sizes}; device {self.device} ({precision}), "
                       f"{self.accelerator.num_processes} process(es), output {self.out_dir}")
        out_of_time = False
        for k, u in enumerate(todo):
            deadline = None
            if budget is not None:
                # Share what is left of the time budget in proportion to the work still to do, in
                # measured seconds per step.
                work = [(targets[v - 1] - self.steps_done[v - 1]) * self._step_cost(v) for v in todo[k:]]
                deadline = time.monotonic() + max(0.0, budget - (time.monotonic() - start)) * work[0] / sum(work)
            finished = self._train_unet(u, deadline)
            out_of_time |= not finished
            if self._stop.signal is not None:
                break
        if self.last_checkpoint_step != self.global_step or not (self.out_dir / MODEL_DIR).exists():
            self.save_checkpoint()
        if self._stop.signal is not None:
            raise TrainingInterrupted(f"stopped at step {self.global_step}; the checkpoint is {self.checkpoint_path}: "
                                      f"continue with --resume --out {self.out_dir}", signal=self._stop.signal,
                                      checkpoint=self.checkpoint_path, step=self.global_step)
        trained = [u for u in range(1, cfg.num_unets + 1) if self.steps_done[u - 1] > 0]
        if self.last_sample_step != self.global_step and trained:
            self.save_samples(max(trained))
        if self.is_main:
            every = range(1, cfg.num_unets + 1)
            status = ", ".join(f"U-Net {u} {self.steps_done[u - 1]}/{targets[u - 1]}" for u in every)
            left = self._unfinished(every)
            why = ("time limit reached; continue with --resume" if out_of_time else
                   f"done with U-Net {cfg.unet}; U-Net {', '.join(map(str, left))} not finished: continue with "
                   f"--resume" if left else "done")
            tqdm.write(f"minimagen-train: {why} ({status}). Model: {self.out_dir / MODEL_DIR}; try\n"
                       f"  minimagen-sample --model {self.out_dir / MODEL_DIR} \"{self.sample_captions()[0]}\"")
        return self.out_dir

    def _train_unet(self, unet_number: int, deadline: float | None) -> bool:
        """Train one U-Net up to its target; returns False when stopped by the deadline."""
        cfg, acc = self.config, self.accelerator
        i = unet_number - 1
        target = cfg.target_steps()[i]
        loader = self.dataloader(unet_number)
        unet = self.imagen.unets[i].train()
        prepared, optimizer, loader, scheduler = acc.prepare(unet, self.optimizers[i], loader, self.schedulers[i])
        self._training_unet[i] = prepared
        images_per_step = cfg.batch_size * cfg.grad_accum * acc.num_processes
        bar = tqdm(total=target, initial=self.steps_done[i], desc=f"U-Net {unet_number}",
                   disable=not (cfg.progress and self.is_main), dynamic_ncols=True)
        batches = iter(loader)
        losses, interval_time, interval_images = [], 0.0, 0
        finished = True
        self._stop.armed = True  # a signal now stops the loop after its step, with a checkpoint
        try:
            while self.steps_done[i] < target:
                tick = time.perf_counter()
                step_losses = []
                for micro in range(cfg.grad_accum):
                    batch = next(batches)
                    self._reseed(unet_number, micro)
                    with acc.accumulate(prepared):
                        loss = self.compute_loss(unet_number, batch)
                        value = acc.reduce(loss.detach().float(), reduction="mean").item()  # mean over processes
                        if not math.isfinite(value):
                            raise diverged(self, unet_number, value)
                        step_losses.append(value)
                        acc.backward(loss)  # divides by grad_accum, so the accumulated gradient is a mean
                        if acc.sync_gradients and cfg.max_grad_norm:
                            acc.clip_grad_norm_(prepared.parameters(), cfg.max_grad_norm)  # torch's, after unscaling
                        optimizer.step()  # skipped by accelerate until the last micro-batch
                        if acc.sync_gradients:
                            scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                self.steps_done[i] += 1
                self.data_position[i] += images_per_step
                self._update_ema(i)
                elapsed = time.perf_counter() - tick
                self.train_time += elapsed
                losses.append(sum(step_losses) / len(step_losses))
                self.last_loss = losses[-1]
                interval_time += elapsed
                interval_images += images_per_step
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", img_s=f"{images_per_step / max(elapsed, 1e-9):.1f}")

                step = self.global_step
                if self.steps_done[i] % cfg.log_every == 0 or self.steps_done[i] == target:
                    self._log({"step": step, "unet": unet_number, "unet_step": self.steps_done[i],
                               "loss": sum(losses) / len(losses), "lr": self.optimizers[i].param_groups[0]["lr"],
                               "images_per_s": interval_images / max(interval_time, 1e-9),
                               "time": round(self.train_time, 3)})
                    losses, interval_time, interval_images = [], 0.0, 0
                if cfg.sample_every and step % cfg.sample_every == 0:
                    self.save_samples(unet_number)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if self.steps_done[i] < target and self._should_stop(deadline):
                    finished = False
                    break
        finally:
            self._stop.armed = False
            bar.close()
            self._training_unet.pop(i, None)
            unet.eval()
        # The end of a U-Net's block is a natural resting point: keep it, and show what it learnt.
        if self.last_checkpoint_step != self.global_step:
            self.save_checkpoint()
        if self.last_sample_step != self.global_step and self._stop.signal is None:  # a signal asks for a quick end
            self.save_samples(unet_number)
        return finished

    def compute_loss(self, unet_number: int, batch: dict) -> torch.Tensor:
        """The diffusion loss (a scalar) of U-Net `unet_number` on one micro-batch (images in [0, 1])."""
        if "text_embeds" in batch:
            embeds, masks = batch["text_embeds"], batch["text_masks"]
        else:
            embeds, masks = self.cache.encode(batch["texts"])  # encoded on first sight, then cached
        # While a U-Net trains, it runs as the module accelerate prepared (DDP-wrapped when distributed),
        # so its gradients are synchronised across processes; otherwise (None) as the cascade's own.
        with self._autocast():
            return self.imagen(batch["images"].to(self.device), text_embeds=embeds.to(self.device),
                               text_masks=masks.to(self.device), unet_number=unet_number,
                               unet=self._training_unet.get(unet_number - 1))

    # Helpers of a step ---------------------------------------------------------------------------

    @property
    def global_step(self) -> int:
        """Optimizer steps taken, summed over the U-Nets; names the samples and log lines."""
        return sum(self.steps_done)

    def _step_cost(self, unet_number: int) -> float:
        """Seconds of one training step of U-Net `unet_number` on this machine, measured once.

        Measured rather than estimated, because how two U-Nets' steps compare depends on the machine
        and the precision: a SmallBase step takes 2.4 times a SmallSuper step on 32 px crops in fp32 on
        a CPU and 2.1 times under bf16 autocast, while its parameters x pixels are 4 times as many
        (benchmarks/step_variants.py). The probe is a forward and backward pass on random inputs of
        a real batch's shape; it leaves the weights, their gradients and every random stream as they were.
        """
        if unet_number not in self._step_costs:
            cfg, side = self.config, self.config.image_sizes[unet_number - 1]
            unet = self.imagen.unets[unet_number - 1]
            sync = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else (lambda: None)
            unet.train()
            with torch.random.fork_rng(devices=self._rng_devices()):
                batch = dict(images=torch.rand(cfg.batch_size, self.imagen.channels, side, side),
                             text_embeds=torch.randn(cfg.batch_size, 8, self.imagen.text_embed_dim),
                             text_masks=torch.ones(cfg.batch_size, 8, dtype=torch.bool))
                for attempt in range(2):  # the first pass also pays for one-off set-up; time the second
                    sync()
                    start = time.perf_counter()
                    self.compute_loss(unet_number, batch).backward()
                    sync()
                    seconds = time.perf_counter() - start
                    unet.zero_grad(set_to_none=True)
            unet.eval()
            self._step_costs[unet_number] = seconds
        return self._step_costs[unet_number]

    def _autocast(self):
        """bf16 autocast for a forward pass when this run trains in bf16, else a no-op context."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _rng_devices(self) -> list:
        """The CUDA devices whose random state torch.random.fork_rng must save (none on a CPU)."""
        return [self.device.index or 0] if self.device.type == "cuda" else []

    def _reseed(self, unet_number: int, micro: int) -> None:
        """Make this micro-batch's random draws (noise, times, caption dropout) a function of where we are."""
        torch.manual_seed(mix_seed(self.config.seed, unet_number, self.steps_done[unet_number - 1], micro,
                                   self.accelerator.process_index))

    def _update_ema(self, index: int) -> None:
        ema = self.emas[index]
        if self.steps_done[index] <= self.config.ema_start:
            ema.n_averaged.zero_()  # AveragedModel copies the weights when it has averaged nothing yet
        ema.update_parameters(self.imagen.unets[index])

    def _should_stop(self, deadline: float | None) -> bool:
        """Whether any process has passed the deadline or received a stop signal: all must stop at the
        same step, or the others would wait forever for its gradients."""
        stop = self._stop.signal is not None or (deadline is not None and time.monotonic() >= deadline)
        if self.accelerator.num_processes == 1:
            return stop
        return self.accelerator.reduce(torch.tensor(float(stop), device=self.device), reduction="sum").item() > 0

    # Data ----------------------------------------------------------------------------------------

    def dataset(self, unet_number: int):
        """The training data of one U-Net, its images at that stage's size (built once, captions cached)."""
        size = self.config.image_sizes[unet_number - 1]
        if size not in self._datasets:
            ds = build_dataset(self.config, size, self.user_dataset)
            warmed = warm_cache(self.cache, ds, self.config.warm_cache_max_captions, self.accelerator,
                                progress=self.config.progress and self.is_main)
            self._datasets[size] = (ds, warmed)
        return self._datasets[size]

    def dataloader(self, unet_number: int):
        """A DataLoader over exactly the batches U-Net `unet_number` has still to see, from its saved position."""
        i, cfg = unet_number - 1, self.config
        dataset, warmed = self.dataset(unet_number)
        per_step = cfg.batch_size * cfg.grad_accum * self.accelerator.num_processes
        remaining = max(0, cfg.target_steps()[i] - self.steps_done[i])
        return step_dataloader(dataset, cfg, unet_number, start=self.data_position[i], count=remaining * per_step,
                               collate=TextImageCollator(self.cache) if warmed else collate_images_and_texts,
                               pin_memory=self.device.type == "cuda")

    # State, samples and logs ---------------------------------------------------------------------

    def state(self) -> tuple:
        """(tensors, meta): everything needed to continue exactly, as written to checkpoint.safetensors."""
        return training_state(self)

    def save_checkpoint(self) -> Path:
        """Write checkpoint.safetensors (atomically) and export the EMA model to model/; main process only."""
        if self.is_main:
            write_checkpoint(self.checkpoint_path, *self.state(), keep_previous=True)
            self.export()
            if self.config.overwrite:
                discard_replaced_run(self.out_dir)
        self.last_checkpoint_step = self.global_step
        return self.checkpoint_path

    def export(self, directory=None) -> Path:
        """Save the EMA weights as an Imagen folder (config.json + model.safetensors) for minimagen-sample."""
        directory = Path(directory or self.out_dir / MODEL_DIR)
        self.ema_imagen.save_pretrained(directory)
        return directory

    def sample_captions(self) -> list:
        if self._sample_captions is None:
            self._sample_captions = default_sample_captions(self.config, self.dataset(self.config.unet_numbers()[0])[0])
        return self._sample_captions

    @torch.no_grad()
    def save_samples(self, stop_at_unet: int) -> Path | None:
        """A grid of EMA samples (fixed captions, fixed seed) up to U-Net stop_at_unet -> samples/step_XXXXXX.png."""
        if not self.is_main:
            return None
        cfg = self.config
        captions = self.sample_captions()
        embeds, masks = self.cache.encode(captions)
        # Sampling must not disturb the training RNG stream. cond_scale None: the model's recommended scales.
        with torch.random.fork_rng(devices=self._rng_devices()):
            images = self.ema_imagen.sample(text_embeds=embeds.to(self.device), text_masks=masks.to(self.device),
                                            cond_scale=cfg.sample_cond_scale, sampler=cfg.sample_sampler,
                                            steps=cfg.sample_steps, seed=cfg.seed, progress=False,
                                            stop_at_unet=stop_at_unet)
        grid = image_grid(images, captions, nrow=4, min_size=128)
        path = self.out_dir / SAMPLES_DIR / f"step_{self.global_step:06d}.png"
        atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"))
        self.last_sample_step = self.global_step
        return path

    def _log(self, record: dict) -> None:
        if self.is_main:
            append_log(self.out_dir, record)

