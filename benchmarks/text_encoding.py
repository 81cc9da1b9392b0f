#!/usr/bin/env python3
"""Cost per caption of text conditioning: the offline MiniLM encoder run on every batch vs the text-embedding cache.

Prints figures (and writes them to benchmarks/results/text_encoding.json); asserts nothing.

Workload: one epoch of shapes training captions (`ShapesDataset(length=--epoch).captions()`, in
index order: ~150 distinct captions, each repeated ~--epoch/150 times) in batches of --batch-size,
the way a DataLoader hands them to the trainer. Per round, with a fresh cache folder:

- no cache: `minimagen.t5.t5_encode_text(batch, name="minilm")` on every batch (tokenise + encoder
  forward), what training without the cache does.
- cold cache, first batch: `TextEmbeddingCache("minilm").encode(batch)` on an empty cache: every
  distinct caption of the batch is encoded (one encoder call) and written to its own safetensors file.
- cold cache, epoch: the whole first epoch through that fresh cache (the first batches encode and
  write, the rest mostly hit).
- warm cache (memory): a second epoch through the same cache object (dict lookups + padding).
- warm cache (disk): a new cache object on the same folder, one epoch: each caption is read from its
  file once (from the page cache, on this machine), then served from memory -- what a new run or a
  DataLoader worker sees after `cache.precompute(dataset)`.
- TextImageCollator (warm): the collate_fn the trainer uses, batches of (image, caption) with
  the images made beforehand (stacking them is included).

Each figure is ms per caption (wall clock, and process CPU), median over --rounds; the speed-up is
no-cache / that. Loading the encoder (once per process) is timed separately and excluded.

    python benchmarks/text_encoding.py                  # 20,000 captions, batch 64, 3 rounds, 1 thread (~2 min)
    python benchmarks/text_encoding.py --epoch 2000 --rounds 1      # harness check
    python benchmarks/text_encoding.py --threads 2 --batch-size 32
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # this checkout's minimagen, even where it is not installed

from minimagen.data import TextEmbeddingCache, TextImageCollator  # noqa: E402
from minimagen.data.shapes import ShapesDataset  # noqa: E402
from minimagen.t5 import get_encoder, t5_encode_text  # noqa: E402
from common import write_report  # noqa: E402

DEFAULT_OUT = HERE / "results" / "text_encoding.json"
ENCODER = "minilm"
MODES = ("no_cache", "cold_first_batch", "cold_epoch", "warm_memory", "warm_disk", "collator_warm")
LABELS = {"no_cache": "no cache (encoder every batch)", "cold_first_batch": "cold cache, first batch",
          "cold_epoch": "cold cache, first epoch", "warm_memory": "warm cache (memory)",
          "warm_disk": "warm cache (disk, new object)", "collator_warm": "TextImageCollator (warm)"}


def timed(fn, batches):
    """Run fn on every batch -> (wall seconds, CPU seconds)."""
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in batches:
        fn(batch)
    return time.perf_counter() - t0, time.process_time() - c0


def one_round(batches, image_batches, encode, root):
    """Every mode once, on a fresh cache folder under root -> {mode: (wall s, CPU s, captions)}."""
    out = {}
    n = sum(len(b) for b in batches)
    wall, cpu = timed(encode, batches)
    out["no_cache"] = (wall, cpu, n)

    folder = tempfile.mkdtemp(dir=root)
    cache = TextEmbeddingCache(ENCODER, cache_dir=folder)
    wall, cpu = timed(cache.encode, batches[:1])
    out["cold_first_batch"] = (wall, cpu, len(batches[0]))
    files_after_first = len(list(cache.dir.glob("*.safetensors")))
    wall_rest, cpu_rest = timed(cache.encode, batches[1:])
    out["cold_epoch"] = (wall + wall_rest, cpu + cpu_rest, n)
    distinct, misses = len(cache.memory), cache.misses

    wall, cpu = timed(cache.encode, batches)
    out["warm_memory"] = (wall, cpu, n)

    fresh = TextEmbeddingCache(ENCODER, cache_dir=folder)
    wall, cpu = timed(fresh.encode, batches)
    out["warm_disk"] = (wall, cpu, n)
    if fresh.misses:
        raise RuntimeError(f"warm disk cache missed {fresh.misses} captions")

    collate = TextImageCollator(fresh)
    wall, cpu = timed(collate, image_batches)
    out["collator_warm"] = (wall, cpu, n)
    return out, dict(distinct_captions=distinct, cold_misses=misses, files_after_first_batch=files_after_first,
                     bytes_on_disk=sum(p.stat().st_size for p in cache.dir.glob("*.safetensors")))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epoch", type=int, default=20_000, help="captions in the epoch (default 20,000, the shapes preset's data_size)")
    p.add_argument("--batch-size", type=int, default=64, help="captions per batch (default 64)")
    p.add_argument("--rounds", type=int, default=3, help="repetitions, each with a fresh cache folder (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--image-size", type=int, default=32, help="image side for the collator row (default 32, the base stage)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file for the figures ('' = do not write)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    get_encoder(ENCODER)
    load_s = time.perf_counter() - t0

    def encode(texts):
        return t5_encode_text(texts, name=ENCODER)  # what the cache runs on a miss, and training without it

    captions = ShapesDataset(size=args.image_size, length=args.epoch).captions()
    batches = [captions[i:i + args.batch_size] for i in range(0, len(captions) - args.batch_size + 1, args.batch_size)]
    image = torch.zeros(3, args.image_size, args.image_size)
    image_batches = [[(image.clone(), c) for c in batch] for batch in batches]
    encode(batches[0])  # warm-up, not timed
    load_before = os.getloadavg()
    print(f"encoder {ENCODER} loaded in {load_s:.1f} s; {len(batches)} batches of {args.batch_size} "
          f"({len(batches) * args.batch_size} captions, {len(set(captions))} distinct); {args.rounds} round(s); "
          f"{torch.get_num_threads()} thread(s); load average {load_before[0]:.2f} ({os.cpu_count()} CPUs)", flush=True)

    rounds, info = [], None
    with tempfile.TemporaryDirectory(prefix="bench_text_cache_") as root:
        for r in range(args.rounds):
            res, info = one_round(batches, image_batches, encode, root)
            rounds.append(res)
            print(f"  round {r + 1}: " + ", ".join(f"{m} {1000 * w / n:.3f}" for m, (w, c, n) in res.items())
                  + " ms/caption", flush=True)
    load_after = os.getloadavg()

    summary = {}
    for mode in MODES:
        ms = [1000 * rounds[r][mode][0] / rounds[r][mode][2] for r in range(len(rounds))]
        cpu_ms = [1000 * rounds[r][mode][1] / rounds[r][mode][2] for r in range(len(rounds))]
        summary[mode] = dict(ms_per_caption=statistics.median(ms), cpu_ms_per_caption=statistics.median(cpu_ms),
                             rounds_ms=ms, rounds_cpu_ms=cpu_ms, captions=rounds[0][mode][2])
    base, base_cpu = summary["no_cache"]["ms_per_caption"], summary["no_cache"]["cpu_ms_per_caption"]
    for mode in MODES:
        summary[mode]["speedup"] = base / summary[mode]["ms_per_caption"]
        summary[mode]["speedup_cpu"] = base_cpu / summary[mode]["cpu_ms_per_caption"]

    print(f"\n{'':32} {'ms/caption':>10} {'CPU ms':>8} {'speed-up':>9} {'(CPU)':>7} {'ms/batch':>9}")
    for mode in MODES:
        s = summary[mode]
        print(f"{LABELS[mode]:32} {s['ms_per_caption']:>10.4f} {s['cpu_ms_per_caption']:>8.4f} {s['speedup']:>8.1f}x "
              f"{s['speedup_cpu']:>6.1f}x {s['ms_per_caption'] * args.batch_size:>9.2f}")
    print(f"\ncache: {info['distinct_captions']} distinct captions encoded once ({info['files_after_first_batch']} "
          f"files after the first batch), {info['bytes_on_disk'] / 1024:.0f} KB on disk; encoder load {load_s:.1f} s "
          "(not included above)")

    report = dict(encoder=ENCODER, epoch_captions=len(batches) * args.batch_size, batch_size=args.batch_size,
                  rounds=args.rounds, threads=torch.get_num_threads(), torch=torch.__version__,
                  python=platform.python_version(), cpus=os.cpu_count(), loadavg_before=load_before,
                  loadavg_after=load_after, encoder_load_s=load_s, cache=info, results=summary,
                  note="median over rounds of ms per caption; speed-up = no cache / mode")
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
