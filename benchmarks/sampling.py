#!/usr/bin/env python3
"""Sampling speed vs fidelity of the shipped shapes cascade: DDIM against DPM-Solver++(2M), with and
without a guidance interval, at several step counts.

Prints figures (and writes them to benchmarks/results/sampling.json); asserts nothing.

For each (sampler, guidance interval, steps) row -- by default DDIM and dpmpp_2m, guided at every step
and only inside --interval, at 5, 8, 10, 15, 25 and 50 steps, the same number of steps in both stages
and the model's recommended guidance -- the whole cascade samples the same captions with the same
seeds: --images held-out captions (every held-out combination, repeated as needed; --train adds as
many training captions), the prompt sets of benchmarks/prompt_fidelity.py, at a fixed --batch-size.
Each image is scored against its caption through prompt_fidelity.score().

- s/picture: wall-clock seconds of the sampling loop / pictures (text embeddings come from a warm
  cache, so this is the cascade's denoising work); CPU s/picture: process CPU seconds over the same
  loop (at one thread this measures the work even when other jobs share the machine).
- U-Net evals: U-Net passes per picture over the whole cascade (a guided step is two: the
  conditional and the unconditional half of one batch), counted by wrapping each U-Net's forward.
- speed-up: the reference row's (DDIM 50, guided at every step) s/picture / this row's.
- joint colour (shape colour and background colour both right) and shape accuracy, with the binomial
  standard error sqrt(p (1 - p) / n): with 64 images, one image is 0.016.

    python benchmarks/sampling.py                         # 64 held-out images a row, 1 thread (~15 min)
    python benchmarks/sampling.py --steps 10,15,50 --samplers dpmpp_2m --interval 0.3,1
    python benchmarks/sampling.py --rows ddim:15,dpmpp_2m:15,dpmpp_2m:15:i   # these rows (and the DDIM-50 reference)
    python benchmarks/sampling.py --path --out benchmarks/results/sampling_path.json   # base stage: distance from DDIM-200
    python benchmarks/sampling.py --quick                 # harness check: 4 images, 5 and 10 steps
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

from prompt_fidelity import caption_sets, score  # noqa: E402  (that benchmark's scorer and prompts)
from common import add_model_args, load_model, matmul_gflops, write_report  # noqa: E402

from minimagen.data import TextEmbeddingCache  # noqa: E402
from minimagen.sample import parse_interval  # noqa: E402

DEFAULT_OUT = HERE / "results" / "sampling.json"
REFERENCE = ("ddim", None, 50)


class UnetCounter:
    """Counts the images each U-Net's forward sees (instance attribute wrapping forward, which
    forward_with_cond_scale calls for both guidance halves in one batch), so guided steps count twice."""

    def __init__(self, model):
        self.rows = 0
        for unet in model.unets:
            unet.forward = self._wrap(unet.forward)

    def _wrap(self, forward):
        def counted(x, *args, **kwargs):
            self.rows += x.shape[0]
            return forward(x, *args, **kwargs)
        return counted


def binomial_se(p, n):
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def run_row(model, counter, cache, sets, sampler, interval, steps, args):
    """Sample and score the prompt sets with one setting -> the row's figures."""
    row = dict(sampler=sampler, guidance_interval=interval, steps=steps,
               gflops_before=matmul_gflops(torch, size=512, repeats=8), loadavg_start=os.getloadavg()[0])
    ns = SimpleNamespace(batch_size=args.batch_size, cond_scale=args.cond_scale, sampler=sampler, steps=steps,
                         seed=args.seed, per_stage=False, guidance_interval=interval)
    wall = cpu = 0.0
    images_total = 0
    counter.rows = 0
    for name, captions in sets.items():
        c0 = time.process_time()
        accuracy, _, seconds, _ = score(model, captions, cache, ns)
        cpu_set, n = time.process_time() - c0, len(captions)
        wall, cpu, images_total = wall + seconds * n, cpu + cpu_set, images_total + n
        row[name] = {**accuracy, "n": n, "seconds_per_image": seconds,
                     "joint_colour_se": binomial_se(accuracy["joint_colour_ok"], n),
                     "shape_se": binomial_se(accuracy["shape_ok"], n)}
    row.update(images=images_total, seconds_per_image=wall / images_total, cpu_seconds_per_image=cpu / images_total,
               unet_evals_per_image=counter.rows / images_total, loadavg_end=os.getloadavg()[0])
    first = next(iter(sets))
    print(f"  {sampler:9} {str(interval):12} {steps:>3} steps: {row['seconds_per_image']:.3f} s/picture, "
          f"{row['unet_evals_per_image']:.0f} U-Net evals, {first} joint colour {row[first]['joint_colour_ok']:.3f} "
          f"shape {row[first]['shape_ok']:.3f}", flush=True)
    return row


