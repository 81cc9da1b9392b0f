#!/usr/bin/env python3
"""Sampling speed vs fidelity of the shipped shapes cascade: 1000-step ancestral DDPM vs DDIM.

Prints figures (and writes them to benchmarks/results/sampling.json); asserts nothing.

For each (sampler, steps) row -- by default ancestral DDPM with 1000 steps and DDIM (eta 0) with
25, 50 and 100 steps, the same number of steps in both stages -- the whole cascade (32 px base +
64 px super-resolution; guidance 3 on the base, none on the 64 px stage) samples the same captions with the same seeds:
--images held-out captions (every held-out combination, repeated as needed) and as many training
captions, the prompt sets of benchmarks/prompt_fidelity.py, at a fixed --batch-size. Each image is
scored against its caption by `minimagen.data.score_image` through prompt_fidelity.score().

- s/image: wall-clock seconds of the sampling loop / images (text embeddings come from a warm
  cache, so this is the cascade's denoising work), summed over both prompt sets.
- CPU s/image: process CPU seconds (all threads) over the same loop; at one thread this measures
  the work even when other jobs share the machine.
- per stage: the same split by U-Net (base 32 px, super-res 64 px).
- speed-up: DDPM-1000's s/image / this row's.
- joint colour accuracy (shape colour and background colour both right) per prompt set, with its
  binomial standard error sqrt(p (1 - p) / n): with 16 images a set, one image is 0.0625.

    python benchmarks/sampling.py                       # 16 images a set, 1 thread (~35 min, mostly DDPM)
    python benchmarks/sampling.py --images 32           # tighter accuracies (twice as long)
    python benchmarks/sampling.py --quick               # harness check: 4 images, DDPM 100, DDIM 10/25
    python benchmarks/sampling.py --ddim-steps 10,25,50 --ddpm-steps 1000 --threads 2
"""

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]  # prompt_fidelity, and this checkout's minimagen even where it is not installed

from prompt_fidelity import caption_sets, score  # noqa: E402  (the scorer and prompt sets of that benchmark)
from common import add_model_args, load_model, matmul_gflops, write_report  # noqa: E402

from minimagen.data import TextEmbeddingCache  # noqa: E402

DEFAULT_OUT = HERE / "results" / "sampling.json"
SETS = ("held_out", "train")


