"""04 · ResNet and attention blocks: exercises 4.1 (the text's keys and values, computed once) and 4.2
(cross-attention from those cached keys and values)."""

import math

import torch

from ..layers import Attention
from .common import _call, _checker, _compare, _Failed, _passed


def text_keys_values(context, context_mask, attn: Attention, *, split="heads_first", null="first", extend=True,
                     use_mask=True, use_norm=True):
    """What minimagen.layers.Attention computes from the text alone, or that with one known mistake.

    context: (b, m, context_dim); context_mask: (b, m) bool, True = real token.
    Returns k, v: (b, heads, 1 + m, dim_head), the learned null key/value first; keep: (b, 1 + m) bool.
    """
    b, m, _ = context.shape
    h, d = attn.heads, attn.dim_head
    if use_norm:
        context = attn.norm_context(context)
    k, v = attn.to_kv(context).chunk(2, dim=-1)
    if split == "heads_first":  # (b, m, h * d): head-major columns, as to_q / to_out use them
        k, v = (t.view(b, m, h, d).transpose(1, 2) for t in (k, v))
    elif split == "dims_first":  # the wrong way: d-major columns
        k, v = (t.view(b, m, d, h).permute(0, 3, 1, 2) for t in (k, v))
    else:  # "tokens": rows of the (b, m, h * d) tensor reinterpreted, tokens mixed into heads
        k, v = (t.reshape(b, h, m, d) for t in (k, v))
    null_k, null_v = (t.expand(b, h, 1, d) for t in attn.null_kv)
    keep = context_mask.bool() if use_mask else torch.ones_like(context_mask, dtype=torch.bool)
    if null == "first":
        k, v = torch.cat([null_k, k], dim=2), torch.cat([null_v, v], dim=2)
    else:
        k, v = torch.cat([k, null_k], dim=2), torch.cat([v, null_v], dim=2)
    if extend == "end":
        keep = torch.cat([keep, keep.new_ones(b, 1)], dim=1)
    elif extend:
        keep = torch.cat([keep.new_ones(b, 1), keep], dim=1)
    return k, v, keep


def cached_cross_attention(x, k, v, keep, attn: Attention, *, use_mask=True, use_scale=True, use_norm=True,
                           merge="heads_first"):
    """Pixels (queries) attend to text keys/values computed beforehand, or that with one known mistake.

    x: (b, n, dim); k, v: (b, heads, 1 + m, dim_head); keep: (b, 1 + m) bool. Returns (b, n, dim).
    """
    b, n, _ = x.shape
    h, d = attn.heads, attn.dim_head
    if use_norm:
        x = attn.norm(x)
    q = attn.to_q(x).view(b, n, h, d).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / (math.sqrt(d) if use_scale else 1.0)
    if use_mask:
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    out = scores.softmax(dim=-1) @ v  # (b, h, n, d)
    out = out.transpose(1, 2).reshape(b, n, h * d) if merge == "heads_first" else out.reshape(b, n, h * d)
    return attn.to_out(out)


