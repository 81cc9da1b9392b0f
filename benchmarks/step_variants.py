#!/usr/bin/env python3
"""One training step in fp32, bf16 autocast, channels_last and torch.compile, on the CPU or a GPU.

Prints figures (and writes them to benchmarks/results/step_variants_<device>.json); asserts nothing.

For our CPU presets at the shapes workload (SmallBase: batch 32 at 32 px; SmallSuper: batch 32 on
32 px crops, as the shapes preset trains it) and the original's Super structure at the README workload
(dim 32, batch 4, 64 px), one training step of the U-Net alone (forward, MSE loss, backward, fused
AdamW step) in each of these variants:

- fp32: what `precision="auto"` runs on a CPU without bf16 instructions;
- bf16: the forward under bf16 autocast, what `minimagen-train` runs on a GPU with bf16 and on a CPU
  where `cpu_has_fast_bf16()`;
- bf16, bf16 attention (CPU only): the same, but with the attention kernel in bf16 too (what
  `Attention` did before it kept that kernel in fp32 under CPU autocast), to show why it does;
- fp32 / bf16 channels_last: model and inputs in the NHWC memory layout;
- with --compile, fp32 and bf16 under `torch.compile` (minutes of compiling on a small CPU).

Median seconds per step after warm-up steps (on a GPU, synchronised), images per second, and the
step's floating-point work (FLOPs counted by torch.utils.flop_counter; the share in convolutions) as
GFLOP/s. --batch-scale multiplies every batch (a GPU wants more than a CPU).

    python benchmarks/step_variants.py                  # CPU, ~2 min on 2 cores
    python benchmarks/step_variants.py --compile        # + torch.compile (several minutes more)
    python benchmarks/step_variants.py --device cuda --compile --batch-scale 8   # on a GPU
"""

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import matmul_gflops, write_report  # noqa: E402

import minimagen.layers as layers  # noqa: E402
from minimagen.Unet import Super, SmallBase, SmallSuper  # noqa: E402
from minimagen.utils import cpu_has_fast_bf16  # noqa: E402


# name -> (build the U-Net, batch, side, super-resolution?)
UNETS = {
    "SmallBase": (lambda: SmallBase(text_embed_dim=384), 32, 32, False),
    "SmallSuper": (lambda: SmallSuper(text_embed_dim=384, lowres_cond=True), 32, 32, True),
    "Super-structure": (lambda: Super(dim=32, text_embed_dim=512, attn_dim_head=64, lowres_cond=True), 4, 64, True),
}
# name -> (autocast to bf16, channels_last, attention kernel in bf16 as well, torch.compile)
VARIANTS = {
    "fp32": (False, False, False, False),
    "bf16": (True, False, False, False),
    "bf16, bf16 attention": (True, False, True, False),
    "fp32 channels_last": (False, True, False, False),
    "bf16 channels_last": (True, True, False, False),
    "fp32 compiled": (False, False, False, True),
    "bf16 compiled": (True, False, False, True),
}


