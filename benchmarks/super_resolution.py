"""Does a cascade's super-resolution stage enlarge its base's picture, or add grain to it?

Samples the base (32 px) for a set of captions, then enlarges exactly those pictures with the next stage
(64 px), and prints for each:
- grain: median difference between horizontally neighbouring pixel values (as in prompt_fidelity.py;
  0 for flat colour), of the training pictures, of the base's samples and of the enlarged ones. A stage
  that learned to enlarge keeps the base's figure; an undertrained one adds its own noise on top;
- follow: mean absolute difference, per pixel value in [0, 1], between the enlarged picture shrunk back to
  32 px (area average) and the base picture it was given. An enlargement that keeps what it was given
  scores near 0.

    python benchmarks/super_resolution.py                                   # the shipped shapes model
    python benchmarks/super_resolution.py --model runs/emoji/model --captions emoji --grid sr.png
"""
import argparse
import time

import torch
import torch.nn.functional as F
from common import add_model_args, load_model, write_report
from prompt_fidelity import grain

from minimagen.data import EmojiDataset, ShapesDataset
from minimagen.utils import image_grid


def captions_and_pictures(kind: str, count: int, size: int) -> tuple[list, torch.Tensor]:
    """`count` captions of the data set `kind` and their training pictures, (count, 3, size, size) in [0, 1]."""
    if kind == "emoji":
        names = EmojiDataset(size=size).names
        dataset = EmojiDataset(size=size, include_names=names[::max(1, len(names) // count)][:count])
    else:
        dataset = ShapesDataset(size=size, length=count)
    pictures, captions = zip(*(dataset[i] for i in range(len(dataset))))
    return list(captions), torch.stack(pictures)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--captions", choices=("shapes", "emoji"), default="shapes",
                        help="which data set's captions (and training pictures) to use (default shapes)")
    parser.add_argument("--count", type=int, default=16, help="captions (default 16)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps per stage (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--grid", help="save training pictures, base samples and enlarged samples as one PNG")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.count < 1 or args.steps < 1:
        parser.error(f"--count and --steps must be positive, got {args.count} and {args.steps}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args)
    if len(model.unets) < 2:
        parser.error(f"--model: {args.model} has one stage; this needs a cascade of at least two")
    base_size, size = model.image_sizes[0], model.image_sizes[1]
    captions, pictures = captions_and_pictures(args.captions, args.count, size)

    kwargs = dict(texts=captions, cond_scale=args.cond_scale, sampler="ddim", steps=args.steps, progress=False)
    start = time.perf_counter()
    base, enlarged = model.sample(seed=args.seed, stop_at_unet=2, return_all_stages=True, **kwargs)
    seconds = time.perf_counter() - start
    follow = (F.interpolate(enlarged, size=base_size, mode="area") - base).abs().mean().item()
    report = dict(model=args.model, captions=args.captions, count=len(captions), steps=args.steps,
                  cond_scale=args.cond_scale, grain_training=grain(pictures), grain_base=grain(base),
                  grain_enlarged=grain(enlarged), follow=follow, seconds=seconds)
    print(f"model {args.model}: {len(captions)} {args.captions} captions, DDIM {args.steps} steps, "
          f"cond_scale {args.cond_scale} ({seconds:.0f} s)")
    print(f"grain: training pictures {report['grain_training']:.4f}, base ({base_size} px) "
          f"{report['grain_base']:.4f}, enlarged ({size} px) {report['grain_enlarged']:.4f}")
    print(f"follow: enlarged picture shrunk to {base_size} px vs the base's, mean |difference| {follow:.4f}")
    if args.grid:
        rows = torch.cat([pictures, F.interpolate(base, size=size, mode="nearest"), enlarged])
        labels = ["training"] * len(captions) + ["base"] * len(captions) + captions
        image_grid(rows, labels, nrow=len(captions), min_size=64).save(args.grid)
        print(f"wrote {args.grid}: training pictures, base samples (enlarged by repeating pixels), "
              f"{size} px samples")
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main()
