"""Does a shapes model draw what its captions ask for? Accuracy per attribute, by pixel statistics.

Samples every held-out (colour, shape, background) combination, which never appeared in training, and
as many training combinations, then scores each image against its caption with
`minimagen.data.score_image` (border pixels give the background colour, the pixels that differ from it
give the shape's colour and outline; no model is involved). Prints the accuracy of the shape colour,
the background colour, both together (the joint colour accuracy) and the shape, for each set, plus
the time per image and a grain figure (median difference between neighbouring pixels; 0 for flat colour).

    python benchmarks/prompt_fidelity.py                      # the shipped model, its recommended sampling
    python benchmarks/prompt_fidelity.py --model runs/shapes/model --sampler ddpm --steps 1000
    python benchmarks/prompt_fidelity.py --json results/fidelity.json --grid fidelity.png
    python benchmarks/prompt_fidelity.py --cond-scale 3 --per-stage   # guide every stage; score 32 px too
"""

import argparse
import json
import random
import time

import torch
from common import add_model_args, load_model

from minimagen.data import HELD_OUT, TextEmbeddingCache, score_image
from minimagen.data.shapes import all_combinations, make_caption
from minimagen.Imagen import Imagen
from minimagen.sample import parse_interval
from minimagen.samplers import SAMPLERS
from minimagen.utils import image_grid

ATTRIBUTES = ("fg_ok", "bg_ok", "joint_colour_ok", "shape_ok")


def caption_sets(repeats: int, seed: int = 0) -> dict:
    """{'held_out': captions of every held-out combination (x repeats), 'train': as many training ones}."""
    held_out = [make_caption(*combo) for combo in HELD_OUT] * repeats
    seen = [combo for combo in all_combinations() if combo not in HELD_OUT]
    train = [make_caption(*combo) for combo in random.Random(seed).sample(seen, len(held_out))]
    return {"held_out": held_out, "train": train}


def grain(images: torch.Tensor) -> float:
    """Median absolute difference between horizontally neighbouring values of (b, 3, h, w) images in
    [0, 1]: about 0 for the flat colours of real shapes pictures, larger for a grainy sample."""
    return (images[..., 1:] - images[..., :-1]).abs().median().item()


def accuracy_of(images: torch.Tensor, captions: list) -> dict:
    results = [score_image(image, caption) for image, caption in zip(images, captions)]
    return {key: sum(r[key] for r in results) / len(results) for key in ATTRIBUTES}


def score(model: Imagen, captions: list, cache: TextEmbeddingCache, args) -> tuple[dict, torch.Tensor, float, dict]:
    """Sample one image per caption (in batches) -> (accuracy per attribute, images, seconds per image,
    and with --per-stage the accuracy of the base's own output)."""
    images, base_images, start = [], [], time.perf_counter()
    kwargs = dict(cond_scale=args.cond_scale, sampler=args.sampler, steps=args.steps, progress=False,
                  guidance_interval=getattr(args, "guidance_interval", None))
    for i in range(0, len(captions), args.batch_size):
        batch = captions[i:i + args.batch_size]
        embeds, masks = cache.encode(batch)
        if args.per_stage:
            # Every stage's output from one call: the base's own picture, and the final one enlarged from it.
            base, *_, final = model.sample(text_embeds=embeds, text_masks=masks, seed=args.seed + i,
                                           return_all_stages=True, **kwargs)
            base_images.append(base)
            images.append(final)
        else:
            images.append(model.sample(text_embeds=embeds, text_masks=masks, seed=args.seed + i, **kwargs))
    seconds = (time.perf_counter() - start) / len(captions)
    images = torch.cat(images)
    base_accuracy = accuracy_of(torch.cat(base_images), captions) if base_images else {}
    return accuracy_of(images, captions), images, seconds, base_accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sampler", default=None, choices=SAMPLERS, help="default: the model's recommended one")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps per stage (default: the model's)")
    parser.add_argument("--guidance-interval", type=parse_interval, default=None, metavar="LO,HI",
                        help="guide only at noise levels sqrt(1 - alphas_cumprod_t) in [LO, HI] (default: every step)")
    add_model_args(parser)
    parser.add_argument("--per-stage", action="store_true",
                        help="also score the base U-Net's own (32 px) pictures, from which the cascade continues")
    parser.add_argument("--repeats", type=int, default=2, help="images per held-out combination")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--grid", help="save the held-out samples as a captioned grid PNG")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model(args)
    recommended = model.config["sampling"]
    args.sampler = args.sampler or recommended["sampler"]
    args.steps = args.steps or recommended["steps"]
    if args.per_stage and len(model.unets) < 2:
        parser.error("--per-stage needs a cascade of at least two U-Nets")
    cache = TextEmbeddingCache(model.text_encoder_name)
    report = {"model": args.model, "sampler": args.sampler, "steps": args.steps, "cond_scale": args.cond_scale,
              "threads": torch.get_num_threads()}
    print(f"model {args.model}: {args.sampler} {args.steps} steps, cond_scale {args.cond_scale}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'set':14} {'n':>4} {'fg colour':>10} {'bg colour':>10} {'joint':>7} {'shape':>7} {'s/image':>8} "
          f"{'grain':>7}")
    for name, captions in caption_sets(args.repeats, args.seed).items():
        accuracy, images, seconds, base_accuracy = score(model, captions, cache, args)
        report[name] = {**accuracy, "n": len(captions), "seconds_per_image": seconds, "grain": grain(images)}
        if base_accuracy:
            report[name]["base_only"] = base_accuracy
            size = model.image_sizes[0]
            print(f"{name + f' {size} px':14} {len(captions):>4} {base_accuracy['fg_ok']:>10.3f} "
                  f"{base_accuracy['bg_ok']:>10.3f} {base_accuracy['joint_colour_ok']:>7.3f} "
                  f"{base_accuracy['shape_ok']:>7.3f} {'(base)':>8}")
        print(f"{name:14} {len(captions):>4} {accuracy['fg_ok']:>10.3f} {accuracy['bg_ok']:>10.3f} "
              f"{accuracy['joint_colour_ok']:>7.3f} {accuracy['shape_ok']:>7.3f} {seconds:>8.3f} "
              f"{report[name]['grain']:>7.4f}")
        if name == "held_out" and args.grid:
            image_grid(images, captions, nrow=8).save(args.grid)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
