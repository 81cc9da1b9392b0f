"""Specification of minimagen.Unet: shapes, text conditioning and masking, classifier-free guidance,
input validation, the presets and casting.

A fresh U-Net is the zero function (its final convolution starts at zero), so every test that
compares outputs first gives the final convolution random weights (`live`); otherwise all outputs
would be zero and the comparisons could not fail.
"""
import pytest
import torch
from torch import nn

from minimagen.Unet import PRESETS, Base, BaseTest, SmallBase, SmallSuper, Super, SuperTest, Unet

D = 8  # text_embed_dim of the random embeddings




def live(unet: Unet, seed: int = 0) -> Unet:
    """Random final convolution (so the output is not identically zero), eval mode."""
    torch.manual_seed(seed)
    nn.init.normal_(unet.final_conv.weight, std=0.2)
    nn.init.normal_(unet.final_conv.bias, std=0.2)
    return unet.eval()


def cross_attending_unet(**kwargs) -> Unet:
    """A tiny U-Net that cross-attends to the text at every level."""
    torch.manual_seed(0)
    config = dict(dim=16, dim_mults=(1, 2), num_resnet_blocks=1, layer_attns=(False, True),
                  layer_cross_attns=True, attn_heads=2, attn_dim_head=8, text_embed_dim=D)
    return live(Unet(**{**config, **kwargs}))


def inputs(b=2, size=16, tokens=5, seed=1, lowres=False):
    g = torch.Generator().manual_seed(seed)
    kwargs = dict(text_embeds=torch.randn(b, tokens, D, generator=g),
                  text_mask=torch.ones(b, tokens, dtype=torch.bool))
    if lowres:
        kwargs.update(lowres_cond_img=torch.randn(b, 3, size, size, generator=g),
                      lowres_noise_times=torch.rand(b, generator=g))
    return torch.randn(b, 3, size, size, generator=g), torch.rand(b, generator=g), kwargs


# Shapes --------------------------------------------------------------------------------------

ARCHITECTURES = {
    "BaseTest": lambda **kw: BaseTest(**kw),
    "SuperTest": lambda **kw: SuperTest(**kw),
    "SmallBase": lambda **kw: SmallBase(**kw),
    "SmallSuper": lambda **kw: SmallSuper(**kw),
    "custom_tuple_blocks": lambda **kw: Unet(dim=8, dim_mults=(1, 2, 2), num_resnet_blocks=(0, 2, 1),
                                              layer_attns=(False, True, False), layer_cross_attns=(True, False, True),
                                              attn_heads=2, attn_dim_head=8, memory_efficient=False, **kw),
    "custom_memory_efficient_middle_attn": lambda **kw: Unet(dim=8, dim_mults=(1, 2), num_resnet_blocks=(2, 1),
                                                              layer_attns=(False, True), attn_heads=2,
                                                              attn_dim_head=8, memory_efficient=True,
                                                              attend_at_middle=True, **kw),
}


@pytest.mark.parametrize("lowres", [False, True], ids=["plain", "lowres_cond"])
@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_output_shape_equals_input_shape(arch, size, lowres):
    torch.manual_seed(0)
    unet = live(ARCHITECTURES[arch](text_embed_dim=D, lowres_cond=lowres))
    x, t, kwargs = inputs(b=1, size=size, lowres=lowres)
    with torch.no_grad():
        out = unet(x, t, **kwargs)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_channels_out_sets_the_output_channels():
    torch.manual_seed(0)
    unet = live(BaseTest(text_embed_dim=D, channels_out=6))
    x, t, kwargs = inputs()
    with torch.no_grad():
        assert unet(x, t, **kwargs).shape == (2, 6, 16, 16)


def test_fresh_unet_is_the_zero_function():
    torch.manual_seed(0)
    unet = BaseTest(text_embed_dim=D)
    x, t, kwargs = inputs()
    with torch.no_grad():
        assert torch.equal(unet(x, t, **kwargs), torch.zeros_like(x))


def test_output_depends_on_the_time():
    unet = cross_attending_unet()
    x, t, kwargs = inputs()
    with torch.no_grad():
        assert (unet(x, t, **kwargs) - unet(x, t * 0.5, **kwargs)).abs().max() > 1e-4


