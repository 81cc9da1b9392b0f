"""The text-conditioned U-Net that denoises images (notebook 05).

A U-Net maps a noisy image x_t (b, c, h, w) to a prediction of the same shape (the noise, by
default). It goes down through levels of halving resolution, then back up, with skip connections
carrying the fine detail across. Each level holds ResNet blocks (conditioned on the time and the
pooled text by FiLM, and cross-attending to the text tokens where `layer_cross_attns` says), and
optionally a self-attention block. A super-resolution U-Net (`lowres_cond=True`) also receives the
noised low-resolution image, upsampled, stacked on x_t's channels, and that image's noise level.

`Base` and `Super` carry the original MinImagen's defaults (a 1.6B and a 0.7B parameter network);
`BaseTest`/`SuperTest` its tiny test sizes; `SmallBase`/`SmallSuper` train in minutes on a CPU.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .layers import CrossEmbedLayer, Downsample, ResnetBlock, SinusoidalPosEmb, TransformerBlock, Upsample


def _per_level(value, levels: int, name: str) -> tuple:
    """A setting given once or once per level -> a tuple of length `levels`."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * levels
    if len(values) != levels:
        raise ValueError(f"{name} must have one entry per level of dim_mults ({levels}), got {len(values)}")
    return values


class Unet(nn.Module):
    """Imagen's U-Net. All arguments are keyword-only, as in the original MinImagen.

    dim: channels at the first level; level i has dim * dim_mults[i].
    cond_dim: width of the text tokens inside cross-attention (default dim).
    text_embed_dim: width of the text encoder's embeddings (512 for t5_small, 384 for minilm).
    num_resnet_blocks, layer_attns, layer_cross_attns: one value, or one per level.
    lowres_cond: a super-resolution U-Net, conditioned on a low-resolution image.
    memory_efficient: downsample at the start of each level (Imagen's Efficient U-Net), so the
        many blocks of a super-resolution U-Net run at lower resolution.
    attend_at_middle: self-attention in the bottleneck.
    """

    def __init__(self, *, dim: int = 128, dim_mults: tuple = (1, 2, 4), channels: int = 3,
                 channels_out: int | None = None, cond_dim: int | None = None, text_embed_dim: int = 512,
                 num_resnet_blocks=1, layer_attns=True, layer_cross_attns=True, attn_heads: int = 8,
                 attn_dim_head: int = 64, lowres_cond: bool = False, memory_efficient: bool = False,
                 attend_at_middle: bool = False):
        super().__init__()
        levels = len(dim_mults)
        # Everything needed to rebuild this network, for save/load and for Imagen's casting.
        self.config = dict(
            dim=dim, dim_mults=tuple(dim_mults), channels=channels, channels_out=channels_out,
            cond_dim=cond_dim, text_embed_dim=text_embed_dim,
            num_resnet_blocks=_per_level(num_resnet_blocks, levels, "num_resnet_blocks"),
            layer_attns=_per_level(layer_attns, levels, "layer_attns"),
            layer_cross_attns=_per_level(layer_cross_attns, levels, "layer_cross_attns"),
            attn_heads=attn_heads, attn_dim_head=attn_dim_head, lowres_cond=lowres_cond,
            memory_efficient=memory_efficient, attend_at_middle=attend_at_middle,
        )
        c = self.config
        cond_dim = cond_dim or dim
        time_cond_dim = dim * 4
        attn = dict(attn_heads=attn_heads, attn_dim_head=attn_dim_head)

        # Conditioning: time (and the low-res image's noise level) plus pooled text -> one vector.
        def time_mlp():
            return nn.Sequential(SinusoidalPosEmb(dim), nn.Linear(dim, time_cond_dim), nn.SiLU(),
                                 nn.Linear(time_cond_dim, time_cond_dim))

        self.to_time_cond = time_mlp()
        self.to_lowres_time_cond = time_mlp() if lowres_cond else None
        self.text_to_cond = nn.Linear(text_embed_dim, cond_dim)
        self.text_to_pooled = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, time_cond_dim), nn.SiLU(),
                                            nn.Linear(time_cond_dim, time_cond_dim))
        # Stands in for the pooled text of captions dropped for classifier-free guidance.
        self.null_text_pooled = nn.Parameter(torch.zeros(1, time_cond_dim))

        self.init_conv = CrossEmbedLayer(channels * (2 if lowres_cond else 1), dim, (3, 7, 15))

        dims = [dim, *(dim * m for m in dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))
        self.downs, self.ups = nn.ModuleList(), nn.ModuleList()
        for i, (dim_in, dim_out) in enumerate(in_out):
            last = i == levels - 1
            cur = dim_out if memory_efficient else dim_in
            cross = cond_dim if c["layer_cross_attns"][i] else None
            if memory_efficient:
                post = nn.Identity()
            elif last:
                post = nn.Conv2d(cur, dim_out, 3, padding=1)
            else:
                post = Downsample(cur, dim_out)
            self.downs.append(nn.ModuleDict(dict(
                pre=Downsample(dim_in, dim_out) if memory_efficient else nn.Identity(),
                init_block=ResnetBlock(cur, cur, time_cond_dim=time_cond_dim, cond_dim=cross, **attn),
                resnets=nn.ModuleList(ResnetBlock(cur, cur, time_cond_dim=time_cond_dim)
                                      for _ in range(c["num_resnet_blocks"][i])),
                attn=TransformerBlock(cur, heads=attn_heads, dim_head=attn_dim_head) if c["layer_attns"][i] else nn.Identity(),
                post=post,
            )))

        mid = dims[-1]
        self.mid_block1 = ResnetBlock(mid, mid, time_cond_dim=time_cond_dim, cond_dim=cond_dim, **attn)
        self.mid_attn = TransformerBlock(mid, heads=attn_heads, dim_head=attn_dim_head) if attend_at_middle else nn.Identity()
        self.mid_block2 = ResnetBlock(mid, mid, time_cond_dim=time_cond_dim, cond_dim=cond_dim, **attn)

        for i, (dim_in, dim_out) in reversed(list(enumerate(in_out))):
            skip = dim_out if memory_efficient else dim_in
            cross = cond_dim if c["layer_cross_attns"][i] else None
            self.ups.append(nn.ModuleDict(dict(
                init_block=ResnetBlock(dim_out + skip, dim_out, time_cond_dim=time_cond_dim, cond_dim=cross, **attn),
                resnets=nn.ModuleList(ResnetBlock(dim_out + skip, dim_out, time_cond_dim=time_cond_dim)
                                      for _ in range(c["num_resnet_blocks"][i])),
                attn=TransformerBlock(dim_out, heads=attn_heads, dim_head=attn_dim_head) if c["layer_attns"][i] else nn.Identity(),
                post=Upsample(dim_out, dim_in) if (memory_efficient or i > 0) else nn.Identity(),
            )))

        self.final_block = ResnetBlock(dim * 2, dim, time_cond_dim=time_cond_dim)
        self.final_conv = nn.Conv2d(dim, channels_out or channels, 3, padding=1)
        # Start as the zero function: early training is not thrown about by a random output.
        nn.init.zeros_(self.final_conv.weight)
        nn.init.zeros_(self.final_conv.bias)

    # Read from the one config (a U-Net's design is fixed once built; `cast` makes another).
    channels = property(lambda self: self.config["channels"])
    lowres_cond = property(lambda self: self.config["lowres_cond"])
    memory_efficient = property(lambda self: self.config["memory_efficient"])
    text_embed_dim = property(lambda self: self.config["text_embed_dim"])

    @property
    def downsample_factor(self) -> int:
        """How much the U-Net shrinks an image at its deepest level: its input side must divide by this."""
        levels = len(self.config["dim_mults"])
        return 2 ** (levels if self.memory_efficient else levels - 1)

    def cast(self, *, lowres_cond: bool, text_embed_dim: int) -> "Unet":
        """This U-Net if it already has these settings, else a fresh one of the same design that does."""
        if self.lowres_cond == lowres_cond and self.text_embed_dim == text_embed_dim:
            return self
        return Unet(**{**self.config, "lowres_cond": lowres_cond, "text_embed_dim": text_embed_dim})

    def _text_condition(self, text_embeds, text_mask, keep):
        """Text tokens for cross-attention, their mask, and the pooled text vector for FiLM.

        text_embeds (b, m, text_embed_dim), text_mask (b, m) bool, keep (b,) bool: rows with
        keep False are treated as having no caption.
        """
        tokens = self.text_to_cond(text_embeds)
        mask = text_mask.bool() & keep[:, None]
        weights = mask.to(tokens.dtype)[..., None]
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)  # mean over real tokens only
        pooled = torch.where(keep[:, None], self.text_to_pooled(pooled), self.null_text_pooled.to(tokens.dtype))
        return tokens, mask, pooled

    def forward(self, x, time, *, lowres_cond_img=None, lowres_noise_times=None, text_embeds=None,
                text_mask=None, cond_drop_prob: float = 0.0, text_keep_mask=None):
        """Predict from a noisy image.

        x: (b, channels, h, w); time: (b,) float in (0, 1].
        lowres_cond_img: (b, channels, h, w) in [-1, 1], noised, for a super-resolution U-Net;
        lowres_noise_times: (b,) float in [0, 1], its noise level.
        text_embeds: (b, m, text_embed_dim); text_mask: (b, m) bool, True = real token.
        cond_drop_prob: chance of dropping each row's text (classifier-free guidance training).
        text_keep_mask: (b,) bool, explicit choice of rows whose text is used (overrides the above).
        Returns (b, channels_out, h, w).
        """
        b = x.shape[0]
        if x.shape[-1] % self.downsample_factor or x.shape[-2] % self.downsample_factor:
            raise ValueError(f"x height and width must be divisible by {self.downsample_factor}, got {tuple(x.shape[-2:])}")
        if self.lowres_cond:
            if lowres_cond_img is None or lowres_noise_times is None:
                raise ValueError("a super-resolution U-Net needs lowres_cond_img and lowres_noise_times")
            x = torch.cat([x, lowres_cond_img], dim=1)

        cond = self.to_time_cond(time)
        if self.lowres_cond:
            cond = cond + self.to_lowres_time_cond(lowres_noise_times)

        if text_embeds is None:  # no caption at all: the same as every row dropped
            text_embeds = x.new_zeros(b, 1, self.text_embed_dim)
            text_keep_mask = torch.zeros(b, dtype=torch.bool, device=x.device)
        if text_mask is None:
            text_mask = text_embeds.new_ones(text_embeds.shape[:2], dtype=torch.bool)
        if text_keep_mask is None:
            text_keep_mask = torch.rand(b, device=x.device) >= cond_drop_prob if cond_drop_prob > 0 \
                else torch.ones(b, dtype=torch.bool, device=x.device)
        tokens, mask, pooled = self._text_condition(text_embeds, text_mask, text_keep_mask)
        cond = cond + pooled

        x = self.init_conv(x)
        init = x
        skips = []
        for level in self.downs:
            x = level["pre"](x)
            x = level["init_block"](x, cond, tokens, mask)
            skips.append(x)
            for block in level["resnets"]:
                x = block(x, cond)
                skips.append(x)
            x = level["attn"](x)
            x = level["post"](x)

        x = self.mid_block1(x, cond, tokens, mask)
        x = self.mid_attn(x)
        x = self.mid_block2(x, cond, tokens, mask)

        for level in self.ups:
            x = level["init_block"](torch.cat([x, skips.pop()], dim=1), cond, tokens, mask)
            for block in level["resnets"]:
                x = block(torch.cat([x, skips.pop()], dim=1), cond)
            x = level["attn"](x)
            x = level["post"](x)

        x = self.final_block(torch.cat([x, init], dim=1), cond)
        return self.final_conv(x)

    def forward_with_cond_scale(self, x, time, *, cond_scale: float = 1.0, text_embeds=None, text_mask=None,
                                negative_text_embeds=None, negative_text_mask=None, **kwargs):
        """Classifier-free guidance: uncond + cond_scale * (cond - uncond), in ONE batched forward pass.

        The unconditional half uses the learned null text, or the negative prompt's embeddings when
        given (negative_text_embeds (b, m', d), negative_text_mask (b, m')).
        """
        if cond_scale == 1 and negative_text_embeds is None:
            return self.forward(x, time, text_embeds=text_embeds, text_mask=text_mask, **kwargs)
        b = x.shape[0]
        if text_embeds is None:
            raise ValueError("guidance with cond_scale != 1 needs text_embeds")
        if text_mask is None:
            text_mask = text_embeds.new_ones(text_embeds.shape[:2], dtype=torch.bool)
        uncond_embeds, uncond_mask = negative_text_embeds, negative_text_mask
        keep_uncond = uncond_embeds is not None
        if uncond_embeds is None:
            uncond_embeds, uncond_mask = text_embeds, text_mask
        elif uncond_mask is None:
            uncond_mask = uncond_embeds.new_ones(uncond_embeds.shape[:2], dtype=torch.bool)
        # Pad both to the same number of tokens so they stack into one batch.
        n = max(text_embeds.shape[1], uncond_embeds.shape[1])
        pad = lambda t, m: (F.pad(t, (0, 0, 0, n - t.shape[1])), F.pad(m, (0, n - m.shape[1]), value=False))
        (text_embeds, text_mask), (uncond_embeds, uncond_mask) = pad(text_embeds, text_mask), pad(uncond_embeds, uncond_mask)

        doubled = {k: torch.cat([v, v]) if torch.is_tensor(v) else v for k, v in kwargs.items()}
        keep = torch.cat([torch.ones(b, dtype=torch.bool, device=x.device),
                          torch.full((b,), keep_uncond, dtype=torch.bool, device=x.device)])
        out = self.forward(torch.cat([x, x]), torch.cat([time, time]), text_embeds=torch.cat([text_embeds, uncond_embeds]),
                           text_mask=torch.cat([text_mask, uncond_mask]), text_keep_mask=keep, **doubled)
        cond, uncond = out.chunk(2)
        return uncond + (cond - uncond) * cond_scale


