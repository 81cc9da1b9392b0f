#!/usr/bin/env python3
"""Training and sampling speed of our U-Nets vs the original MinImagen (PyPI minimagen==0.0.9).

Prints figures (and writes them to benchmarks/results/train_vs_original.json); asserts nothing.

Workload: the original README's -- image_sizes (32, 64), batch 4, Adam (lr 1e-4), timesteps 1000
-- with the original's Base/Super STRUCTURE at reduced width (Base dim 64, Super dim 32; full
width does not fit Adam in this machine's memory). For each (implementation, U-Net):

- train: seconds per training step = Imagen forward (noising, resizing, U-Net, loss) + backward +
  Adam step + zero_grad, median of --steps after --warmup; images/s = batch / that.
- sample: seconds per denoising step = one `unet.forward_with_cond_scale(..., cond_scale=3)` under
  no_grad at the same batch. The original runs the conditional and unconditional passes one after
  the other; ours runs them as one batch of 2b.
- peak RSS: ru_maxrss of the fresh subprocess that ran the measurement (imports, model, training).
- parameters of the measured U-Net as it sits in the cascade (Super with lowres_cond).

Each measurement is its own subprocess (ours: this Python; the original: the venv made by
setup_original.sh), both with torch.set_num_threads(--threads). The U-Net not being measured is a
tiny placeholder (dim 8) in its cascade slot, so the RSS is the measured U-Net's. Implementations
are interleaved (round r runs ours then original for even r, original then ours for odd r) because
this machine's speed drifts; the ratio reported is the median of the per-round ratios, each from
two back-to-back runs. Every subprocess also times a 1024^2 matmul (`gflops`) so drift shows.

    bash benchmarks/setup_original.sh                          # once
    python benchmarks/bench_train_vs_original.py               # ~5 min on 2 cores
    python benchmarks/bench_train_vs_original.py --quick       # harness check, ~1.5 min
    python benchmarks/bench_train_vs_original.py --presets     # + SmallBase/SmallSuper (ours)
    python benchmarks/bench_train_vs_original.py --profile ours:super   # top ops of a train step
    python benchmarks/bench_train_vs_original.py --as-trained  # each side as its own trainer runs it
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import matmul_gflops

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUBS = HERE / "_stubs"
DEFAULT_ORIGINAL_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
DEFAULT_OUT = HERE / "results" / "train_vs_original.json"

# The original's Base/Super with every default spelled out; only `dim` is reduced.
# Ours also takes attn_dim_head: the original hard-codes ATTN_DIM_HEAD = 64.
BASE = dict(dim=64, dim_mults=(1, 2, 3, 4), num_resnet_blocks=3, layer_attns=(False, True, True, True),
            layer_cross_attns=(False, True, True, True), memory_efficient=False, attend_at_middle=False,
            channels=3, cond_dim=None, text_embed_dim=512, attn_heads=8)
SUPER = dict(dim=32, dim_mults=(1, 2, 4, 8), num_resnet_blocks=(2, 4, 8, 8), layer_attns=(False, False, False, True),
             layer_cross_attns=(False, False, False, True), memory_efficient=True, attend_at_middle=False,
             channels=3, cond_dim=None, text_embed_dim=512, attn_heads=8)
FULL_DIM = {"base": 512, "super": 128}  # the original's Base()/Super() defaults
OURS_EXTRA = dict(attn_dim_head=64)
# Stands in the cascade slot of the U-Net that is not measured.
PLACEHOLDER = dict(dim=8, dim_mults=(1, 2), num_resnet_blocks=1, layer_attns=False, layer_cross_attns=False,
                   memory_efficient=False, channels=3)

# torch's CPU default is the per-parameter for-loop implementation; both implementations get the same.
ADAM_VARIANTS = {"default": {}, "foreach": dict(foreach=True), "fused": dict(fused=True)}

WORKLOAD = dict(image_sizes=(32, 64), batch=4, lr=1e-4, timesteps=1000, cond_drop_prob=0.1, text_tokens=16,
                text_embed_dim=512, cond_scale=3.0)
# Our CPU presets at the shapes data set's workload (--presets); ours only.
PRESET_UNETS = {"SmallBase": 0, "SmallSuper": 1}  # -> the cascade slot each is measured in
PRESET_WORKLOAD = dict(image_sizes=(32, 64), batch=32, lr=1e-4, timesteps=1000, cond_drop_prob=0.1, text_tokens=16,
                       text_embed_dim=384, cond_scale=3.0)


# ---------------------------------------------------------------------------------------------
# Worker: runs in a fresh subprocess, with either implementation.
# ---------------------------------------------------------------------------------------------

def _load(impl):
    """Import (Imagen, Unet, module) of one implementation."""
    if impl == "original":
        # Import transformers' T5 before the torchvision stub is importable: transformers probes
        # for torchvision and would import names the stub does not have.
        import transformers  # noqa: F401
        from transformers import T5EncoderModel, T5Tokenizer  # noqa: F401

        sys.path.insert(0, str(STUBS))
    import minimagen
    from minimagen.Imagen import Imagen
    from minimagen.Unet import Unet

    origin = Path(minimagen.__file__).resolve()
    ours = origin == (ROOT / "minimagen" / "__init__.py").resolve()
    if ours == (impl == "original") or (impl == "original" and "site-packages" not in origin.parts):
        raise RuntimeError(f"{impl}: imported the wrong minimagen from {origin}")
    return Imagen, Unet, origin


def _unet_kwargs(impl, cfg, lowres_cond):
    kw = {k: v for k, v in cfg.items() if v is not None}
    kw["lowres_cond"] = lowres_cond
    if impl == "original":
        # Its Imagen re-builds a U-Net unless lowres_cond, text_embed_dim, channels and
        # channels_out already match; build it matching so the RSS holds one copy.
        kw["channels_out"] = kw["channels"]
    else:
        kw.update(OURS_EXTRA)
    return kw


def _count(module):
    return sum(p.numel() for p in module.parameters())


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(spec):
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    impl, wl = spec["impl"], spec["workload"]
    rss_torch = _rss_mb()
    Imagen, Unet, origin = _load(impl)
    rss_import = _rss_mb()
    out = dict(impl=impl, unet=spec["unet"], torch=torch.__version__, threads=torch.get_num_threads(),
               minimagen=str(origin), loadavg_start=os.getloadavg()[0], gflops=matmul_gflops(torch))

    if spec["mode"] == "params_full":
        counts = {}
        for name, cfg in (("base", BASE), ("super", SUPER)):
            with torch.device("meta"):
                unet = Unet(**_unet_kwargs(impl, {**cfg, "dim": FULL_DIM[name]}, lowres_cond=name == "super"))
            counts[name] = _count(unet)
        out["params_full"] = counts
        return out

    index = spec["index"]
    if spec.get("preset"):
        from minimagen.Unet import PRESETS

        measured = PRESETS[spec["preset"]](text_embed_dim=wl["text_embed_dim"], lowres_cond=index == 1)
    else:
        measured = Unet(**_unet_kwargs(impl, spec["cfg"], lowres_cond=index == 1))
    other = {**PLACEHOLDER, "text_embed_dim": wl["text_embed_dim"]}
    placeholder = Unet(**_unet_kwargs(impl, other, lowres_cond=index == 0))
    unets = [measured, placeholder] if index == 0 else [placeholder, measured]
    imagen = Imagen(unets, image_sizes=wl["image_sizes"], text_encoder_name="t5_small",
                    text_embed_dim=wl["text_embed_dim"], timesteps=wl["timesteps"], cond_drop_prob=wl["cond_drop_prob"])
    unet = imagen.unets[index]
    assert unet is measured, "the cascade re-built the measured U-Net"
    out["params"] = _count(unet)

    b, size = wl["batch"], wl["image_sizes"][index]
    images = torch.rand(b, 3, wl["image_sizes"][-1], wl["image_sizes"][-1])
    text_embeds = torch.randn(b, wl["text_tokens"], wl["text_embed_dim"])
    lengths = torch.randint(4, wl["text_tokens"] + 1, (b,))
    text_masks = torch.arange(wl["text_tokens"])[None, :] < lengths[:, None]
    text_embeds = text_embeds * text_masks[..., None]
    rss_model = _rss_mb()

    if spec["mode"] == "profile":
        return _profile(torch, imagen, unet, index, images, text_embeds, text_masks, wl, out, spec)

    opt = torch.optim.Adam(unet.parameters(), lr=wl["lr"], **ADAM_VARIANTS[spec.get("adam", "default")])
    autocast = bool(spec.get("bf16"))
    out.update(adam=spec.get("adam", "default"), precision="bf16 autocast" if autocast else "fp32")
    imagen.train()

    def train_step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = imagen(images, text_embeds=text_embeds, text_masks=text_masks, unet_number=index + 1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    times, cpu = [], []  # wall-clock and process CPU seconds (all threads) per step
    for i in range(spec["warmup"] + spec["steps"]):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = train_step()
        if i >= spec["warmup"]:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    if not torch.isfinite(torch.tensor(loss)):
        raise RuntimeError(f"non-finite training loss {loss}")
    out.update(train_s=times, train_median_s=statistics.median(times), loss=loss,
               train_cpu_s=cpu, train_cpu_median_s=statistics.median(cpu),
               rss_after_torch_mb=rss_torch, rss_after_import_mb=rss_import, rss_after_model_mb=rss_model,
               peak_rss_mb=_rss_mb())
    out["train_rss_mb"] = out["peak_rss_mb"] - rss_import  # model + Adam state + activations

    # One denoising step with classifier-free guidance, as each implementation's sampler does it.
    imagen.eval()
    sb = spec["sample_batch"]
    x = torch.randn(sb, 3, size, size)
    te, tm = text_embeds[:1].expand(sb, -1, -1).contiguous(), text_masks[:1].expand(sb, -1).contiguous()
    t_int = torch.full((sb,), wl["timesteps"] // 2, dtype=torch.long)
    kwargs = dict(cond_scale=wl["cond_scale"], text_embeds=te, text_mask=tm)
    if impl == "original":
        time_arg = t_int  # it conditions on the integer step
        if index > 0:
            kwargs.update(lowres_cond_img=torch.randn(sb, 3, size, size),
                          lowres_noise_times=torch.full((sb,), int(0.2 * wl["timesteps"]), dtype=torch.long))
    else:
        time_arg = imagen.noise_schedulers[index].time_to_tau(t_int)
        if index > 0:
            kwargs.update(lowres_cond_img=torch.randn(sb, 3, size, size), lowres_noise_times=torch.full((sb,), 0.2))
    stimes, scpu = [], []
    with torch.no_grad():
        for i in range(spec["sample_warmup"] + spec["sample_steps"]):
            t0, c0 = time.perf_counter(), time.process_time()
            pred = unet.forward_with_cond_scale(x, time_arg, **kwargs)
            if i >= spec["sample_warmup"]:
                stimes.append(time.perf_counter() - t0)
                scpu.append(time.process_time() - c0)
    assert pred.shape == x.shape
    out.update(sample_s=stimes, sample_median_s=statistics.median(stimes), sample_batch=sb,
               sample_cpu_s=scpu, sample_cpu_median_s=statistics.median(scpu),
               peak_rss_end_mb=_rss_mb(), loadavg_end=os.getloadavg()[0])
    return out


def _profile(torch, imagen, unet, index, images, text_embeds, text_masks, wl, out, spec):
    from torch.profiler import ProfilerActivity, profile

    opt = torch.optim.Adam(unet.parameters(), lr=wl["lr"], **ADAM_VARIANTS[spec.get("adam", "default")])

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(spec.get("bf16"))):
            loss = imagen(images, text_embeds=text_embeds, text_masks=text_masks, unet_number=index + 1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    by_shape = bool(spec.get("profile_by_shape"))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=by_shape) as prof:
        for _ in range(3):
            step()
    table = prof.key_averages(group_by_input_shape=by_shape).table(
        sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=40, max_shapes_column_width=80)
    what = "ops and input shapes" if by_shape else "ops"
    print(f"== {out['impl']} {out['unet']}: 3 training steps, top {what} by self CPU time ==\n{table}", flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------------------------

def run_worker(spec, original_python, verbose=True):
    python = sys.executable if spec["impl"] == "ours" else str(original_python)
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if spec.get("omp_passive"):
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if spec["impl"] == "original":
        env.pop("PYTHONPATH", None)
    t0 = time.perf_counter()
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--worker", json.dumps(spec)], cwd="/tmp",
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    result_lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not result_lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"worker {spec['impl']}/{spec['unet']} failed (exit {proc.returncode})")
    other = [line for line in proc.stdout.splitlines() if not line.startswith("RESULT ")]
    if other and spec["mode"] == "profile":
        print("\n".join(other))
    result = json.loads(result_lines[-1][len("RESULT "):])
    result["wall_s"] = wall
    if verbose and spec["mode"] == "measure":
        print(f"  {spec['impl']:>8} {spec['unet']:<10} train {result['train_median_s']:.3f} s/step  "
              f"sample {result['sample_median_s']:.3f} s/step  peak RSS {result['peak_rss_mb']:.0f} MB  "
              f"matmul {result['gflops']:.0f} GFLOP/s  load {result['loadavg_start']:.2f}  ({wall:.0f} s)",
              flush=True)
    return result


def _fmt_params(n):
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _summarise(runs, key):
    values = [r[key] for r in runs]
    return dict(median=statistics.median(values), min=min(values), max=max(values), rounds=values)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--warmup", type=int, default=2, help="training steps not timed (default 2)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per run (default 5)")
    p.add_argument("--sample-warmup", type=int, default=1)
    p.add_argument("--sample-steps", type=int, default=3, help="timed denoising steps per run (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every run (default 2)")
    p.add_argument("--unets", default="base,super", help="which of base,super to compare (default both)")
    p.add_argument("--presets", action="store_true", help="also time our SmallBase/SmallSuper at the shapes workload")
    p.add_argument("--adam", choices=sorted(ADAM_VARIANTS), default="default",
                   help="Adam implementation for both (default: torch's CPU default, the for-loop)")
    p.add_argument("--as-trained", action="store_true",
                   help="each side as its own trainer runs it: ours as minimagen-train does (fused AdamW, bf16 "
                        "autocast where the CPU has bf16 instructions, i.e. precision auto), the original as its "
                        "training.py does (torch's default Adam, fp32); overrides --adam")
    p.add_argument("--precision", choices=["auto", "no", "bf16"], default="auto",
                   help="with --as-trained: our trainer's --precision (default auto; 'no' is what a CPU without "
                        "bf16 instructions gets)")
    p.add_argument("--omp-passive", action="store_true",
                   help="OMP_WAIT_POLICY=PASSIVE in every run: idle threads sleep instead of spinning (busy machines)")
    p.add_argument("--no-original", action="store_true", help="time ours only")
    p.add_argument("--quick", action="store_true", help="harness check: 1 round, 1+2 train steps, 1 sample step")
    p.add_argument("--profile", metavar="IMPL:UNET",
                   help="print torch.profiler top ops of training steps, e.g. ours:super, original:base, ours:SmallBase")
    p.add_argument("--by-shape", action="store_true",
                   help="with --profile: one row per op and input shapes (which convolution is slow)")
    p.add_argument("--original-python", default=os.environ.get("BENCH_ORIGINAL_PYTHON", DEFAULT_ORIGINAL_PYTHON))
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file for the figures ('' = do not write)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        result = worker(json.loads(args.worker))
        print("RESULT " + json.dumps(result), flush=True)
        return

    if args.precision != "auto" and not args.as_trained:
        p.error("--precision applies to --as-trained only (without it both sides run the same fp32 step)")
    if args.by_shape and not args.profile:
        p.error("--by-shape applies to --profile only")
    if args.quick:
        args.rounds, args.warmup, args.steps, args.sample_warmup, args.sample_steps = 1, 1, 2, 1, 1
    original_python = Path(args.original_python)
    use_original = not args.no_original
    if use_original and not original_python.exists():
        raise SystemExit(f"{original_python} not found: run `bash benchmarks/setup_original.sh` first "
                         "(or pass --no-original)")
    common = dict(profile_by_shape=args.by_shape, omp_passive=args.omp_passive, threads=args.threads, seed=0, adam=args.adam, warmup=args.warmup, steps=args.steps,
                  sample_warmup=args.sample_warmup, sample_steps=args.sample_steps)
    # What differs between the two sides: nothing, unless --as-trained.
    sides = {"ours": {}, "original": {}}
    if args.as_trained:
        import torch

        from minimagen.train import resolve_precision

        sides["ours"] = dict(adam="fused", bf16=resolve_precision(args.precision, torch.device("cpu")) == "bf16")
        sides["original"] = dict(adam="default", bf16=False)
    cfgs = {"base": (0, BASE), "super": (1, SUPER)}

    if args.profile:
        impl, name = args.profile.split(":")
        if name in PRESET_UNETS:  # one of our CPU presets, at the shapes workload
            run_worker(dict(common, **sides["ours"], mode="profile", impl="ours", unet=name, index=PRESET_UNETS[name],
                            preset=name, workload=PRESET_WORKLOAD, sample_batch=PRESET_WORKLOAD["batch"]),
                       original_python)
            return
        index, cfg = cfgs[name]
        run_worker(dict(common, **sides[impl], mode="profile", impl=impl, unet=name, index=index, cfg=cfg,
                        workload=WORKLOAD, sample_batch=WORKLOAD["batch"]), original_python)
        return

    impls = ["ours", "original"] if use_original else ["ours"]
    unet_names = [u for u in args.unets.split(",") if u]
    load_before = os.getloadavg()
    started = time.time()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
          f"({os.cpu_count()} CPUs); threads {args.threads}; {args.rounds} round(s), "
          f"train {args.warmup}+{args.steps} steps, sample {args.sample_warmup}+{args.sample_steps} steps", flush=True)

    full = {impl: run_worker(dict(common, mode="params_full", impl=impl, unet="full", workload=WORKLOAD),
                             original_python)["params_full"] for impl in impls}

    runs = []
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        order = impls if r % 2 == 0 else impls[::-1]
        for name in unet_names:
            index, cfg = cfgs[name]
            for impl in order:
                res = run_worker(dict(common, **sides[impl], mode="measure", impl=impl, unet=name, index=index,
                                      cfg=cfg, workload=WORKLOAD, sample_batch=WORKLOAD["batch"]), original_python)
                runs.append(dict(res, round=r))
        if args.presets:
            for name, index in PRESET_UNETS.items():
                res = run_worker(dict(common, **sides["ours"], mode="measure", impl="ours", unet=name, index=index,
                                      preset=name,
                                      workload=PRESET_WORKLOAD, sample_batch=PRESET_WORKLOAD["batch"]), original_python)
                runs.append(dict(res, round=r))
    load_after = os.getloadavg()

    # Summary -------------------------------------------------------------------------------
    summary = {}
    for name in unet_names + (["SmallBase", "SmallSuper"] if args.presets else []):
        wl = PRESET_WORKLOAD if name.startswith("Small") else WORKLOAD
        entry = {}
        for impl in impls:
            rs = [x for x in runs if x["unet"] == name and x["impl"] == impl]
            if not rs:
                continue
            train, sample = _summarise(rs, "train_median_s"), _summarise(rs, "sample_median_s")
            train_cpu, sample_cpu = _summarise(rs, "train_cpu_median_s"), _summarise(rs, "sample_cpu_median_s")
            entry[impl] = dict(params=rs[0]["params"], train_s_per_step=train, sample_s_per_step=sample,
                               train_best_s=min(t for x in rs for t in x["train_s"]),
                               sample_best_s=min(t for x in rs for t in x["sample_s"]),
                               images_per_s=wl["batch"] / train["median"],
                               train_cpu_s_per_step=train_cpu, sample_cpu_s_per_step=sample_cpu,
                               sample_batch=rs[0]["sample_batch"], train_batch=wl["batch"],
                               peak_rss_mb=statistics.median(x["peak_rss_mb"] for x in rs),
                               rss_after_model_mb=statistics.median(x["rss_after_model_mb"] for x in rs),
                               rss_after_import_mb=statistics.median(x["rss_after_import_mb"] for x in rs),
                               train_rss_mb=statistics.median(x["train_rss_mb"] for x in rs))
        if "original" in entry and "ours" in entry:
            ratio = {}
            for key in ("train_median_s", "sample_median_s", "train_cpu_median_s", "sample_cpu_median_s"):
                per_round = []
                for r in range(args.rounds):
                    a = [x[key] for x in runs if x["unet"] == name and x["impl"] == "ours" and x["round"] == r]
                    b = [x[key] for x in runs if x["unet"] == name and x["impl"] == "original" and x["round"] == r]
                    if a and b:
                        per_round.append(a[0] / b[0])
                ratio[key.replace("_median_s", "")] = dict(median=statistics.median(per_round), rounds=per_round)
            ratio["train_best"] = entry["ours"]["train_best_s"] / entry["original"]["train_best_s"]
            ratio["sample_best"] = entry["ours"]["sample_best_s"] / entry["original"]["sample_best_s"]
            ratio["peak_rss"] = entry["ours"]["peak_rss_mb"] / entry["original"]["peak_rss_mb"]
            ratio["train_rss"] = entry["ours"]["train_rss_mb"] / entry["original"]["train_rss_mb"]
            ratio["params"] = entry["ours"]["params"] / entry["original"]["params"]
            entry["ours_over_original"] = ratio
        summary[name] = entry

    # Table ---------------------------------------------------------------------------------
    print()
    how = "; ".join(f"{impl}: Adam {sides[impl].get('adam', args.adam)}, "
                    f"{'bf16 autocast' if sides[impl].get('bf16') else 'fp32'}" for impl in impls)
    print(f"Training step (fwd+bwd+Adam; {how}) and one guided denoising step (fp32, cond_scale "
          f"{WORKLOAD['cond_scale']}), {args.threads} threads. s/step: median over {args.rounds} round(s) of each "
          f"run's median [min-max of those]; best: fastest single step; ours/orig: median of per-round ratios")
    header = (f"{'U-Net':<11}{'impl':<10}{'params':>8}  {'train s/step':>20}  {'best':>6}  {'img/s':>6}  "
              f"{'sample s/step':>20}  {'best':>6}  {'peak RSS MB':>11}")
    print(header)
    print("-" * len(header))
    for name, entry in summary.items():
        for impl in impls:
            if impl not in entry:
                continue
            e = entry[impl]
            tr, sa = e["train_s_per_step"], e["sample_s_per_step"]
            print(f"{name:<11}{impl:<10}{_fmt_params(e['params']):>8}  "
                  f"{tr['median']:>7.3f} [{tr['min']:.3f}-{tr['max']:.3f}]  {e['train_best_s']:>6.3f}  "
                  f"{e['images_per_s']:>6.2f}  {sa['median']:>7.3f} [{sa['min']:.3f}-{sa['max']:.3f}]  "
                  f"{e['sample_best_s']:>6.3f}  {e['peak_rss_mb']:>11.0f}")
        if "ours_over_original" in entry:
            q = entry["ours_over_original"]
            print(f"{name:<11}{'ours/orig':<10}{q['params']:>8.3f}  {q['train']['median']:>20.2f}  "
                  f"{q['train_best']:>6.2f}  {'':>6}  {q['sample']['median']:>20.2f}  {q['sample_best']:>6.2f}  "
                  f"{q['peak_rss']:>11.2f}")
    print("Process CPU seconds per step (all threads; less disturbed by other processes than wall time, "
          f"but spin-waiting threads count too):")
    for name, entry in summary.items():
        line = "  ".join(f"{impl} train {entry[impl]['train_cpu_s_per_step']['median']:.3f} "
                         f"sample {entry[impl]['sample_cpu_s_per_step']['median']:.3f}" for impl in impls if impl in entry)
        if "ours_over_original" in entry:
            q = entry["ours_over_original"]
            line += f"  ours/orig train {q['train_cpu']['median']:.2f} sample {q['sample_cpu']['median']:.2f}"
        print(f"  {name:<11}{line}")
    print("Memory: peak RSS minus RSS after importing the implementation (model + Adam state + activations):")
    for name, entry in summary.items():
        line = "  ".join(f"{impl} {entry[impl]['train_rss_mb']:.0f} MB (import {entry[impl]['rss_after_import_mb']:.0f} MB)"
                         for impl in impls if impl in entry)
        if "ours_over_original" in entry:
            line += f"  ours/orig {entry['ours_over_original']['train_rss']:.2f}"
        print(f"  {name:<11}{line}")
    if args.presets:
        print(f"(SmallBase/SmallSuper: ours only, batch {PRESET_WORKLOAD['batch']} for training and sampling, "
              f"text_embed_dim {PRESET_WORKLOAD['text_embed_dim']})")
    print()
    print("Full-width parameter counts (built on the meta device):")
    for impl in impls:
        print(f"  {impl:<9} Base(dim 512) {_fmt_params(full[impl]['base'])} ({full[impl]['base']:,})   "
              f"Super(dim 128, lowres_cond) {_fmt_params(full[impl]['super'])} ({full[impl]['super']:,})")
    gf = [x["gflops"] for x in runs]
    print(f"\nload average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; "
          f"1024^2 matmul across runs {min(gf):.0f}-{max(gf):.0f} GFLOP/s; total {time.time() - started:.0f} s")

    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        record = dict(
            benchmark="train_vs_original",
            date=time.strftime("%Y-%m-%d %H:%M:%S"),
            machine=dict(cpus=os.cpu_count(), platform=platform.platform(), python=platform.python_version(),
                         loadavg_before=load_before, loadavg_after=load_after,
                         matmul_gflops_range=[min(gf), max(gf)]),
            settings=dict(vars(args), original_python=str(original_python), sides=sides),
            workload=WORKLOAD, preset_workload=PRESET_WORKLOAD if args.presets else None,
            configs=dict(base=BASE, super=SUPER, ours_extra=OURS_EXTRA, placeholder=PLACEHOLDER, full_dim=FULL_DIM),
            full_width_params=full, summary=summary, runs=runs,
        )
        out.write_text(json.dumps(record, indent=1, default=str) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
