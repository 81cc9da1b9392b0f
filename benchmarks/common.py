"""What the benchmark scripts share: writing their figures as JSON, a probe of the machine's speed, and
the model and guidance options of the scripts that sample a shipped model."""
import json
import time
from pathlib import Path


def add_model_args(parser, default_model: str = "shapes") -> None:
    """--model and --cond-scale, as minimagen-sample takes them."""
    from minimagen.sample import parse_cond_scales

    parser.add_argument("--model", default=default_model,
                        help=f"a model folder, or the name of a shipped model (default {default_model})")
    parser.add_argument("--cond-scale", type=parse_cond_scales, default=None, metavar="S[,S...]",
                        help="guidance: one for every stage or one per stage (default: the model's recommended "
                             "scales, as minimagen-sample)")


def load_model(args):
    """The Imagen named by args.model (a folder, or a shipped model's name); fills in args.cond_scale's default."""
    from minimagen.Imagen import Imagen
    from minimagen.pretrained import load_pretrained

    is_folder = "/" in args.model or "\\" in args.model
    model = Imagen.from_pretrained(args.model) if is_folder else load_pretrained(args.model)
    if args.cond_scale is None:
        args.cond_scale = tuple(model.config["sampling"]["cond_scale"])
    return model


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
