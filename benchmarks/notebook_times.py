#!/usr/bin/env python3
"""Execution time of every course notebook, run headless from a temporary copy.

Prints figures (and writes them to benchmarks/results/notebook_times.json); asserts nothing.

Each notebook in notebooks/ (sorted by name; an optional glob narrows the selection) is executed
top to bottom with nbconvert's ExecutePreprocessor (nbclient) in a fresh kernel, from a copy of the
notebooks folder in a temporary directory: the notebooks themselves are never written. Per notebook:

- seconds: wall clock of the whole execution, kernel start and shutdown included;
- KB: size of the executed notebook (with its fresh outputs), and of the stored one in the JSON;
- pass/fail: FAIL when a cell raised (or a cell ran past --timeout); the first error is shown;
- the slowest cell, from nbclient's per-cell timing metadata.

The kernel is the notebooks' own (python3) started with this process's environment plus
OMP_NUM_THREADS/MKL_NUM_THREADS = --threads (when given), HF_HUB_OFFLINE=1 as in the tests, and
this checkout on PYTHONPATH, so the notebooks import this checkout's minimagen.

    python benchmarks/notebook_times.py                     # every notebook
    python benchmarks/notebook_times.py '0[1-5]*'           # a selection (glob on the file name)
    python benchmarks/notebook_times.py --threads 1         # one thread in the kernel (busy machine)
    python benchmarks/notebook_times.py --keep /tmp/executed    # also keep the executed copies there
    python benchmarks/notebook_times.py --write-docs        # and quote the figures in the README and headers

The figures are the one source of the course's run times: --write-docs (all notebooks, all passed) puts
each notebook's seconds into the README's table and into the notebook's own first cell, with the
machine and the thread count, and tests/test_project_setup.py checks that the three agree.
"""

import argparse
import fnmatch
import os
import platform
import re
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import write_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_OUT = HERE / "results" / "notebook_times.json"

# How the figures are quoted: a notebook's header sentence, and its README row's last column.
HEADER = re.compile(r"Runs in [^\n]*? on [^\n]*?CPU[^\n]*?\.(?=\s|$)")
ROW = re.compile(r"^(\| (\d\d) \| .*\| )~?\d+ s \|$", re.M)
SUMMARY = re.compile(r"All ten run top to bottom in [^\n]*\n[^\n]*?notebook's time\)\.")


def machine_name():
    """The CPU's model name (from /proc/cpuinfo on Linux, else platform.processor()) and its core count."""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{os.cpu_count()}-core {model}"


def header_sentence(seconds, report):
    return f"Runs in about {round(seconds)} s on a {report['machine']} CPU ({report['kernel_threads']} threads)."


def write_docs(report):
    """Quote the figures of a full, passing run in README.md's table and in each notebook's first cell."""
    import nbformat

    if report["pattern"] or report["passed"] != len(report["notebooks"]):
        raise SystemExit("--write-docs needs every notebook, all passing")
    seconds = {r["notebook"][:2]: r["seconds"] for r in report["notebooks"]}
    readme_path = ROOT / "README.md"
    readme = ROW.sub(lambda m: f"{m.group(1)}~{round(seconds[m.group(2)])} s |", readme_path.read_text())
    readme = SUMMARY.sub(f"All ten run top to bottom in {report['total_s']:.0f} s on a {report['machine']} CPU "
                         f"({report['kernel_threads']} threads, measured {report['date']}; `python\n"
                         f"benchmarks/notebook_times.py --write-docs` prints each notebook's time).", readme)
    readme_path.write_text(readme)
    for r in report["notebooks"]:
        path = NOTEBOOKS / r["notebook"]
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0]
        if not HEADER.search(first.source):
            raise SystemExit(f"{path.name}: its first cell has no 'Runs in ... CPU ...' sentence to update")
        first.source = HEADER.sub(header_sentence(r["seconds"], report), first.source)
        nbformat.write(nb, path)
    print(f"quoted the figures in README.md and the first cell of {len(report['notebooks'])} notebooks")


def select(pattern):
    """Sorted notebooks in notebooks/ whose file name matches pattern (a glob; '.ipynb' implied)."""
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    if pattern:
        pats = [pattern] if pattern.endswith(".ipynb") else [pattern, pattern + ".ipynb"]
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in pats)]
    return names


def _cell_seconds(cell):
    """Seconds a code cell ran, from nbclient's timing metadata, or None."""
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(end) - parse(start)).total_seconds()