def test_lowres_unet_output_depends_on_the_lowres_image_and_its_noise_level():
    unet = live(SuperTest(text_embed_dim=D, lowres_cond=True))
    x, t, kwargs = inputs(lowres=True)
    with torch.no_grad():
        out = unet(x, t, **kwargs)
        other_img = unet(x, t, **{**kwargs, "lowres_cond_img": torch.zeros_like(x)})
        other_level = unet(x, t, **{**kwargs, "lowres_noise_times": torch.zeros(2)})
    assert (out - other_img).abs().max() > 1e-4
    assert (out - other_level).abs().max() > 1e-4


def test_under_cpu_bf16_autocast_attention_runs_in_fp32_and_the_output_stays_close(monkeypatch):
    import minimagen.layers as layers

    unet = cross_attending_unet()
    x, t, kwargs = inputs()
    expected = unet(x, t, **kwargs)
    real, seen = layers.F.scaled_dot_product_attention, []

    def spy(q, k, v, **kw):
        seen.append((q.dtype, k.dtype, v.dtype))
        return real(q, k, v, **kw)

    monkeypatch.setattr(layers.F, "scaled_dot_product_attention", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = unet(x, t, **kwargs)
    assert seen and all(dtypes == (torch.float32,) * 3 for dtypes in seen)
    assert out.dtype == torch.bfloat16  # the convolutions did run in bf16
    torch.testing.assert_close(out.float(), expected, atol=0.05 * expected.abs().max().item(), rtol=0)


# Text conditioning and masking -----------------------------------------------------------------


def test_padded_tokens_do_not_affect_the_output():
    unet = cross_attending_unet()
    x, t, kwargs = inputs(tokens=6)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 3:] = False  # row 0 has 3 real tokens, row 1 has 6
    embeds = kwargs["text_embeds"]
    changed = embeds.clone()
    changed[0, 3:] = torch.randn(3, D) * 100
    with torch.no_grad():
        out = unet(x, t, text_embeds=embeds, text_mask=mask)
        out_changed = unet(x, t, text_embeds=changed, text_mask=mask)
    torch.testing.assert_close(out_changed, out, rtol=0, atol=1e-6)


def test_a_real_token_does_affect_the_output_of_its_row_only():
    unet = cross_attending_unet()
    x, t, kwargs = inputs(tokens=6)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 3:] = False
    embeds = kwargs["text_embeds"]
    changed = embeds.clone()
    changed[0, 1] = torch.randn(D) * 3  # a real token of row 0
    with torch.no_grad():
        out = unet(x, t, text_embeds=embeds, text_mask=mask)
        out_changed = unet(x, t, text_embeds=changed, text_mask=mask)
    assert (out_changed[0] - out[0]).abs().max() > 1e-4
    torch.testing.assert_close(out_changed[1], out[1], rtol=0, atol=1e-6)


def test_dropped_captions_give_a_finite_output_independent_of_the_text():
    unet = cross_attending_unet()
    x, t, kwargs = inputs(tokens=4)
    drop = torch.zeros(2, dtype=torch.bool)
    other_embeds = torch.randn(2, 9, D) * 10
    other_mask = torch.rand(2, 9) > 0.5
    with torch.no_grad():
        dropped = unet(x, t, **kwargs, text_keep_mask=drop)
        dropped_other = unet(x, t, text_embeds=other_embeds, text_mask=other_mask, text_keep_mask=drop)
        no_text = unet(x, t)
        kept = unet(x, t, **kwargs)
    assert torch.isfinite(dropped).all()
    torch.testing.assert_close(dropped_other, dropped, rtol=0, atol=1e-6)
    torch.testing.assert_close(no_text, dropped, rtol=0, atol=1e-6)
    assert (kept - dropped).abs().max() > 1e-4, "keeping the caption must matter"


def test_fully_masked_caption_gives_a_finite_output():
    unet = cross_attending_unet()
    x, t, kwargs = inputs()
    with torch.no_grad():
        out = unet(x, t, text_embeds=kwargs["text_embeds"], text_mask=torch.zeros(2, 5, dtype=torch.bool))
    assert torch.isfinite(out).all()


