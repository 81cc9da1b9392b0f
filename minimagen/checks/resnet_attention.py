"""04 · ResNet and attention blocks: exercises 4.1 (FiLM) and 4.2 (masked cross-attention)."""

import torch
import torch.nn.functional as F

from ..layers import Attention, ResnetBlock
from .common import _call, _checker, _compare, _passed


def film_reference(h: torch.Tensor, time_cond: torch.Tensor, film) -> torch.Tensor:
    """FiLM exactly as minimagen.layers.ResnetBlock.forward applies it (tests check it equals the block)."""
    scale, shift = film(time_cond)[:, :, None, None].chunk(2, dim=1)
    return h * (scale + 1) + shift


@_checker
def check_film(fn):
    """Exercise 4.1. fn(h, time_cond, film) -> h scaled and shifted per channel, (b, c, H, W)."""
    block = ResnetBlock(8, 8, time_cond_dim=16)
    film = block.film
    g = torch.Generator().manual_seed(4)
    h = torch.randn(2, 8, 4, 4, generator=g)
    cond = torch.randn(2, 16, generator=g)
    with torch.no_grad():
        expected = film_reference(h, cond, film)
        scale, shift = film(cond)[:, :, None, None].chunk(2, dim=1)
        got = _call(fn, h.clone(), cond.clone(), film)
        variants = [
            (h * scale + shift, "forgot the + 1: h * (scale + 1) + shift, so that a zero scale leaves h unchanged"),
            (h * (shift + 1) + scale, "scale and shift are swapped: film(cond).chunk(2, dim=1) gives (scale, shift)"),
            ((h + shift) * (scale + 1), "shift after scaling: h * (scale + 1) + shift"),
            (lambda: film_reference(h, F.silu(cond), film), "film already starts with SiLU: don't apply it again"),
            (h * (scale + 1), "forgot to add the shift"),
            (h + shift, "forgot to multiply by (scale + 1)"),
        ]
        diff = _compare(got, expected, what="FiLM output", variants=variants)
    return _passed(diff)


def attention_variant(attn: Attention, x, context, mask, *, use_mask=True, use_null=True, use_scale=True,
                      use_norm=True, invert_mask=False, empty_rows_zero=False):
    """Cross-attention written out with softmax, optionally with a known mistake (for the hints)."""
    b, n, _ = x.shape
    h, d = attn.heads, attn.dim_head
    if use_norm:
        x, context = attn.norm(x), attn.norm_context(context)
    q = attn.to_q(x).view(b, n, h, d).transpose(1, 2)
    k, v = attn.to_kv(context).chunk(2, dim=-1)
    k, v = (t.view(b, -1, h, d).transpose(1, 2) for t in (k, v))
    keep = mask.bool()
    if invert_mask:
        keep = ~keep
    if use_null:
        null_k, null_v = (t.expand(b, h, 1, d) for t in attn.null_kv)
        k, v = torch.cat([null_k, k], dim=2), torch.cat([null_v, v], dim=2)
        keep = torch.cat([keep.new_ones(b, 1), keep], dim=1)
    scores = q @ k.transpose(-1, -2) * (d**-0.5 if use_scale else 1.0)
    if use_mask:
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    out = scores.softmax(dim=-1) @ v
    if empty_rows_zero:  # what SDPA returns for a row whose keys are all masked (recent PyTorch)
        out = torch.where(keep.any(dim=1)[:, None, None, None], out, torch.zeros_like(out))
    return attn.to_out(out.transpose(1, 2).reshape(b, n, h * d))


@_checker
def check_cross_attention(fn):
    """Exercise 4.2. fn(x, context, context_mask, attn) -> (b, n, dim), masked cross-attention with attn's weights."""
    attn = Attention(12, heads=2, dim_head=8, context_dim=10)
    with torch.no_grad():
        attn.null_kv.normal_(0, 1)  # big enough to matter
        for norm in (attn.norm, attn.norm_context):
            norm.weight.add_(0.2 * torch.randn_like(norm.weight))
            norm.bias.add_(0.2 * torch.randn_like(norm.bias))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 5, 12, generator=g)
    context = torch.randn(3, 4, 10, generator=g)  # padded tokens are NOT zero here: the mask alone must hide them
    mask = torch.tensor([[True, True, True, True], [True, True, False, False], [False, False, False, False]])
    with torch.no_grad():
        expected = attn(x, context, mask)
        got = _call(fn, x.clone(), context.clone(), mask.clone(), attn)

        def nan_hint(got):
            rows = sorted({int(i) for i in torch.nonzero(~torch.isfinite(got.detach()))[:, 0]})
            if rows == [2]:
                return ("row 2 has no real tokens (a dropped caption): prepend the learned null key/value "
                        "attn.null_kv, which is never masked, so every row has something to attend to")
            return None

        def variant(**kwargs):
            return lambda: attention_variant(attn, x, context, mask, **kwargs)

        variants = [
            (variant(use_mask=False), "padded tokens (mask False) changed your output: mask them out — scores of "
                                      "masked keys to -inf before the softmax, or attn_mask= in "
                                      "F.scaled_dot_product_attention (keep the null key)"),
            (variant(use_mask=False, use_null=False), "padded tokens (mask False) changed your output, and the null "
                                                      "key/value attn.null_kv is missing"),
            (variant(use_null=False, empty_rows_zero=True),
             "row 2 has no real tokens (a dropped caption) and came out as zeros: prepend the learned null key/value "
             "attn.null_kv, which is never masked, so every row has something to attend to"),
            (variant(invert_mask=True), "your mask is inverted: True marks a REAL token, keep those"),
            (variant(use_scale=False), "scale the scores q·k by 1 / sqrt(dim_head) before the softmax"),
            (variant(use_norm=False), "normalise first: x = attn.norm(x), context = attn.norm_context(context)"),
        ]
        diff = _compare(got, expected, what="attention output", variants=variants, nan_hint=nan_hint,
                        shape_hint=lambda got: ("project back with attn.to_out: (b, n, heads * dim_head) -> (b, n, dim)"
                                                if got.shape[-1] == attn.heads * attn.dim_head else None))
    return _passed(diff)
