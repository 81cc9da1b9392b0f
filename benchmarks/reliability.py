"""Kill, resume, crash the export: does any run get lost? End to end on the `tiny` preset, real processes.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/reliability.py [--kills 3] [--steps 40,20]

Scenarios, each in its own run folder under a temporary directory:
  - reference: one uninterrupted run (what every interrupted run must end equal to);
  - kill -9: for each checkpoint interval, a run killed with SIGKILL at random steps (`--kills` times),
    then `--resume`d until it finishes; steps lost per kill = steps logged before the kill minus the
    checkpoint's step;
  - SIGTERM: the same with SIGTERM, which must lose nothing (a checkpoint after the current step);
  - export crash: a finished run whose process dies (SIGKILL) between the model's weights and its
    config.json, or just before the final export; then `--resume` must leave a model/ that loads and
    holds the checkpoint's EMA weights.
A resume is bit-exact when the finished run's checkpoint (raw weights, EMA, optimizer moments) and
model/ equal the reference's tensor for tensor. Prints the counts; exits 1 if any run was lost.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import write_report  # noqa: E402

from minimagen.checkpoint import CheckpointError, load_model_folder  # noqa: E402
from minimagen.train import CHECKPOINT_NAME, MODEL_DIR, read_checkpoint, read_checkpoint_meta  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

# A child that trains and dies by SIGKILL at a chosen point of the export: `crash_at` is "config" (the
# weights are written, config.json is not) or "export" (the checkpoint is written, the export not begun).
CRASHING_CHILD = """
import os, signal, sys
import minimagen.checkpoint as checkpoint
import minimagen.train.trainer as trainer
crash_at, argv = sys.argv[1], sys.argv[2:]
final = {"n": 0}
def die():
    os.kill(os.getpid(), signal.SIGKILL)
if crash_at == "config":
    write_json = checkpoint.write_json
    def write_json_then_die(path, data):
        if data.get("format") == "minimagen" and final["n"] >= 1:
            die()
        write_json(path, data)
    checkpoint.write_json = write_json_then_die
export = trainer.Trainer.export
def export_counting(self, directory=None):
    if self.global_step == sum(self.config.target_steps()):
        final["n"] += 1
        if crash_at == "export":
            die()
    return export(self, directory)
trainer.Trainer.export = export_counting
from minimagen.train import main
sys.exit(main(argv))
"""


def train_args(out: Path, cache: Path, steps: str, every: int) -> list:
    return ["--preset", "tiny", "--out", str(out), "--text-cache-dir", str(cache), "--data-size", "64",
            "--steps", steps, "--checkpoint-every", str(every), "--no-progress"]


def logged_steps(out: Path) -> int:
    log = out / "log.jsonl"
    if not log.exists():
        return 0
    steps = []
    for line in log.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass
    return max(steps, default=0)


def run_until(cmd: list, out: Path, stop_at: int | None, signum) -> tuple:
    """Start `cmd`; when the log reaches step `stop_at`, send `signum`. Returns (exit code, last logged step)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if stop_at is not None:
        while proc.poll() is None and logged_steps(out) < stop_at:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signum)
    _, err = proc.communicate(timeout=600)
    if proc.returncode not in (0, -signal.SIGKILL, 128 + signal.SIGTERM):
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    return proc.returncode, logged_steps(out)


def same_tensors(a: dict, b: dict, prefixes=("model.", "ema.", "optimizer.")) -> bool:
    keys = [k for k in a if k.startswith(prefixes)]
    return sorted(keys) == sorted(k for k in b if k.startswith(prefixes)) and all(torch.equal(a[k], b[k]) for k in keys)