def _attention_inputs():
    """An Attention with visible null key/value and norms, pixels, and 3 captions: full, padded, dropped."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
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
    return attn, x, context, mask


@_checker
def check_text_keys_values(fn):
    """Exercise 4.1. fn(context, context_mask, attn) -> (k, v, keep): the text's side of cross-attention."""
    attn, _, context, mask = _attention_inputs()
    b, m = mask.shape
    with torch.no_grad():
        k_ref, v_ref, keep_ref = text_keys_values(context, mask, attn)
        got = _call(fn, context.clone(), mask.clone(), attn)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise _Failed("return three things: (k, v, keep)")
        k, v, keep = got

        def shape_hint(got):
            if tuple(got.shape[-2:]) == (m, attn.dim_head):
                return "the null key/value is missing: prepend attn.null_kv, one extra key per head (1 + m keys)"
            if got.ndim == 3:
                return "split the heads: (b, m, heads * dim_head) -> (b, heads, m, dim_head)"
            return None

        def variants(which):
            index = {"k": 0, "v": 1}[which]

            def wrong(**kwargs):
                return lambda: text_keys_values(context, mask, attn, **kwargs)[index]

            return [
                (wrong(split="dims_first"), "heads split the wrong way: the last dim of to_kv's output holds "
                                            "heads blocks of dim_head columns each (head-major)"),
                (wrong(split="tokens"), "heads split the wrong way: you mixed tokens into heads; split the LAST dim "
                                        "into (heads, dim_head), then move heads in front of the tokens"),
                (wrong(null="last"), "the null key/value goes FIRST (position 0), in front of the text tokens"),
                (wrong(use_norm=False), "normalise the text first with attn.norm_context"),
            ]

        diff_k = _compare(k, k_ref, what="k", variants=variants("k"), shape_hint=shape_hint)
        diff_v = _compare(v, v_ref, what="v", variants=variants("v"), shape_hint=shape_hint)
        if not torch.is_tensor(keep) or keep.dtype != torch.bool:
            raise _Failed("keep should be a bool tensor, True = may be attended to")
        if tuple(keep.shape) == (b, m):
            raise _Failed(f"keep is {tuple(keep.shape)}: the mask was not extended for the null token; it needs one "
                          f"more column, (b, 1 + m), and the null key is always kept")
        keep_variants = [
            (text_keys_values(context, mask, attn, use_mask=False)[2],
             "you forgot the text mask: padded tokens (mask False) must not be attended to"),
            (text_keys_values(context, mask, attn, extend="end")[2],
             "the mask's extra True belongs to the null key, which is FIRST: put it in front, not at the end"),
            (~keep_ref, "your mask is inverted: True marks a real token (and the null key)"),
            (torch.cat([torch.zeros(b, 1, dtype=torch.bool), mask], dim=1),
             "the null key must always be kept (True): a dropped caption attends to it alone"),
        ]
        _compare(keep.double(), keep_ref.double(), what="keep", variants=[(w.double(), h) for w, h in keep_variants])
    return _passed(max(diff_k, diff_v), ": k, v and keep", against="the keys and values inside minimagen's Attention")


@_checker
def check_cached_cross_attention(fn):
    """Exercise 4.2. fn(x, k, v, keep, attn) -> (b, n, dim), equal to attn(x, context, context_mask)."""
    attn, x, context, mask = _attention_inputs()
    with torch.no_grad():
        expected = attn(x, context, mask)
        k, v, keep = text_keys_values(context, mask, attn)
        got = _call(fn, x.clone(), k.clone(), v.clone(), keep.clone(), attn)

        def variant(**kwargs):
            return lambda: cached_cross_attention(x, k, v, keep, attn, **kwargs)

        variants = [
            (variant(use_mask=False), "you forgot the text mask: padded tokens (keep False) changed your output; "
                                      "give masked keys a score of -inf before the softmax"),
            (variant(merge="dims_first"), "heads merged the wrong way: bring the heads next to dim_head again "
                                          "(b, n, heads, dim_head) before flattening to heads * dim_head"),
            (variant(use_scale=False), "scale the scores q·k by 1 / sqrt(dim_head) before the softmax"),
            (variant(use_norm=False), "normalise the pixels first with attn.norm"),
            (lambda: cached_cross_attention(x, k, v, ~keep, attn), "your mask is inverted: True means the key may be "
                                                                   "attended to"),
        ]
        shape_hint = (lambda got: "project back with attn.to_out: (b, n, heads * dim_head) -> (b, n, dim)"
                      if got.shape[-1] == attn.heads * attn.dim_head else None)
        diff = _compare(got, expected, what="attention output", variants=variants, shape_hint=shape_hint)
    return _passed(diff, against="minimagen.layers.Attention")