def test_text_keep_mask_drops_rows_individually():
    unet = cross_attending_unet()
    x, t, kwargs = inputs()
    with torch.no_grad():
        kept = unet(x, t, **kwargs)
        dropped = unet(x, t, **kwargs, text_keep_mask=torch.zeros(2, dtype=torch.bool))
        mixed = unet(x, t, **kwargs, text_keep_mask=torch.tensor([True, False]))
    torch.testing.assert_close(mixed[0], kept[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(mixed[1], dropped[1], rtol=0, atol=1e-6)


def test_cond_drop_prob_one_equals_dropping_every_caption():
    unet = cross_attending_unet()
    x, t, kwargs = inputs()
    with torch.no_grad():
        torch.manual_seed(0)
        all_dropped = unet(x, t, **kwargs, cond_drop_prob=1.0)
        explicit = unet(x, t, **kwargs, text_keep_mask=torch.zeros(2, dtype=torch.bool))
        none_dropped = unet(x, t, **kwargs, cond_drop_prob=0.0)
    torch.testing.assert_close(all_dropped, explicit, rtol=0, atol=1e-6)
    assert (none_dropped - explicit).abs().max() > 1e-4


def test_cond_drop_prob_drops_about_that_fraction_of_rows():
    unet = cross_attending_unet()
    x, t, kwargs = inputs(b=64, size=8)
    with torch.no_grad():
        kept = unet(x, t, **kwargs)
        dropped = unet(x, t, **kwargs, text_keep_mask=torch.zeros(64, dtype=torch.bool))
        torch.manual_seed(0)
        half = unet(x, t, **kwargs, cond_drop_prob=0.5)
    is_kept = [torch.allclose(half[i], kept[i], atol=1e-6) for i in range(64)]
    is_dropped = [torch.allclose(half[i], dropped[i], atol=1e-6) for i in range(64)]
    assert all(k != d for k, d in zip(is_kept, is_dropped)), "each row is either kept or dropped"
    assert 16 <= sum(is_dropped) <= 48


# Classifier-free guidance ----------------------------------------------------------------------


def test_cond_scale_one_is_the_conditional_forward():
    unet = cross_attending_unet()
    x, t, kwargs = inputs()
    with torch.no_grad():
        assert torch.equal(unet.forward_with_cond_scale(x, t, cond_scale=1.0, **kwargs), unet(x, t, **kwargs))


@pytest.mark.parametrize("lowres", [False, True], ids=["base", "super_res"])
def test_batched_guidance_equals_two_separate_passes(lowres):
    unet = cross_attending_unet(lowres_cond=lowres)
    x, t, kwargs = inputs(lowres=lowres)
    with torch.no_grad():
        cond = unet(x, t, **kwargs)
        uncond = unet(x, t, **kwargs, text_keep_mask=torch.zeros(2, dtype=torch.bool))
        guided = unet.forward_with_cond_scale(x, t, cond_scale=3.0, **kwargs)
    assert (cond - uncond).abs().max() > 1e-4
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_guidance_with_negative_prompts_of_another_length_uses_them_as_the_unconditional_half():
    unet = cross_attending_unet()
    x, t, kwargs = inputs(tokens=4)
    neg_embeds = torch.randn(2, 7, D)
    neg_mask = torch.ones(2, 7, dtype=torch.bool)
    neg_mask[1, 5:] = False
    text_mask = kwargs["text_mask"].clone()
    text_mask[0, 3:] = False
    with torch.no_grad():
        cond = unet(x, t, text_embeds=kwargs["text_embeds"], text_mask=text_mask)
        negative = unet(x, t, text_embeds=neg_embeds, text_mask=neg_mask)
        guided = unet.forward_with_cond_scale(x, t, cond_scale=3.0, text_embeds=kwargs["text_embeds"],
                                              text_mask=text_mask, negative_text_embeds=neg_embeds,
                                              negative_text_mask=neg_mask)
        null_guided = unet.forward_with_cond_scale(x, t, cond_scale=3.0, text_embeds=kwargs["text_embeds"],
                                                   text_mask=text_mask)
    torch.testing.assert_close(guided, negative + 3.0 * (cond - negative), rtol=1e-4, atol=1e-5)
    assert (guided - null_guided).abs().max() > 1e-4, "the negative prompt must replace the null caption"


def test_guidance_needs_text_embeds():
    unet = cross_attending_unet()
    x, t, _ = inputs()
    with pytest.raises(ValueError, match="text_embeds"):
        unet.forward_with_cond_scale(x, t, cond_scale=3.0)


# Validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make,size", [(BaseTest, 15), (BaseTest, 17), (SuperTest, 18), (SmallSuper, 18)])
def test_size_not_divisible_by_the_downsampling_factor_raises_value_error(make, size):
    unet = make(text_embed_dim=D)
    assert size % unet.downsample_factor
    x, t, kwargs = inputs(b=1, size=size)
    with pytest.raises(ValueError, match=f"divisible by {unet.downsample_factor}"):
        unet(x, t, **kwargs)


def test_non_square_sizes_that_divide_work():
    unet = live(BaseTest(text_embed_dim=D))
    x, t, kwargs = inputs(b=1, size=16)
    x = torch.randn(1, 3, 16, 24)
    with torch.no_grad():
        assert unet(x, t, **kwargs).shape == x.shape


def test_super_res_unet_without_lowres_image_raises_value_error():
    unet = SuperTest(text_embed_dim=D, lowres_cond=True)
    x, t, kwargs = inputs()
    with pytest.raises(ValueError, match="lowres_cond_img"):
        unet(x, t, **kwargs)
    with pytest.raises(ValueError, match="lowres_cond_img"):
        unet(x, t, lowres_cond_img=torch.zeros_like(x), **kwargs)  # noise level missing


def test_per_level_setting_of_wrong_length_raises_value_error():
    with pytest.raises(ValueError, match="num_resnet_blocks"):
        Unet(dim=8, dim_mults=(1, 2), num_resnet_blocks=(1, 2, 3))
    with pytest.raises(ValueError, match="layer_attns"):
        Unet(dim=8, dim_mults=(1, 2), layer_attns=(True,))


# Presets and casting -------------------------------------------------------------------------


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_base_and_super_defaults_have_the_original_sizes():
    with torch.device("meta"):
        base, sup = Base(), Super()
    assert n_params(base) == pytest.approx(1.62e9, rel=0.01)
    assert n_params(sup) == pytest.approx(0.68e9, rel=0.01)
    assert sup.memory_efficient and not base.memory_efficient


def test_test_presets_are_tiny():
    """The original's BaseTest merged Base's defaults and built a 1.6B-parameter network."""
    assert n_params(BaseTest()) < 1_000_000
    assert n_params(SuperTest()) < 1_000_000
    assert BaseTest().config["dim"] == 8 and SuperTest().config["dim"] == 8


def test_presets_take_keyword_overrides():
    unet = BaseTest(dim=16, text_embed_dim=D)
    assert unet.config["dim"] == 16 and unet.config["dim_mults"] == (1, 2) and unet.text_embed_dim == D
    assert set(PRESETS) == {"Base", "Super", "BaseTest", "SuperTest", "SmallBase", "SmallSuper"}


def test_cast_returns_self_when_nothing_changes():
    unet = SuperTest(text_embed_dim=D)
    assert unet.cast(lowres_cond=False, text_embed_dim=D) is unet


def test_cast_builds_a_new_lowres_unet_of_the_same_design():
    unet = SuperTest(text_embed_dim=D)
    cast = unet.cast(lowres_cond=True, text_embed_dim=D)
    assert cast is not unet and isinstance(cast, Unet)
    assert cast.lowres_cond and not unet.lowres_cond
    assert cast.config == {**unet.config, "lowres_cond": True}
    assert cast.init_conv.convs[0].in_channels == 6  # x_t and the low-res image stacked


def test_cast_changes_the_text_embedding_width():
    unet = BaseTest(text_embed_dim=D)
    cast = unet.cast(lowres_cond=False, text_embed_dim=384)
    assert cast is not unet and cast.text_embed_dim == 384
    assert cast.text_to_cond.in_features == 384 and unet.text_to_cond.in_features == D
