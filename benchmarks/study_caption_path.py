"""Study row of benchmarks/README.md ("Drawing the asked shape"): how the caption reaches the U-Net.

Trains the 16 px base alone on the study's protocol (lr 1e-3 constant, 3,000 steps, fp32, one thread) with the
caption reaching it by token cross-attention only or by the pooled embedding (added to the time
conditioning) only, then scores the base's own 16 px picture (DDIM 50, guidance 3) on prompt_fidelity's
caption sets (48 held-out, 48 seen) and prints one JSON line. About 8 CPU-minutes per mode.

    python benchmarks/study_caption_path.py pooled_only  [--out runs/study]
    python benchmarks/study_caption_path.py cross_only

The switch is a patch of Unet._text_condition inside this process only: the package keeps both paths.
"""
import json
import sys

import torch
from prompt_fidelity import caption_sets

from minimagen.data import TextEmbeddingCache, score_image
from minimagen.Imagen import Imagen
from minimagen.train import train
from minimagen.Unet import Unet

mode = sys.argv[1] if len(sys.argv) > 1 else ""
if mode not in ("pooled_only", "cross_only"):
    sys.exit("usage: study_caption_path.py pooled_only|cross_only [--out DIR]")
root = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "runs/study"
original = Unet._text_condition


def patched(self, text_embeds, text_mask, keep):
    tokens, mask, pooled = original(self, text_embeds, text_mask, keep)
    if mode == "pooled_only":      # cross-attention sees no token, only its learned null key/value
        mask = torch.zeros_like(mask)
    elif mode == "cross_only":     # the time conditioning gets the null text vector, never the caption's
        pooled = self.null_text_pooled.to(pooled.dtype).expand_as(pooled)
    return tokens, mask, pooled


Unet._text_condition = patched
torch.set_num_threads(1)
out = f"{root}/{mode}"
train(preset="shapes", out_dir=out, image_sizes=(16, 32), random_crop_sizes=(0, 0), unet="1", steps=(3000, 1),
      lr=1e-3, lr_schedule="constant", precision="no", num_threads=1, progress=False, sample_every=0,
      checkpoint_every=0, overwrite=True)
model = Imagen.from_pretrained(f"{out}/model")
cache = TextEmbeddingCache(model.text_encoder_name)
row = {"mode": mode}
for name, caps in caption_sets(3, 0).items():
    embeds, masks = cache.encode(caps)
    images = model.sample(text_embeds=embeds, text_masks=masks, seed=0, stop_at_unet=1, cond_scale=3.0,
                          sampler="ddim", steps=50, progress=False)
    res = [score_image(i, c) for i, c in zip(images, caps)]
    row[name] = {k: round(sum(r[k] for r in res) / len(res), 3) for k in ("shape_ok", "joint_colour_ok")}
row["train_minutes"] = round(json.loads(open(f"{out}/log.jsonl").read().splitlines()[-1])["time"] / 60, 1)
print(json.dumps(row), flush=True)
