"""Generate images from captions with a trained model: `minimagen-sample` or `python -m minimagen.sample`.

    minimagen-sample "a red circle on a blue background"                        # the shipped shapes model
    minimagen-sample --model runs/shapes/model "a green square on a black background" \\
        --num-images 4 --cond-scale 3,1 --sampler dpmpp_2m --steps 15 --seed 0 --out samples/

Writes one PNG per image, `<index>_<slug of the caption>.png`, and `grid.png` with every image and
its caption under it, then prints the paths. `--model` is a folder written by Imagen.save_pretrained
(a training run's `model/`) or the name of a pretrained model (see minimagen.pretrained).
"""

import argparse
import signal
import sys
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .Imagen import Imagen
from .samplers import SAMPLERS
from .utils import get_device, image_grid, save_images, sigterm_as_ctrl_c, slugify
from .validation import check_cond_scale, check_device, check_noise_level, check_seed


def load_model(model: str | None, device=None) -> Imagen:
    """A folder written by save_pretrained, or the name of a pretrained model (None: 'shapes')."""
    from . import pretrained

    model = model or "shapes"
    if Path(model).is_dir():
        return Imagen.from_pretrained(model, device=device)
    if "/" not in model and "\\" not in model and not Path(model).suffix:
        return pretrained.load_pretrained(model, device=device)  # FileNotFoundError that says how to train it
    raise CheckpointError(f"model folder not found: {model} (expected a folder with config.json and "
                          f"model.safetensors, written by Imagen.save_pretrained or minimagen-train)")


def generate(imagen: Imagen, prompts, num_images: int = 1, batch_size: int = 16, on_batch=None,
             **sample_kwargs) -> tuple:
    """Images for each prompt, prompt by prompt: returns (images (b, 3, s, s) in [0, 1], b captions).

    With a seed, the result is the same for the same prompts, num_images and batch_size.
    on_batch: called as on_batch(images, captions, start) as soon as each batch is made (to save it
    before the next one starts: an interrupted run keeps what it made).
    """
    captions = [p for p in prompts for _ in range(num_images)]
    seed = sample_kwargs.pop("seed", None)
    check_seed(seed)
    generator = torch.Generator(device=imagen.device).manual_seed(seed) if seed is not None else None
    chunks = []
    for start in range(0, len(captions), batch_size):
        chunks.append(imagen.sample(captions[start:start + batch_size], generator=generator, **sample_kwargs).cpu())
        if on_batch is not None:
            on_batch(chunks[-1], captions[start:start + batch_size], start)
    return torch.cat(chunks), captions


def parse_cond_scales(text: str) -> tuple:
    """'3' or '3,1' -> (3.0,) or (3.0, 1.0)."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers like 3,1; got {text!r}")


def parse_interval(text: str) -> tuple:
    """'0.5,1' -> (0.5, 1.0): a guidance interval of noise levels (Imagen.sample checks the values)."""
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two comma-separated noise levels like 0.5,1; got {text!r}")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minimagen-sample", description="Generate images from captions.")
    parser.add_argument("prompts", nargs="+", metavar="PROMPT", help="captions to draw, one image set each")
    parser.add_argument("--model", default=None,
                        help="model folder (e.g. runs/shapes/model) or pretrained name (default: shapes)")
    parser.add_argument("--cond-scale", type=parse_cond_scales, default=None, metavar="S[,S...]",
                        help="classifier-free guidance scale: one for every stage, or one per stage "
                             "(default: the model's recommended scales, usually 3 on the base and 1 after)")
    parser.add_argument("--sampler", choices=SAMPLERS, default=None,
                        help="sampler (default: the model's recommended one; the shipped model's is dpmpp_2m)")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoising steps per stage (default: the model's recommended steps; the shipped model's: 15)")
    parser.add_argument("--guidance-interval", type=parse_interval, default=None, metavar="LO,HI",
                        help="guide only at noise levels sqrt(1 - alphas_cumprod_t) in [LO, HI], one plain pass "
                             "elsewhere (default: guide every step)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same images (default 0)")
    parser.add_argument("--num-images", type=int, default=1, help="images per prompt (default 1)")
    parser.add_argument("--batch-size", type=int, default=16, help="images generated at once (default 16)")
    parser.add_argument("--out", default="samples", help="output folder (default samples/)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps... (default: the best available)")
    parser.add_argument("--lowres-noise-level", type=float, default=None,
                        help="noise level in [0, 1] of the low-resolution image each super-resolution stage "
                             "sees (default: the model's, usually 0.2)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return parser


def main(argv=None) -> int:
    """`minimagen-sample`; user errors print one line and exit with code 2.

    Each batch's pictures are written as soon as they are made, so Ctrl-C (or SIGTERM) keeps them:
    the grid of those is written, their paths printed, and the exit code is 130 (143).
    """
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    kept = []  # (path, image, caption) of every picture written so far

    def keep(images, captions, start):
        names = [f"{start + i}_{slugify(caption)}.png" for i, caption in enumerate(captions)]
        kept.extend(zip(save_images(images, out, names), images, captions))

    interrupted = None
    with sigterm_as_ctrl_c() as stop:
        try:
            if args.num_images < 1 or args.batch_size < 1:
                raise ValueError("--num-images and --batch-size must be at least 1")
            if args.steps is not None and args.steps < 1:
                raise ValueError(f"--steps must be at least 1, got {args.steps}")
            check_noise_level(args.lowres_noise_level, "--lowres-noise-level")
            check_cond_scale(args.cond_scale, "--cond-scale")
            check_seed(args.seed, "--seed")
            if out.exists() and not out.is_dir():
                raise ValueError(f"--out {out} is a file; expected a folder (created if missing)")
            device = check_device(args.device, "--device") if args.device else get_device()
            imagen = load_model(args.model, device=device)
            # Settings not given (None) take the model's recommended ones, stored in its config.json.
            generate(imagen, args.prompts, num_images=args.num_images, batch_size=args.batch_size, on_batch=keep,
                     cond_scale=args.cond_scale, sampler=args.sampler, steps=args.steps, seed=args.seed,
                     lowres_sample_noise_level=args.lowres_noise_level, guidance_interval=args.guidance_interval,
                     progress=args.progress)
        except (ValueError, CheckpointError, FileNotFoundError, OSError) as err:
            # OSError: also a text encoder whose weights cannot be loaded (no network).
            print(f"minimagen-sample: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            interrupted = stop.signal or signal.SIGINT
    if kept:
        paths, images, captions = zip(*kept)
        grid = out / "grid.png"
        image_grid(torch.stack(images), list(captions), nrow=min(len(captions), 4), min_size=128).save(grid)
        for path in [*paths, grid]:
            print(path)
    if interrupted:
        total = len(args.prompts) * args.num_images
        print(f"minimagen-sample: interrupted; kept the {len(kept)} of {total} pictures already made in {out}",
              file=sys.stderr)
        return 128 + int(interrupted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
