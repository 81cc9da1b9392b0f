"""What every benchmark script does with its figures once it has printed them: keep them as JSON."""
import json
from pathlib import Path


def write_report(report: dict, out) -> None:
    """Write `report` as indented JSON to the file `out` ('' or None: write nothing), and say where."""
    if not out:
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {out}")