class _AutocastHidden:
    """Stands in for `torch` inside minimagen.layers so that Attention does not see CPU autocast and
    runs its kernel in bf16, as it did before it kept that kernel in fp32."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def is_autocast_enabled(*args):
        return False


def inputs(unet, batch, side, lowres, memory_format, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, side, side, generator=g)
    kwargs = dict(time=torch.rand(batch, generator=g), text_embeds=torch.randn(batch, 16, unet.text_embed_dim, generator=g),
                  text_mask=torch.ones(batch, 16, dtype=torch.bool), cond_drop_prob=0.1)
    if lowres:
        kwargs.update(lowres_cond_img=torch.randn(batch, 3, side, side, generator=g),
                      lowres_noise_times=torch.rand(batch, generator=g))
    as_input = lambda t: t.to(device).contiguous(memory_format=memory_format) if t.ndim == 4 else t.to(device)
    return as_input(x), {k: as_input(v) if torch.is_tensor(v) else v for k, v in kwargs.items()}


def step_flops(name, batch):
    """(all FLOPs, convolution FLOPs) of one fp32 forward + backward, counted on the CPU."""
    make, _, side, lowres = UNETS[name]
    unet = make()
    x, kwargs = inputs(unet, batch, side, lowres, torch.contiguous_format, "cpu")
    with FlopCounterMode(display=False) as counter:
        F.mse_loss(unet(x, **kwargs), x).backward()
    conv = sum(n for op, n in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))
    return counter.get_total_flops(), conv


def time_variant(name, variant, batch, args):
    autocast, channels_last, bf16_attention, compiled = VARIANTS[variant]
    make, _, side, lowres = UNETS[name]
    device = torch.device(args.device)
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    unet = make().to(device, memory_format=memory_format)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, fused=True)
    forward = torch.compile(unet) if compiled else unet
    x, kwargs = inputs(unet, batch, side, lowres, memory_format, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    real_torch = layers.torch
    if bf16_attention:
        layers.torch = _AutocastHidden()
    try:
        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = forward(x, **kwargs)
            F.mse_loss(out.float(), x).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        start = time.perf_counter()
        step()
        sync()
        first = time.perf_counter() - start
        for _ in range(args.warmup - 1):
            step()
        times = []
        for _ in range(args.steps):
            sync()
            start = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - start)
    finally:
        layers.torch = real_torch
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return dict(seconds_per_step=statistics.median(times), steps=times, first_step_s=first,
                images_per_s=batch / statistics.median(times), peak_cuda_mib=peak)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (default 2)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant (default 5)")
    p.add_argument("--unets", default=",".join(UNETS), help=f"which of {','.join(UNETS)} (default all)")
    p.add_argument("--compile", action="store_true", help="also time fp32 and bf16 under torch.compile (slow to compile)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--batch-scale", type=int, default=1, help="multiply every workload's batch by this (default 1)")
    p.add_argument("--out", default=None, help="JSON file for the figures (default results/step_variants_<device>.json; "
                                               "'' = do not write)")
    args = p.parse_args(argv)
    if args.device not in ("cpu", "cuda") or (args.device == "cuda" and not torch.cuda.is_available()):
        p.error(f"--device must be cpu, or cuda on a machine with a CUDA GPU; got {args.device!r}")
    if args.batch_scale < 1:
        p.error(f"--batch-scale must be a positive integer, got {args.batch_scale}")
    if args.out is None:
        args.out = str(HERE / "results" / f"step_variants_{args.device}.json")
    torch.set_num_threads(args.threads)
    names = [n for n in args.unets.split(",") if n]
    unknown = [n for n in names if n not in UNETS]
    if unknown:
        p.error(f"--unets: unknown {unknown}; choose from {list(UNETS)}")
    variants = [v for v, (_, _, bf16_attention, compiled) in VARIANTS.items()
                if (args.compile or not compiled) and not (bf16_attention and args.device != "cpu")]

    if args.device == "cuda":
        native = torch.cuda.is_bf16_supported()
        print(f"{torch.cuda.get_device_name(0)}; bf16 supported: {native}")
    else:
        native = cpu_has_fast_bf16()
        print(f"{torch.get_num_threads()} thread(s); bf16 matrix instructions (AMX or AVX512-BF16): {native}; "
              f"1024^2 fp32 matmul {matmul_gflops(torch):.0f} GFLOP/s; load average {os.getloadavg()[0]:.2f}")
        if not native:
            print("(without those instructions bf16 is emulated: expect the bf16 rows to be slower than fp32)")
    report = dict(machine=dict(cpus=os.cpu_count(), platform=platform.platform(), torch=torch.__version__,
                               threads=torch.get_num_threads(), device=args.device, bf16_native=native),
                  settings=vars(args), unets={})
    print(f"{'U-Net':<16} {'batch':>5} {'variant':<22} {'s/step':>7} {'vs fp32':>8} {'img/s':>7} {'GFLOP/s':>8}")
    for name in names:
        batch = UNETS[name][1] * args.batch_scale
        total, conv = step_flops(name, batch)
        entry = dict(batch=batch, gflop_per_step=total / 1e9, conv_gflop_per_step=conv / 1e9, variants={})
        for variant in variants:
            entry["variants"][variant] = result = time_variant(name, variant, batch, args)
            base = entry["variants"]["fp32"]["seconds_per_step"]
            s = result["seconds_per_step"]
            print(f"{name:<16} {batch:>5} {variant:<22} {s:>7.3f} {base / s:>7.2f}x {batch / s:>7.1f} "
                  f"{total / s / 1e9:>8.0f}", flush=True)
        line = f"{name:<16} {total / 1e9:.1f} GFLOP per step (forward + backward), {100 * conv / total:.0f}% in convolutions"
        if args.compile:
            line += (f"; the first compiled steps took {entry['variants']['fp32 compiled']['first_step_s']:.0f} s (fp32) "
                     f"and {entry['variants']['bf16 compiled']['first_step_s']:.0f} s (bf16)")
        print(line)
        report["unets"][name] = entry
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