def run_one(path, timeout, kernel_name):
    """Execute the notebook at path in place (path is a temporary copy) -> result dict."""
    import nbformat
    from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

    nb = nbformat.read(path, as_version=4)
    ep = ExecutePreprocessor(timeout=timeout, kernel_name=kernel_name or nb.metadata.get("kernelspec", {}).get("name", "python3"))
    error = None
    t0 = time.perf_counter()
    try:
        ep.preprocess(nb, {"metadata": {"path": str(path.parent)}})
    except CellExecutionError as err:
        error = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', '')}"
    except Exception as err:  # a cell past --timeout, a dead kernel
        first = next((line for line in str(err).splitlines() if line.strip()), "")
        error = f"{type(err).__name__}: {first}"
    seconds = time.perf_counter() - t0
    if error is not None:
        failed = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                       and any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        error = re.sub(r"\x1b\[[0-9;]*m", "", error)[:300] + (f" (cell #{failed})" if failed is not None else "")
    nbformat.write(nb, path)
    cells = [(i, _cell_seconds(c)) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    cells = [(i, s) for i, s in cells if s is not None]
    slowest = sorted(cells, key=lambda x: -x[1])[:3]
    return dict(seconds=seconds, ok=error is None, error=error, executed_kb=path.stat().st_size / 1024,
                code_cells=sum(c.cell_type == "code" for c in nb.cells), cells_timed_s=sum(s for _, s in cells),
                slowest_cells=[dict(cell=i, seconds=s) for i, s in slowest])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pattern", nargs="?", default=None, help="glob on the notebook file names, e.g. '0[1-5]*' (default all)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="OMP_NUM_THREADS and MKL_NUM_THREADS for the kernel (default: one per CPU)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds one cell may run (default 1800)")
    p.add_argument("--kernel", default=None, help="kernel name (default: the notebook's kernelspec)")
    p.add_argument("--keep", help="also copy the executed notebooks into this folder (never notebooks/)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file for the figures ('' = do not write)")
    p.add_argument("--write-docs", action="store_true",
                   help="quote the figures in README.md's table and each notebook's header (all notebooks only)")
    args = p.parse_args(argv)

    names = select(args.pattern)
    if not names:
        raise SystemExit(f"no notebook in {NOTEBOOKS} matches {args.pattern!r}")
    if args.keep and Path(args.keep).resolve() == NOTEBOOKS.resolve():
        raise SystemExit("--keep must not be the notebooks folder: the notebooks are never overwritten")

    # The kernel inherits this environment.
    if args.threads < 1:
        raise SystemExit(f"--threads must be a positive integer, got {args.threads}")
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x])
    threads = int(os.environ["OMP_NUM_THREADS"])

    load_before = os.getloadavg()
    print(f"{len(names)} notebook(s); kernel threads {threads}; load average {load_before[0]:.2f} "
          f"({os.cpu_count()} CPUs)", flush=True)
    results = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_notebooks_") as tmp:
        copy = Path(tmp) / "notebooks"
        shutil.copytree(NOTEBOOKS, copy, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        for name in names:
            res = run_one(copy / name, args.timeout, args.kernel)
            res.update(notebook=name, stored_kb=(NOTEBOOKS / name).stat().st_size / 1024,
                       loadavg_end=os.getloadavg()[0])
            results.append(res)
            print(f"  {name}: {res['seconds']:.1f} s {'pass' if res['ok'] else 'FAIL: ' + res['error']}", flush=True)
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                shutil.copy2(copy / name, Path(args.keep) / name)
    total = time.perf_counter() - started
    load_after = os.getloadavg()

    width = max(len(r["notebook"]) for r in results)
    print(f"\n{'notebook':{width}} {'seconds':>8} {'KB':>7} {'result':>6}  slowest cell")
    for r in results:
        slow = r["slowest_cells"][0] if r["slowest_cells"] else None
        slow_s = f"#{slow['cell']} {slow['seconds']:.1f} s" if slow else "-"
        print(f"{r['notebook']:{width}} {r['seconds']:>8.1f} {r['executed_kb']:>7.0f} {'pass' if r['ok'] else 'FAIL':>6}  {slow_s}")
    passed = sum(r["ok"] for r in results)
    print(f"{'total':{width}} {sum(r['seconds'] for r in results):>8.1f} "
          f"{sum(r['executed_kb'] for r in results):>7.0f} {passed}/{len(results)}")
    for r in results:
        if not r["ok"]:
            print(f"FAIL {r['notebook']}: {r['error']}")

    import nbclient
    import nbconvert

    report = dict(pattern=args.pattern, kernel_threads=threads, machine=machine_name(),
                  date=datetime.now().strftime("%Y-%m-%d"), timeout=args.timeout, python=platform.python_version(),
                  nbclient=nbclient.__version__, nbconvert=nbconvert.__version__, cpus=os.cpu_count(),
                  loadavg_before=load_before, loadavg_after=load_after, total_s=sum(r["seconds"] for r in results),
                  wall_s=total, passed=passed, notebooks=results)
    write_report(report, args.out)
    if args.write_docs:
        write_docs(report)
    return report


if __name__ == "__main__":
    main()
