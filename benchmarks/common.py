"""What the benchmark scripts share: writing their figures as JSON, and a probe of the machine's speed."""
import json
import time
from pathlib import Path


def write_report(report: dict, out) -> None:
    """Write `report` as indented JSON to the file `out` ('' or None: write nothing), and say where."""
    if not out:
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {out}")


def matmul_gflops(torch, size: int = 1024, repeats: int = 4) -> float:
    """GFLOP/s of a size x size float32 matmul: recorded beside timings, so a disturbed run shows.

    `torch` is passed in because bench_train_vs_original.py also runs this under the original
    MinImagen's virtual environment.
    """
    a = torch.randn(size, size)
    a @ a
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return repeats * 2 * size ** 3 / (time.perf_counter() - start) / 1e9
