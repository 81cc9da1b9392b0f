"""06 · Text conditioning and guidance: exercises 6.1 (guidance towards several captions) and 6.2 (a negative
prompt, in one batched U-Net pass)."""

import torch
import torch.nn.functional as F

from ..Unet import Unet
from .common import _call, _checker, _compare, _earlier, _Failed, _passed, _text_inputs, _tiny_unet


class _TwoHalves:
    """Stands in for a U-Net: returns the given (cond, uncond) halves, so that minimagen's own
    Unet.forward_with_cond_scale combines them and serves as the reference formula."""

    def __init__(self, cond, uncond):
        self.cond, self.uncond = cond, uncond

    def forward(self, x, time, **kwargs):
        return torch.cat([self.cond, self.uncond])


def composed_guidance(uncond, conds, cond_scales):
    """Guidance towards several captions at once (Liu et al. 2022): uncond + sum_i s_i (cond_i - uncond).

    uncond: (b, c, h, w); conds: a list of (b, c, h, w); cond_scales: a list of floats, one per caption.
    """
    return uncond + sum(s * (cond - uncond) for cond, s in zip(conds, cond_scales))


def _minimagen_guidance(cond, uncond, cond_scale):
    """minimagen's one-caption formula, from Unet.forward_with_cond_scale itself."""
    stub = _TwoHalves(cond, uncond)
    return Unet.forward_with_cond_scale(stub, cond, torch.ones(cond.shape[0]), cond_scale=cond_scale,
                                        text_embeds=torch.ones(cond.shape[0], 1, 1))


@_checker
def check_composed_guidance(fn):
    """Exercise 6.1. fn(uncond, conds, cond_scales) -> the guided prediction, like uncond."""
    g = torch.Generator().manual_seed(6)
    uncond, c1, c2 = (torch.randn(2, 3, 4, 4, generator=g) for _ in range(3))
    # One caption: the result must be minimagen's classifier-free guidance.
    one = _call(fn, uncond.clone(), [c1.clone()], [3.0])
    reversed_hint = ("the formula is reversed: each term is s_i (cond_i - uncond), which steers AWAY from the "
                     "unconditional prediction, towards caption i")
    one_variants = [
        (c1 + 3.0 * (uncond - c1), reversed_hint),
        (uncond + 3.0 * (uncond - c1), "wrong sign: " + reversed_hint.split(": ", 1)[1]),
        (c1 + 3.0 * (c1 - uncond), "you started from cond: start from uncond (Imagen's w is cond_scale; "
                                   "cond_scale = 1 means no guidance)"),
        (3.0 * (c1 - uncond), "forgot to start from uncond: uncond + the scaled differences"),
    ]
    diff_one = _compare(one, _minimagen_guidance(c1, uncond, 3.0), what="guided prediction (one caption)",
                        variants=one_variants)
    scales = [2.0, 1.5]
    expected = composed_guidance(uncond, [c1, c2], scales)
    got = _call(fn, uncond.clone(), [c1.clone(), c2.clone()], list(scales))
    variants = [
        (uncond + (scales[0] * (c1 - uncond) + scales[1] * (c2 - uncond)) / 2,
         "you averaged the captions' terms: each caption adds its own s_i (cond_i - uncond), summed"),
        (uncond + sum(scales) / 2 * ((c1 + c2) / 2 - uncond), "guide towards each caption with its own scale: "
                                                             "sum s_i (cond_i - uncond), not one mean direction"),
        (uncond + scales[0] * (c1 - uncond), "only the first caption counts: sum over every caption"),
        (c1 + scales[0] * (uncond - c1) + scales[1] * (uncond - c2), reversed_hint),
        (uncond + scales[0] * (uncond - c1) + scales[1] * (uncond - c2),
         "wrong sign: " + reversed_hint.split(": ", 1)[1]),
        (sum(s * (c - uncond) for c, s in zip((c1, c2), scales)), "forgot to start from uncond"),
    ]
    diff = _compare(got, expected, what="guided prediction (two captions)", variants=variants)
    return _passed(max(diff_one, diff), " with one caption, and the reference sum for two",
                   against="minimagen's guidance")


