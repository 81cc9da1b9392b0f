#!/usr/bin/env python3
"""What building each U-Net preset costs: parameters, seconds, and the process's peak memory.

Prints figures (and writes them to benchmarks/results/model_sizes.json); asserts nothing. Each
preset is built in a fresh process, so the peak resident memory (ru_maxrss) is that preset's own.
The README quotes these figures beside its examples (the original's Base and Super are GPU-sized).

    python benchmarks/model_sizes.py                      # SmallBase SmallSuper Base Super
    python benchmarks/model_sizes.py SmallBase SmallSuper # a selection
"""
import argparse
import json
import os
import subprocess
import sys

from common import write_report

BUILD = """
import json, resource, time, torch
torch.set_num_threads({threads})
from minimagen.Unet import PRESETS
start = time.perf_counter()
unet = PRESETS[{name!r}](text_embed_dim=384)
seconds = time.perf_counter() - start
print(json.dumps(dict(preset={name!r}, parameters=sum(p.numel() for p in unet.parameters()), seconds=seconds,
                      peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", default=["SmallBase", "SmallSuper", "Base", "Super"])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--out", default="benchmarks/results/model_sizes.json", help="JSON report ('' for none)")
    args = parser.parse_args()
    rows = []
    print(f"{'preset':<11} {'parameters':>14} {'build s':>8} {'peak GB':>8}   ({args.threads} threads)")
    for name in args.presets:
        done = subprocess.run([sys.executable, "-c", BUILD.format(name=name, threads=args.threads)],
                              capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.splitlines()[-1])
        rows.append(row)
        print(f"{name:<11} {row['parameters']:>14,} {row['seconds']:>8.1f} {row['peak_gb']:>8.2f}")
    write_report({"threads": args.threads, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
