"""The U-Net's building blocks (notebook 04).

- SinusoidalPosEmb: a time t in (0, 1] -> a vector, so one network can denoise at every noise level.
- ResnetBlock: two 3x3 convolutions with a residual connection. Time and pooled text condition it
  by FiLM (feature-wise scale and shift after normalisation); optionally it cross-attends to the
  text tokens.
- Attention: multi-head attention with torch's scaled_dot_product_attention. As self-attention it
  lets every pixel look at every other; as cross-attention the pixels (queries) look at the text
  tokens (keys and values), and the text mask keeps padded tokens out. A learned "null" key/value
  is always present, so a row whose text is entirely masked (dropped for classifier-free guidance)
  still has something to attend to instead of producing NaN.
- TransformerBlock: self-attention then a feed-forward layer, on a feature map.
- Downsample / Upsample / CrossEmbedLayer: changing resolution and the multi-scale first layer.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class SinusoidalPosEmb(nn.Module):
    """time (b,) float in (0, 1] -> (b, dim) sinusoidal features (Transformer position encoding).

    Times are scaled by 1000 so the frequencies cover the range DDPM's integer steps used.
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        self.dim = dim

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=time.device) / (half - 1 or 1))
        args = time.float()[:, None] * 1000 * freqs[None, :]
        return torch.cat([args.sin(), args.cos()], dim=-1)


class Attention(nn.Module):
    """Multi-head attention over tokens, with a learned null key/value.

    x: (b, n, dim) queries. context: (b, m, context_dim) or None for self-attention.
    context_mask: (b, m) bool, True = real token; masked tokens get no attention weight.
    Returns (b, n, dim).
    """

    def __init__(self, dim: int, *, heads: int = 8, dim_head: int = 64, context_dim: int | None = None):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim is not None else nn.Identity()
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim if context_dim is not None else dim, 2 * inner, bias=False)
        self.null_kv = nn.Parameter(torch.randn(2, heads, 1, dim_head) * 0.02)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x, context=None, context_mask=None):
        b, n, _ = x.shape
        h, d = self.heads, self.dim_head
        x = self.norm(x)
        source = x if context is None else self.norm_context(context)
        q = self.to_q(x).view(b, n, h, d).transpose(1, 2)  # (b, h, n, d)
        k, v = self.to_kv(source).chunk(2, dim=-1)
        k = k.view(b, -1, h, d).transpose(1, 2)  # (b, h, m, d)
        v = v.view(b, -1, h, d).transpose(1, 2)
        null_k, null_v = (t.expand(b, h, 1, d).to(q.dtype) for t in self.null_kv)
        k, v = torch.cat([null_k, k], dim=2), torch.cat([null_v, v], dim=2)

        attn_mask = None
        if context_mask is not None:
            keep = torch.cat([context_mask.new_ones(b, 1), context_mask.bool()], dim=1)  # null always kept
            attn_mask = keep[:, None, None, :]  # (b, 1, 1, m + 1), broadcast over heads and queries
        if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # torch's CPU attention kernel runs its backward ~9x slower in bf16 than in fp32, which
            # would cost more than bf16 autocast saves on the convolutions.
            with torch.autocast("cpu", enabled=False):
                out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=attn_mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.to_out(out.transpose(1, 2).reshape(b, n, h * d))


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(b, c, h, w) -> (b, h*w, c)."""
    return x.flatten(2).transpose(1, 2)


def _from_tokens(tokens: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(b, h*w, c) -> (b, c, h, w) shaped like `like`."""
    return tokens.transpose(1, 2).reshape(like.shape[0], -1, *like.shape[2:])


class ResnetBlock(nn.Module):
    """Conv block with FiLM conditioning and optional cross-attention to text tokens.

    x: (b, dim, h, w); time_cond: (b, time_cond_dim) (time + pooled text);
    text_tokens: (b, m, cond_dim) and text_mask: (b, m) when the block cross-attends.
    Returns (b, dim_out, h, w).
    """

    def __init__(self, dim: int, dim_out: int, *, time_cond_dim: int | None = None,
                 cond_dim: int | None = None, groups: int = 8, attn_heads: int = 8, attn_dim_head: int = 64):
        super().__init__()
        self.norm1 = nn.GroupNorm(math.gcd(groups, dim), dim)
        self.conv1 = nn.Conv2d(dim, dim_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(math.gcd(groups, dim_out), dim_out)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, padding=1)
        # FiLM: the condition predicts a per-channel scale and shift for the second normalisation.
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(time_cond_dim, 2 * dim_out)) if time_cond_dim else None
        self.cross_attn = (
            Attention(dim_out, heads=attn_heads, dim_head=attn_dim_head, context_dim=cond_dim)
            if cond_dim is not None else None
        )
        self.skip = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x, time_cond=None, text_tokens=None, text_mask=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.cross_attn is not None and text_tokens is not None:
            h = h + _from_tokens(self.cross_attn(_to_tokens(h), text_tokens, text_mask), h)
        h = self.norm2(h)
        if self.film is not None and time_cond is not None:
            scale, shift = self.film(time_cond)[:, :, None, None].chunk(2, dim=1)
            h = h * (scale + 1) + shift
        h = self.conv2(F.silu(h))
        return h + self.skip(x)


class TransformerBlock(nn.Module):
    """Self-attention and a feed-forward layer over the pixels of a feature map.

    x: (b, dim, h, w) -> (b, dim, h, w).
    """

    def __init__(self, dim: int, *, heads: int = 8, dim_head: int = 32, ff_mult: int = 2):
        super().__init__()
        self.attn = Attention(dim, heads=heads, dim_head=dim_head)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * ff_mult), nn.GELU(),
                                nn.Linear(dim * ff_mult, dim))

    def forward(self, x):
        tokens = _to_tokens(x)
        tokens = tokens + self.attn(tokens)
        tokens = tokens + self.ff(tokens)
        return _from_tokens(tokens, x)


class Downsample(nn.Sequential):
    """Halve the resolution: (b, dim, h, w) -> (b, dim_out, h/2, w/2), a 4x4 stride-2 convolution."""

    def __init__(self, dim: int, dim_out: int | None = None):
        super().__init__(nn.Conv2d(dim, dim_out or dim, 4, stride=2, padding=1))


class Upsample(nn.Sequential):
    """Double the resolution: nearest-neighbour x2 then a 3x3 convolution (no checkerboard artefacts)."""

    def __init__(self, dim: int, dim_out: int | None = None):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim, dim_out or dim, 3, padding=1))


class CrossEmbedLayer(nn.Module):
    """Convolutions of several kernel sizes side by side, channels concatenated.

    The first layer of the U-Net sees the image at several scales at once.
    x: (b, dim_in, h, w) -> (b, dim_out, h / stride, w / stride).
    """

    def __init__(self, dim_in: int, dim_out: int, kernel_sizes=(3, 7, 15), stride: int = 1):
        super().__init__()
        kernel_sizes = sorted(kernel_sizes)
        # Larger kernels get fewer channels: dim_out/2, dim_out/4, ..., the rest to the last.
        dims = [dim_out // 2 ** (i + 1) for i in range(len(kernel_sizes) - 1)]
        dims.append(dim_out - sum(dims))
        self.convs = nn.ModuleList(
            nn.Conv2d(dim_in, d, k, stride=stride, padding=(k - stride) // 2) for k, d in zip(kernel_sizes, dims)
        )

    def forward(self, x):
        return torch.cat([conv(x) for conv in self.convs], dim=1)