def same_model(a: Path, b: Path) -> bool:
    try:
        (_, sa), (_, sb) = load_model_folder(a), load_model_folder(b)
    except CheckpointError:
        return False
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="40,20", help="steps per U-Net of every run (default 40,20)")
    parser.add_argument("--intervals", default="5,20", help="checkpoint intervals to try (default 5,20)")
    parser.add_argument("--kills", type=int, default=3, help="interruptions per run (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the moments of the kills")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "reliability.json"),
                        help="where to write the figures as JSON ('' for nowhere)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    total = sum(int(s) for s in args.steps.split(","))
    train = [sys.executable, "-m", "minimagen.train"]
    start = time.monotonic()
    counts = dict(runs=0, interruptions=0, resumes=0, exact=0, lost_runs=0)
    lost = {}  # (kind, interval) -> steps lost at each interruption

    with tempfile.TemporaryDirectory() as tmp:
        tmp, cache = Path(tmp), Path(tmp) / "cache"
        references = {}
        for every in map(int, args.intervals.split(",")):
            ref = tmp / f"reference_{every}"
            run_until(train + train_args(ref, cache, args.steps, every), ref, None, None)
            references[every] = (read_checkpoint(ref / CHECKPOINT_NAME)[0], ref / MODEL_DIR)
            counts["runs"] += 1

            for kind, signum in (("kill -9", signal.SIGKILL), ("SIGTERM", signal.SIGTERM)):
                out = tmp / f"{kind.replace(' ', '')}_{every}"
                base = train + train_args(out, cache, args.steps, every)
                cmd = base
                counts["runs"] += 1
                kill_at = sorted(rng.sample(range(2, total), args.kills))
                for target in kill_at:
                    code, reached = run_until(cmd, out, target, signum)
                    if code == 0:
                        break  # finished before the signal arrived
                    counts["interruptions"] += 1
                    kept = read_checkpoint_meta(out / CHECKPOINT_NAME)["global_step"] \
                        if (out / CHECKPOINT_NAME).exists() else 0
                    lost.setdefault((kind, every), []).append(reached - kept)
                    # Killed before its first checkpoint, a run has nothing to resume: it starts again.
                    cmd = base + ["--resume"] if (out / CHECKPOINT_NAME).exists() else base
                else:
                    run_until(cmd, out, None, None)
                counts["resumes"] += 1
                tensors = read_checkpoint(out / CHECKPOINT_NAME)[0]
                reference_tensors, reference_model = references[every]
                exact = same_tensors(tensors, reference_tensors) and same_model(out / MODEL_DIR, reference_model)
                counts["exact"] += exact
                counts["lost_runs"] += not exact

        # Export crashes: a finished run dies inside its final export, then --resume repairs model/.
        every = int(args.intervals.split(",")[0])
        export_results = []
        for crash_at in ("config", "export"):
            out = tmp / f"export_crash_{crash_at}"
            cmd = [sys.executable, "-c", CRASHING_CHILD, crash_at] + train_args(out, cache, args.steps, every)
            proc = subprocess.run(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            counts["runs"] += 1
            counts["interruptions"] += proc.returncode == -signal.SIGKILL
            broken = not same_model(out / MODEL_DIR, references[every][1])
            run_until(train + train_args(out, cache, args.steps, every) + ["--resume"], out, None, None)
            counts["resumes"] += 1
            repaired = same_model(out / MODEL_DIR, references[every][1])
            exact = repaired and same_tensors(read_checkpoint(out / CHECKPOINT_NAME)[0], references[every][0])
            counts["exact"] += exact
            counts["lost_runs"] += not exact
            export_results.append((crash_at, proc.returncode, broken, repaired))

    print(f"benchmarks/reliability.py: tiny preset, steps {args.steps} ({total} in all), {args.kills} interruptions "
          f"per run, seed {args.seed}, {time.monotonic() - start:.0f} s")
    print(f"runs {counts['runs']}, interruptions {counts['interruptions']}, resumes checked {counts['resumes']}, "
          f"bit-exact {counts['exact']}/{counts['resumes']}, runs lost {counts['lost_runs']}")
    for (kind, every), values in sorted(lost.items()):
        print(f"  {kind:8s} checkpoint every {every:3d} steps: steps lost per interruption {values} "
              f"(mean {sum(values) / len(values):.1f}, at most {every} possible)")
    for crash_at, code, broken, repaired in export_results:
        where = "between the weights and config.json" if crash_at == "config" else "before the final export"
        print(f"  export killed {where}: exit {code}, model/ {'broken or stale' if broken else 'intact'} after the "
              f"crash, {'repaired' if repaired else 'NOT repaired'} by --resume")
    write_report({"steps": args.steps, "kills_per_run": args.kills, "seed": args.seed, "seconds": round(
        time.monotonic() - start), **counts, "steps_lost": {f"{kind} every {every}": values
                                                          for (kind, every), values in sorted(lost.items())},
        "export_crashes": [dict(crash_at=c, exit=code, broken_after_crash=b, repaired=r)
                           for c, code, b, r in export_results]}, args.json)
    return 1 if counts["lost_runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