class _Preset(Unet):
    """A Unet whose defaults come from the class attribute `defaults`; keyword arguments override."""

    defaults: dict = {}

    def __init__(self, **kwargs):
        super().__init__(**{**self.defaults, **kwargs})


class Base(_Preset):
    """The original MinImagen's base U-Net (about 1.6B parameters at these defaults)."""

    defaults = dict(dim=512, dim_mults=(1, 2, 3, 4), num_resnet_blocks=3, layer_attns=(False, True, True, True),
                    layer_cross_attns=(False, True, True, True), memory_efficient=False)


class Super(_Preset):
    """The original MinImagen's super-resolution U-Net (about 0.7B parameters at these defaults)."""

    defaults = dict(dim=128, dim_mults=(1, 2, 4, 8), num_resnet_blocks=(2, 4, 8, 8),
                    layer_attns=(False, False, False, True), layer_cross_attns=(False, False, False, True),
                    memory_efficient=True)


class BaseTest(_Preset):
    """The original's tiny test base U-Net (its BaseTest merged Base's defaults by mistake; not here)."""

    defaults = dict(dim=8, dim_mults=(1, 2), num_resnet_blocks=1, layer_attns=False, layer_cross_attns=False,
                    memory_efficient=False)


class SuperTest(_Preset):
    """The original's tiny test super-resolution U-Net."""

    defaults = dict(dim=8, dim_mults=(1, 2), num_resnet_blocks=(1, 2), layer_attns=False, layer_cross_attns=False,
                    memory_efficient=True)


class SmallBase(_Preset):
    """A base U-Net for 32 px that learns the shapes data set in minutes on a 2-core CPU."""

    defaults = dict(dim=32, dim_mults=(1, 2, 4), num_resnet_blocks=1, layer_attns=(False, False, True),
                    layer_cross_attns=(False, True, True), attn_heads=4, attn_dim_head=32, memory_efficient=False)


class SmallSuper(_Preset):
    """A super-resolution U-Net (32 -> 64 px) that trains in minutes on a 2-core CPU.

    Not memory-efficient: its first level works at full resolution. With every level downsampling
    first, only two layers of 16 channels saw 64 px, and its output stayed grainy.
    """

    defaults = dict(dim=16, dim_mults=(1, 2, 4), num_resnet_blocks=1, layer_attns=False,
                    layer_cross_attns=(False, False, True), attn_heads=4, attn_dim_head=32, memory_efficient=False)


PRESETS = {cls.__name__: cls for cls in (Base, Super, BaseTest, SuperTest, SmallBase, SmallSuper)}
