"""06 · Text conditioning and guidance: exercises 6.1 (the formula) and 6.2 (one batched U-Net pass)."""

import torch

from ..Unet import Unet
from .common import _call, _checker, _compare, _Failed, _passed, _text_inputs, _tiny_unet


class _TwoHalves:
    """Stands in for a U-Net: returns the given (cond, uncond) halves, so that minimagen's own
    Unet.forward_with_cond_scale combines them and serves as the reference formula."""

    def __init__(self, cond, uncond):
        self.cond, self.uncond = cond, uncond

    def forward(self, x, time, **kwargs):
        return torch.cat([self.cond, self.uncond])


@_checker
def check_guidance_formula(fn):
    """Exercise 6.1. fn(cond, uncond, cond_scale) -> the guided prediction, like cond."""
    g = torch.Generator().manual_seed(6)
    cond = torch.randn(2, 3, 4, 4, generator=g)
    uncond = torch.randn(2, 3, 4, 4, generator=g)
    s = 3.0
    stub = _TwoHalves(cond, uncond)
    expected = Unet.forward_with_cond_scale(stub, cond, torch.ones(2), cond_scale=s, text_embeds=torch.ones(2, 1, 1))
    got = _call(fn, cond.clone(), uncond.clone(), s)
    diff = _compare(got, expected, what="guided prediction", variants=_guidance_variants(cond, uncond, s))
    return _passed(diff)


def _guidance_variants(cond, uncond, s):
    return [
        (cond + s * (uncond - cond), "the formula is reversed: uncond + cond_scale * (cond - uncond) steers AWAY from "
                                     "the unconditional prediction, towards the caption"),
        (cond + s * (cond - uncond), "you wrote cond + s (cond - uncond), the paper's weight w = s - 1; minimagen's "
                                     "cond_scale is uncond + s (cond - uncond), so cond_scale = 1 means no guidance"),
        (cond, "your output is the conditional prediction alone: the unconditional half must drop the text"),
        (uncond, "your output is the unconditional prediction alone"),
        (s * (cond - uncond), "forgot to add uncond: uncond + cond_scale * (cond - uncond)"),
        (uncond + s * cond, "the guidance direction is (cond - uncond)"),
    ]


@_checker
def check_guidance(fn):
    """Exercise 6.2. fn(unet, x, time, text_embeds, text_mask, cond_scale) -> guided prediction from ONE batched pass."""
    unet = _tiny_unet().eval()
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 8, 8, generator=g)
    time = torch.tensor([0.3, 0.8])
    text_embeds, text_mask = _text_inputs(g)
    s = 3.0
    with torch.no_grad():
        expected = unet.forward_with_cond_scale(x, time, cond_scale=s, text_embeds=text_embeds, text_mask=text_mask)
        cond = unet(x, time, text_embeds=text_embeds, text_mask=text_mask)
        uncond = unet(x, time, text_embeds=text_embeds, text_mask=text_mask, text_keep_mask=torch.zeros(2, dtype=torch.bool))

    batches = []
    forward = unet.forward

    def counting_forward(x, *args, **kwargs):
        batches.append(int(x.shape[0]))
        return forward(x, *args, **kwargs)

    def answer_key(*args, **kwargs):
        raise RuntimeError("unet.forward_with_cond_scale is the answer key: write the guided forward pass yourself")

    unet.forward = counting_forward  # nn.Module.__call__ looks up self.forward: every pass is counted
    unet.forward_with_cond_scale = answer_key
    with torch.no_grad():
        got = _call(fn, unet, x.clone(), time.clone(), text_embeds.clone(), text_mask.clone(), s)
    variants = _guidance_variants(cond, uncond, s)
    variants[2] = (cond, "your output is the conditional prediction alone: for the unconditional half drop the text "
                         "with text_keep_mask False (second half of the batch)")
    diff = _compare(got, expected, what="guided prediction", variants=variants)
    if batches != [2 * x.shape[0]]:
        raise _Failed(f"the values are right, but you ran the U-Net {len(batches)} time(s) with batch size(s) "
                      f"{batches}: run cond and uncond together in ONE pass of batch 2b (torch.cat([x, x]), "
                      f"text_keep_mask = [True] * b + [False] * b), then .chunk(2)")
    return _passed(diff, " in one batched U-Net pass")