def _negative_inputs():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 8, 8, generator=g)
    time = torch.tensor([0.3, 0.8])
    text_embeds, text_mask = _text_inputs(g)  # 4 tokens; caption 1 has 2
    negative_embeds = torch.randn(2, 3, 16, generator=g)  # 3 tokens: fewer than the caption's
    negative_mask = torch.tensor([[True, True, False], [True, True, True]])
    negative_embeds[~negative_mask] = 0
    return x, time, text_embeds, text_mask, negative_embeds, negative_mask


@_checker
def check_negative_guidance(fn, my_composed_guidance=None):
    """Exercise 6.2. fn(unet, x, time, text_embeds, text_mask, negative_embeds, negative_mask, cond_scale)
    -> guidance away from the negative prompt, from ONE batched pass.

    my_composed_guidance: the learner's answer to 6.1, which the function calls; a failure it causes names 6.1.
    """
    unet = _tiny_unet().eval()
    x, time, text_embeds, text_mask, negative_embeds, negative_mask = _negative_inputs()
    s = 3.0
    with torch.no_grad():
        expected = unet.forward_with_cond_scale(x, time, cond_scale=s, text_embeds=text_embeds, text_mask=text_mask,
                                                negative_text_embeds=negative_embeds, negative_text_mask=negative_mask)
        cond = unet(x, time, text_embeds=text_embeds, text_mask=text_mask)
        negative = unet(x, time, text_embeds=negative_embeds, text_mask=negative_mask)
        dropped = torch.zeros(2, dtype=torch.bool)
        null = unet(x, time, text_embeds=text_embeds, text_mask=text_mask, text_keep_mask=dropped)
        cond_nomask = unet(x, time, text_embeds=text_embeds)
        extra = text_embeds.shape[1] - negative_embeds.shape[1]  # the negative prompt is the shorter one here
        negative_padded = F.pad(negative_embeds, (0, 0, 0, extra))
        negative_nomask = unet(x, time, text_embeds=negative_padded)
        negative_padded_true = unet(x, time, text_embeds=negative_padded,
                                    text_mask=F.pad(negative_mask, (0, extra), value=True))
        cause = _earlier(my_composed_guidance, "Exercise 6.1", "check_composed_guidance", (negative, [cond], [s]),
                         composed_guidance(negative, [cond], [s]))

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
        got = _call(fn, unet, x.clone(), time.clone(), text_embeds.clone(), text_mask.clone(), negative_embeds.clone(),
                    negative_mask.clone(), s, hints=(
                        ("Sizes of tensors must match", "the caption and the negative prompt have different numbers "
                                                        "of tokens: pad the shorter one (embeddings with zeros, its "
                                                        "mask with False) before stacking them into one batch"),))

    def guided(c, u):
        return u + s * (c - u)

    variants = [
        (guided(cond, null), "your unconditional half dropped the text (the null caption): use the NEGATIVE prompt "
                             "there, kept (text_keep_mask True)"),
        (guided(cond_nomask, negative_nomask), "you forgot the text masks: padded tokens of the caption and of the "
                                               "negative prompt were attended to"),
        (guided(cond_nomask, negative), "you forgot the caption's text mask: its padded tokens were attended to"),
        (guided(cond, negative_nomask), "you forgot the negative prompt's mask: its padded tokens (False, also "
                                        "those you added by padding) were attended to"),
        (guided(cond, negative_padded_true), "the padding you added to the shorter text was read: pad its mask with "
                                             "False, so that the added tokens are hidden"),
        (guided(negative, cond), "the formula is reversed: the negative prompt takes the place of uncond"),
        (cond, "your output is the conditional prediction alone"),
    ]
    diff = _compare(got, expected, what="guided prediction", variants=variants, cause=cause)
    if batches != [2 * x.shape[0]]:
        raise _Failed(f"the values are right, but you ran the U-Net {len(batches)} time(s) with batch size(s) "
                      f"{batches}: run the caption and the negative prompt together in ONE pass of batch 2b")
    return _passed(diff, " in one batched U-Net pass",
                   against="minimagen (forward_with_cond_scale with a negative prompt)")