class StageTimer:
    """Wraps the model's per-stage sampler (Imagen._sample_stage) on the instance, adding up wall and CPU
    seconds per U-Net. The wrapped call is the one sample() makes anyway, so the images are unchanged."""

    def __init__(self, model):
        self.model, self.original = model, getattr(model, "_sample_stage", None)
        self.wall, self.cpu = {}, {}
        if self.original is not None:
            model._sample_stage = self

    @property
    def available(self):
        return self.original is not None

    def __call__(self, index, *args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = self.original(index, *args, **kwargs)
        self.wall[index] = self.wall.get(index, 0.0) + time.perf_counter() - t0
        self.cpu[index] = self.cpu.get(index, 0.0) + time.process_time() - c0
        return out

    def reset(self):
        self.wall, self.cpu = {}, {}


def binomial_se(p, n):
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def _sets(images, seed):
    """The prompt_fidelity prompt sets, --images captions each (held-out combinations repeated as needed)."""
    repeats = max(1, math.ceil(images / 16))
    return {name: captions[:images] for name, captions in caption_sets(repeats, seed).items()}


def run_row(model, timer, cache, sets, sampler, steps, args):
    """Sample and score both prompt sets with one (sampler, steps) -> the row's figures."""
    row = dict(sampler=sampler, steps=steps, gflops_before=matmul_gflops(torch, size=512, repeats=8), loadavg_start=os.getloadavg()[0])
    ns = SimpleNamespace(batch_size=args.batch_size, cond_scale=args.cond_scale, sampler=sampler,
                         steps=steps, seed=args.seed, per_stage=False)
    wall = cpu = 0.0
    images_total = 0
    stage_wall, stage_cpu = {}, {}
    for name, captions in sets.items():
        timer.reset()
        c0 = time.process_time()
        accuracy, _, seconds, _ = score(model, captions, cache, ns)
        cpu_set = time.process_time() - c0
        n = len(captions)
        wall += seconds * n
        cpu += cpu_set
        images_total += n
        for index in timer.wall:
            stage_wall[index] = stage_wall.get(index, 0.0) + timer.wall[index]
            stage_cpu[index] = stage_cpu.get(index, 0.0) + timer.cpu[index]
        row[name] = {**accuracy, "n": n, "seconds_per_image": seconds, "cpu_seconds_per_image": cpu_set / n,
                     "joint_colour_se": binomial_se(accuracy["joint_colour_ok"], n)}
        print(f"  {sampler} {steps:>4} {name:8} joint {accuracy['joint_colour_ok']:.3f}  "
              f"{seconds:.3f} s/image  CPU {cpu_set / n:.3f} s/image", flush=True)
    row.update(images=images_total, seconds_per_image=wall / images_total, cpu_seconds_per_image=cpu / images_total,
               stage_seconds_per_image=[stage_wall[i] / images_total for i in sorted(stage_wall)],
               stage_cpu_seconds_per_image=[stage_cpu[i] / images_total for i in sorted(stage_cpu)],
               loadavg_end=os.getloadavg()[0])
    pooled = sum(row[s]["joint_colour_ok"] * row[s]["n"] for s in sets) / images_total
    row["all"] = dict(joint_colour_ok=pooled, n=images_total, joint_colour_se=binomial_se(pooled, images_total))
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--images", type=int, default=16, help="images per prompt set, same for every row (default 16)")
    p.add_argument("--batch-size", type=int, default=16, help="images sampled together (default 16)")
    p.add_argument("--ddpm-steps", type=int, default=1000, help="ancestral steps per stage, the reference row (default 1000)")
    p.add_argument("--ddim-steps", default="25,50,100", help="comma-separated DDIM step counts (default 25,50,100)")
    p.add_argument("--seed", type=int, default=0, help="prompt sets and sampling seeds (same for every row)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quick", action="store_true", help="harness check: 4 images, DDPM 100 steps, DDIM 10,25")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file for the figures ('' = do not write)")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.batch_size, args.ddpm_steps, args.ddim_steps = 4, 4, 100, "10,25"
    torch.set_num_threads(args.threads)

    model = load_model(args)
    timer = StageTimer(model)
    cache = TextEmbeddingCache(model.text_encoder_name)
    sets = _sets(args.images, args.seed)
    cache.encode([c for captions in sets.values() for c in captions])  # load the encoder, warm the cache: not timed
    # Warm-up (not timed): one short DDIM run at the benchmark's batch size.
    model.sample(text_embeds=cache.encode(sets["train"][:args.batch_size])[0],
                 text_masks=cache.encode(sets["train"][:args.batch_size])[1],
                 cond_scale=args.cond_scale, sampler="ddim", steps=2, seed=args.seed, progress=False)

    rows_spec = [("ddpm", args.ddpm_steps)] + [("ddim", int(s)) for s in args.ddim_steps.split(",") if s]
    load_before = os.getloadavg()
    started = time.time()
    print(f"model {args.model}: {args.images} images per prompt set, batch {args.batch_size}, cond_scale "
          f"{args.cond_scale}, {torch.get_num_threads()} thread(s); load average {load_before[0]:.2f} "
          f"({os.cpu_count()} CPUs)", flush=True)
    rows = [run_row(model, timer, cache, sets, sampler, steps, args) for sampler, steps in rows_spec]
    load_after = os.getloadavg()

    ref = rows[0]
    for row in rows:
        row["speedup"] = ref["seconds_per_image"] / row["seconds_per_image"]
        row["speedup_cpu"] = ref["cpu_seconds_per_image"] / row["cpu_seconds_per_image"]

    def acc(row, name):
        return f"{row[name]['joint_colour_ok']:.3f} ± {row[name]['joint_colour_se']:.3f}"

    print()
    print(f"{'sampler':8} {'steps':>5} {'s/image':>8} {'CPU s/img':>9} {'speed-up':>8} {'(CPU)':>6} "
          f"{'held-out joint':>15} {'train joint':>15} {'shape h/t':>10}")
    for row in rows:
        print(f"{row['sampler']:8} {row['steps']:>5} {row['seconds_per_image']:>8.3f} {row['cpu_seconds_per_image']:>9.3f} "
              f"{row['speedup']:>7.1f}x {row['speedup_cpu']:>5.1f}x {acc(row, 'held_out'):>15} {acc(row, 'train'):>15} "
              f"{row['held_out']['shape_ok']:>4.2f}/{row['train']['shape_ok']:.2f}")
    if timer.available:
        print("\nper stage, s/image (CPU s/image): " + "; ".join(
            f"{r['sampler']}-{r['steps']}: " + " + ".join(f"{w:.3f} ({c:.3f})" for w, c in
                                                       zip(r["stage_seconds_per_image"], r["stage_cpu_seconds_per_image"]))
            for r in rows))

    verdict = {}
    ddim50 = next((r for r in rows if r["sampler"] == "ddim" and r["steps"] == 50), None)
    if ddim50 is not None and ref["sampler"] == "ddpm" and ref["steps"] == 1000:
        diffs = {}
        for name in SETS + ("all",):
            d = ddim50[name]["joint_colour_ok"] - ref[name]["joint_colour_ok"]
            se = math.hypot(ddim50[name]["joint_colour_se"], ref[name]["joint_colour_se"])
            diffs[name] = dict(difference=d, se=se)
        verdict = dict(speedup=ddim50["speedup"], speedup_cpu=ddim50["speedup_cpu"], speedup_target=20.0,
                       joint_colour_difference=diffs)
        print(f"\ntarget 'DDIM-50 at least 20x faster than DDPM-1000, same fidelity': speed-up "
              f"{ddim50['speedup']:.1f}x wall, {ddim50['speedup_cpu']:.1f}x CPU; joint colour accuracy "
              f"DDIM-50 minus DDPM-1000: " + ", ".join(f"{k} {v['difference']:+.3f} ± {v['se']:.3f}"
                                                     for k, v in diffs.items()))

    report = dict(model=args.model, images_per_set=args.images, batch_size=args.batch_size, cond_scale=args.cond_scale,
                  seed=args.seed, threads=torch.get_num_threads(), torch=torch.__version__,
                  python=platform.python_version(), cpus=os.cpu_count(), loadavg_before=load_before,
                  loadavg_after=load_after, wall_s=time.time() - started, rows=rows, ddim50_vs_ddpm1000=verdict,
                  note="seconds per image over both prompt sets at the fixed batch size; accuracy ± binomial SE")
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