def path_distances(model, cache, captions, samplers, steps_list, args, reference_steps=200):
    """How far each sampler's base-stage picture lands from where the sampling path converges: the RMS
    difference (pixels in [0, 1]) from DDIM with `reference_steps` steps, from the same noise, over captions."""
    embeds, masks = cache.encode(captions)
    run = lambda sampler, steps: model.sample(text_embeds=embeds, text_masks=masks, cond_scale=args.cond_scale,
                                              sampler=sampler, steps=steps, stop_at_unet=1, seed=args.seed,
                                              progress=False)
    reference = run("ddim", reference_steps)
    table = {s: {n: (run(s, n) - reference).pow(2).flatten(1).mean(1).sqrt().mean().item() for n in steps_list}
             for s in samplers}
    print(f"\nbase stage, RMS distance from DDIM-{reference_steps} (same noise, {len(captions)} captions):")
    print(f"{'steps':>5} " + " ".join(f"{s:>9}" for s in samplers))
    for n in steps_list:
        print(f"{n:>5} " + " ".join(f"{table[s][n]:>9.4f}" for s in samplers))
    return dict(reference_steps=reference_steps, captions=len(captions), distances=table)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--images", type=int, default=64, help="images per prompt set, same for every row (default 64)")
    p.add_argument("--train", action="store_true", help="also score as many training captions")
    p.add_argument("--batch-size", type=int, default=16, help="images sampled together (default 16)")
    p.add_argument("--samplers", default="ddim,dpmpp_2m", help="comma-separated samplers (default ddim,dpmpp_2m)")
    p.add_argument("--steps", default="5,8,10,15,25,50", help="comma-separated steps per stage (default 5,8,10,15,25,50)")
    p.add_argument("--interval", type=parse_interval, default=(0.3, 1.0), metavar="LO,HI",
                   help="the guidance interval of the interval rows, noise levels sqrt(1 - alphas_cumprod_t) (default 0.3,1)")
    p.add_argument("--no-interval-rows", dest="interval_rows", action="store_false",
                   help="only rows guided at every step")
    p.add_argument("--rows", default=None, metavar="SAMPLER:STEPS[:i],...",
                   help="exactly these rows instead of the grid; ':i' guides inside --interval only (e.g. ddim:15,dpmpp_2m:15:i)")
    p.add_argument("--path", action="store_true",
                   help="only the base stage's distance from its converged path (DDIM-200), per sampler and steps")
    p.add_argument("--seed", type=int, default=0, help="prompt sets and sampling seeds (same for every row)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quick", action="store_true", help="harness check: 4 images, 5 and 10 steps")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file for the figures ('' = do not write)")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.batch_size, args.steps = 4, 4, "5,10"
    torch.set_num_threads(args.threads)

    model = load_model(args)
    counter = UnetCounter(model)
    cache = TextEmbeddingCache(model.text_encoder_name)
    repeats = max(1, math.ceil(args.images / 16))
    sets = {name: captions[:args.images] for name, captions in caption_sets(repeats, args.seed).items()
            if name == "held_out" or args.train}
    cache.encode([c for captions in sets.values() for c in captions])  # load the encoder, warm the cache: not timed
    warm = cache.encode(sets["held_out"][:args.batch_size])  # warm-up (not timed): one short run at the batch size
    model.sample(text_embeds=warm[0], text_masks=warm[1], cond_scale=args.cond_scale, sampler="ddim", steps=2,
                 seed=args.seed, progress=False)

    if args.path:
        steps_list = [int(n) for n in args.steps.split(",")]
        report = path_distances(model, cache, sets["held_out"][:args.batch_size], args.samplers.split(","),
                                steps_list, args)
        write_report(dict(model=args.model, cond_scale=args.cond_scale, seed=args.seed, **report), args.out)
        return report
    intervals = [None] + ([args.interval] if args.interval_rows else [])
    spec = [(s, i, int(n)) for s in args.samplers.split(",") for i in intervals for n in args.steps.split(",")]
    if args.rows:
        spec = [(r.split(":")[0], args.interval if r.endswith(":i") else None, int(r.split(":")[1]))
                for r in args.rows.split(",")]
    if REFERENCE not in spec and not args.quick:
        spec.insert(0, REFERENCE)
    load_before, started = os.getloadavg(), time.time()
    print(f"model {args.model}: {args.images} images per prompt set ({', '.join(sets)}), batch {args.batch_size}, "
          f"cond_scale {args.cond_scale}, {torch.get_num_threads()} thread(s); load average {load_before[0]:.2f} "
          f"({os.cpu_count()} CPUs)", flush=True)
    rows = [run_row(model, counter, cache, sets, *row_spec, args) for row_spec in spec]
    load_after = os.getloadavg()

    ref = next((r for r in rows if (r["sampler"], r["guidance_interval"], r["steps"]) == REFERENCE), rows[0])
    for row in rows:
        row["speedup"] = ref["seconds_per_image"] / row["seconds_per_image"]
        row["speedup_cpu"] = ref["cpu_seconds_per_image"] / row["cpu_seconds_per_image"]

    print(f"\n{'sampler':9} {'interval':11} {'steps':>5} {'s/picture':>9} {'CPU s/pic':>9} {'U-Net evals':>11} "
          f"{'speed-up':>8} " + " ".join(f"{name + ' joint colour':>22} {name + ' shape':>16}" for name in sets))
    for r in rows:
        interval = "-" if r["guidance_interval"] is None else ",".join(f"{v:g}" for v in r["guidance_interval"])
        print(f"{r['sampler']:9} {interval:11} {r['steps']:>5} {r['seconds_per_image']:>9.3f} "
              f"{r['cpu_seconds_per_image']:>9.3f} {r['unet_evals_per_image']:>11.0f} {r['speedup']:>7.1f}x " + " ".join(
                  f"{r[name]['joint_colour_ok']:>14.3f} ± {r[name]['joint_colour_se']:.3f} "
                  f"{r[name]['shape_ok']:>8.3f} ± {r[name]['shape_se']:.3f}" for name in sets))

    # The issue's goal: DDIM-50's held-out fidelity, within one picture in 64, at <= 15 steps and >= 3x faster.
    tolerance = 1 / 64
    met = [r for r in rows if r["steps"] <= 15 and r["speedup"] >= 3 and all(
        r["held_out"][k] >= ref["held_out"][k] - tolerance - 1e-9 for k in ("joint_colour_ok", "shape_ok"))]
    print(f"\ngoal 'DDIM-50's held-out joint colour and shape within 1/64, at <= 15 steps, >= 3x faster': "
          + (", ".join(f"{r['sampler']} {r['steps']} steps"
                       + ("" if r["guidance_interval"] is None else f" interval {r['guidance_interval']}")
                       + f" ({r['speedup']:.1f}x)" for r in met) or "no row meets it"))

    report = dict(model=args.model, images_per_set=args.images, sets=list(sets), batch_size=args.batch_size,
                  cond_scale=args.cond_scale, seed=args.seed, threads=torch.get_num_threads(), torch=torch.__version__,
                  python=platform.python_version(), cpus=os.cpu_count(), loadavg_before=load_before,
                  loadavg_after=load_after, wall_s=time.time() - started, rows=rows,
                  goal_met_by=[dict(sampler=r["sampler"], guidance_interval=r["guidance_interval"], steps=r["steps"])
                               for r in met],
                  note="seconds per picture at the fixed batch size; accuracy ± binomial SE; reference DDIM 50")
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
