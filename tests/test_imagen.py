"""Specification of minimagen.Imagen: noise conditioning augmentation, training, sampling, casting
and input validation.

Tiny cascades (BaseTest at 16 px, SuperTest at 32 px) with random 8-wide text embeddings keep every
test to a fraction of a second; only the caption-count test loads a real (offline) text encoder.
"""
import pytest
import torch
from torch import nn

from minimagen.Imagen import Imagen, random_crop, resize_image_to
from minimagen.Unet import BaseTest, SuperTest, Unet

D = 8




def live(imagen: Imagen, seed: int = 0) -> Imagen:
    """Random final convolutions, so the U-Nets are not the zero function they start as."""
    torch.manual_seed(seed)
    for unet in imagen.unets:
        nn.init.normal_(unet.final_conv.weight, std=0.05)
        nn.init.zeros_(unet.final_conv.bias)
    return imagen


def cascade(timesteps=5, **kwargs) -> Imagen:
    torch.manual_seed(0)
    return live(Imagen((BaseTest(), SuperTest()), image_sizes=(16, 32), timesteps=timesteps, text_embed_dim=D,
                       **kwargs))


def embeds(b=2, tokens=4, seed=1):
    return torch.randn(b, tokens, D, generator=torch.Generator().manual_seed(seed))


def images(b=2, size=32, seed=2):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


# Noise conditioning augmentation ---------------------------------------------------------------


def test_lowres_condition_at_level_zero_is_the_clean_upsampled_image():
    imagen = cascade()
    torch.manual_seed(0)
    low = torch.rand(3, 3, 16, 16) * 2 - 1
    noised, levels = imagen.lowres_condition(low, 32, 0.0)
    assert torch.equal(noised, resize_image_to(low, 32))
    assert noised.shape == (3, 3, 32, 32)
    assert torch.equal(levels, torch.zeros(3))


def test_lowres_condition_at_level_one_is_nearly_uncorrelated_with_the_image():
    imagen = cascade()
    torch.manual_seed(0)
    low = torch.rand(16, 3, 16, 16) * 2 - 1
    noised, levels = imagen.lowres_condition(low, 32, 1.0)
    clean = resize_image_to(low, 32)
    corr = torch.corrcoef(torch.stack([noised.flatten(), clean.flatten()]))[0, 1]
    assert abs(corr.item()) < 0.05
    assert noised.std().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(levels, torch.ones(16))


def test_lowres_condition_accepts_one_level_per_image():
    imagen = cascade()
    low = torch.rand(2, 3, 16, 16) * 2 - 1
    noised, levels = imagen.lowres_condition(low, 32, torch.tensor([0.0, 0.5]))
    assert torch.equal(noised[0], resize_image_to(low, 32)[0])
    assert not torch.allclose(noised[1], resize_image_to(low, 32)[1], atol=0.05)
    assert levels.tolist() == [0.0, 0.5]


# Training ------------------------------------------------------------------------------------


@pytest.mark.parametrize("unet_number", [1, 2])
def test_training_loss_is_a_finite_scalar_for_each_unet(unet_number):
    imagen = cascade()
    torch.manual_seed(0)
    loss = imagen(images(), text_embeds=embeds(), unet_number=unet_number)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [[p.grad is not None and p.grad.abs().sum() > 0 for p in unet.parameters()] for unet in imagen.unets]
    trained, other = grads[unet_number - 1], grads[2 - unet_number]
    assert any(trained) and not any(other), "only the chosen U-Net gets gradients"


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("loss_type", ["l1", "l2", "huber"])
def test_every_objective_and_loss_type_trains(objective, loss_type):
    imagen = cascade(pred_objectives=objective, loss_type=loss_type, min_snr_gamma=5.0)
    torch.manual_seed(0)
    loss = imagen(images(), text_embeds=embeds(), unet_number=2)
    assert torch.isfinite(loss) and loss > 0


def test_unet_number_zero_warns_and_trains_the_last_unet():
    """The original README loops `unet_number=i` over range(len(unets)), so 0 meant the last U-Net."""
    imagen = cascade()
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="unet_number=0"):
        loss = imagen(images(), text_embeds=embeds(), unet_number=0)
    loss.backward()
    assert all(p.grad is None for p in imagen.unets[0].parameters())
    assert any(p.grad is not None for p in imagen.unets[1].parameters())


def test_random_crop_takes_the_same_window_of_every_tensor():
    image = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).view(2, 3, 8, 8)
    torch.manual_seed(0)
    crop, condition_crop = random_crop(4, image, image + 1000)
    assert crop.shape == (2, 3, 4, 4)
    assert torch.equal(condition_crop, crop + 1000)
    for b in range(2):  # a contiguous window of the original image
        top, left = divmod(int(crop[b, 0, 0, 0]) - b * 3 * 64, 8)
        assert torch.equal(crop[b], image[b, :, top:top + 4, left:left + 4])


def test_super_resolution_stage_trains_on_crops_and_samples_whole_images():
    imagen = cascade(random_crop_sizes=(None, 16))
    seen = []
    imagen.unets[1].register_forward_hook(lambda module, args, output: seen.append(tuple(output.shape)))
    torch.manual_seed(0)
    loss = imagen(images(), text_embeds=embeds(), unet_number=2)
    assert torch.isfinite(loss) and seen == [(2, 3, 16, 16)]
    sampled = imagen.sample(text_embeds=embeds(), steps=2, sampler="ddim", seed=0, progress=False)
    assert sampled.shape == (2, 3, 32, 32)


def test_random_crop_size_zero_means_whole_images():
    assert cascade(random_crop_sizes=(0, 0)).config["random_crop_sizes"] == (None, None)


@pytest.mark.parametrize("sizes", [(8, None), (None, 32), (None, 40), (None, 6), (None,)])
def test_bad_random_crop_sizes_raise_value_error_naming_them(sizes):
    with pytest.raises(ValueError, match="random_crop_sizes"):
        cascade(random_crop_sizes=sizes)


def test_only_train_unet_number_is_the_default_unet_number():
    torch.manual_seed(0)
    imagen = live(Imagen((BaseTest(), SuperTest()), image_sizes=(16, 32), timesteps=5, text_embed_dim=D,
                         only_train_unet_number=2))
    imagen(images(), text_embeds=embeds()).backward()
    assert all(p.grad is None for p in imagen.unets[0].parameters())


def test_a_tiny_model_overfits_four_captioned_images():
    """Loss on held-out noise draws (fixed seeds) falls by more than half in 80 Adam steps."""
    torch.manual_seed(0)
    unet = Unet(dim=16, dim_mults=(1, 2), num_resnet_blocks=1, layer_attns=False, layer_cross_attns=False)
    imagen = Imagen((unet,), image_sizes=(16,), timesteps=100, text_embed_dim=D, cond_drop_prob=0.0)
    data = images(b=4, size=16, seed=1)
    captions = embeds(b=4, tokens=3, seed=3)

    def held_out_loss():
        with torch.no_grad():
            losses = []
            for seed in range(8):
                torch.manual_seed(10_000 + seed)
                losses.append(imagen(data, text_embeds=captions).item())
        return sum(losses) / len(losses)

    before = held_out_loss()
    optimizer = torch.optim.Adam(imagen.parameters(), lr=2e-3)
    for step in range(80):
        torch.manual_seed(step)
        loss = imagen(data, text_embeds=captions)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_loss()
    assert before == pytest.approx(1.0, abs=0.1), "an untrained (zero) eps-predictor has loss E[eps^2] = 1"
    assert after < 0.5 * before


# Sampling ------------------------------------------------------------------------------------


def test_sample_returns_final_size_images_in_unit_range():
    imagen = cascade()
    out = imagen.sample(text_embeds=embeds(b=3), seed=0, progress=False)
    assert out.shape == (3, 3, 32, 32)
    assert out.min() >= 0 and out.max() <= 1
    assert out.std() > 0.01


def test_same_seed_gives_identical_images_and_different_seeds_differ():
    imagen = cascade()
    a = imagen.sample(text_embeds=embeds(), seed=0, progress=False)
    b = imagen.sample(text_embeds=embeds(), seed=0, progress=False)
    c = imagen.sample(text_embeds=embeds(), seed=1, progress=False)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.01


def test_generator_argument_is_equivalent_to_seed():
    imagen = cascade()
    by_seed = imagen.sample(text_embeds=embeds(), seed=7, progress=False)
    by_generator = imagen.sample(text_embeds=embeds(), generator=torch.Generator().manual_seed(7), progress=False)
    assert torch.equal(by_seed, by_generator)


def test_global_seed_makes_sampling_reproducible_without_seed_argument():
    imagen = cascade()
    torch.manual_seed(3)
    a = imagen.sample(text_embeds=embeds(), progress=False)
    torch.manual_seed(3)
    b = imagen.sample(text_embeds=embeds(), progress=False)
    assert torch.equal(a, b)


def test_ddim_sampling_with_few_steps():
    imagen = cascade(timesteps=20)
    out = imagen.sample(text_embeds=embeds(), sampler="ddim", steps=5, seed=0, progress=False)
    assert out.shape == (2, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    again = imagen.sample(text_embeds=embeds(), sampler="ddim", steps=5, seed=0, progress=False)
    assert torch.equal(out, again)
    ddpm = imagen.sample(text_embeds=embeds(), sampler="ddpm", steps=5, seed=0, progress=False)
    assert not torch.equal(out, ddpm)


def test_ddim_steps_per_stage():
    imagen = cascade(timesteps=(20, 10))
    out = imagen.sample(text_embeds=embeds(), sampler="ddim", steps=(4, 2), seed=0, progress=False)
    assert out.shape == (2, 3, 32, 32)


def test_cond_scale_per_stage():
    imagen = cascade()
    both = imagen.sample(text_embeds=embeds(), cond_scale=(1.0, 3.0), seed=0, progress=False)
    plain = imagen.sample(text_embeds=embeds(), cond_scale=1.0, seed=0, progress=False)
    assert both.shape == (2, 3, 32, 32)
    assert not torch.equal(both, plain), "the second stage used guidance"


def test_a_one_element_cond_scale_applies_to_every_stage():
    imagen = cascade()
    one = imagen.sample(text_embeds=embeds(), cond_scale=(3.0,), seed=0, progress=False)
    every = imagen.sample(text_embeds=embeds(), cond_scale=3.0, seed=0, progress=False)
    assert torch.equal(one, every)


def test_default_cond_scales_guide_the_base_and_leave_super_resolution_unguided():
    from minimagen.Imagen import default_cond_scales

    assert default_cond_scales(1) == (3.0,)
    assert default_cond_scales(3) == (3.0, 1.0, 1.0)
    assert default_cond_scales(2, base=5) == (5.0, 1.0)


def test_cond_scale_tuple_of_wrong_length_raises_value_error():
    imagen = cascade()
    with pytest.raises(ValueError, match="cond_scale"):
        imagen.sample(text_embeds=embeds(), cond_scale=(1.0, 2.0, 3.0), progress=False)


def test_negative_prompt_embeddings_steer_the_sample():
    imagen = cascade()
    plain = imagen.sample(text_embeds=embeds(), cond_scale=3.0, seed=0, progress=False)
    negative = imagen.sample(text_embeds=embeds(), cond_scale=3.0, seed=0, progress=False,
                             negative_text_embeds=embeds(tokens=6, seed=9))
    assert negative.shape == plain.shape and not torch.equal(plain, negative)


def test_return_pil_images_gives_final_size_pil_images():
    from PIL import Image

    imagen = cascade()
    pils = imagen.sample(text_embeds=embeds(b=3), seed=0, return_pil_images=True, progress=False)
    assert len(pils) == 3
    assert all(isinstance(p, Image.Image) and p.size == (32, 32) and p.mode == "RGB" for p in pils)


def test_start_at_unet_two_enlarges_given_lowres_images():
    imagen = cascade()
    low = images(size=16)
    out = imagen.sample(text_embeds=embeds(), start_at_unet=2, lowres_images=low, seed=0, progress=False)
    assert out.shape == (2, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    other = imagen.sample(text_embeds=embeds(), start_at_unet=2, lowres_images=1 - low, seed=0, progress=False)
    assert not torch.equal(out, other), "the result depends on the given low-resolution image"


def test_start_at_unet_two_without_lowres_images_raises_value_error():
    imagen = cascade()
    with pytest.raises(ValueError, match="lowres_images"):
        imagen.sample(text_embeds=embeds(), start_at_unet=2, progress=False)


def test_stop_at_unet_one_gives_base_size_images():
    imagen = cascade()
    out = imagen.sample(text_embeds=embeds(), stop_at_unet=1, seed=0, progress=False)
    assert out.shape == (2, 3, 16, 16)


def test_the_callback_sees_every_step_of_every_stage():
    imagen = cascade(timesteps=(5, 4))
    calls = []
    imagen.sample(text_embeds=embeds(), sampler="ddim", steps=(5, 3), seed=0, progress=False,
                  callback=lambda **info: calls.append(info))
    assert [(c["stage"], c["step"], c["t"]) for c in calls] == [(1, 0, 4), (1, 1, 3), (1, 2, 2), (1, 3, 1), (1, 4, 0),
                                                              (2, 0, 3), (2, 1, 2), (2, 2, 0)]
    assert calls[0]["x_t"].shape == calls[0]["x0"].shape == (2, 3, 16, 16)
    assert calls[-1]["x0"].shape == (2, 3, 32, 32) and calls[-1]["x0"].abs().max() <= 1


def test_the_last_callback_holds_the_stage_output():
    imagen = cascade()
    last = {}
    out = imagen.sample(text_embeds=embeds(), seed=0, progress=False, callback=lambda **info: last.update(info))
    torch.testing.assert_close((last["x0"] + 1) / 2, out)


def test_return_all_stages_gives_each_stage_output_and_changes_nothing():
    imagen = cascade()
    base, final = imagen.sample(text_embeds=embeds(), seed=0, progress=False, return_all_stages=True)
    assert base.shape == (2, 3, 16, 16) and final.shape == (2, 3, 32, 32)
    assert torch.equal(final, imagen.sample(text_embeds=embeds(), seed=0, progress=False))
    assert torch.equal(base, imagen.sample(text_embeds=embeds(), seed=0, progress=False, stop_at_unet=1))


def test_sample_uses_the_recommended_settings_for_what_the_caller_leaves_out():
    imagen = cascade(timesteps=20, sampling={"sampler": "ddpm", "steps": 4, "cond_scale": (2.0, 1.0)})
    calls = []
    imagen.sample(text_embeds=embeds(), seed=0, progress=False, callback=lambda **info: calls.append(info))
    assert len(calls) == 8
    explicit = imagen.sample(text_embeds=embeds(), sampler="ddpm", steps=4, cond_scale=(2.0, 1.0), seed=0,
                             progress=False)
    assert torch.equal(explicit, imagen.sample(text_embeds=embeds(), seed=0, progress=False))


def test_the_default_recommended_settings_are_dpmpp_2m_25_guided_on_the_base():
    assert cascade(timesteps=(1000, 20)).config["sampling"] == {"sampler": "dpmpp_2m", "steps": [25, 20],
                                                                "cond_scale": [3.0, 1.0]}


@pytest.mark.parametrize("sampling,match", [
    ({"sampler": "euler", "steps": 2, "cond_scale": 1}, "sampler"),
    ({"sampler": "ddim", "steps": 9, "cond_scale": 1}, "steps"),
    ({"sampler": "ddim", "steps": 2}, "keys"),
])
def test_bad_recommended_sampling_settings_raise_value_error(sampling, match):
    with pytest.raises(ValueError, match=match):
        cascade(sampling=sampling)


def test_forward_runs_the_unet_it_is_given_for_its_stage():
    imagen = cascade()
    ran = []
    wrapper = lambda *args, **kwargs: ran.append(True) or imagen.unets[0](*args, **kwargs)
    torch.manual_seed(0)
    given = imagen(images(size=16), text_embeds=embeds(), unet_number=1, unet=wrapper)
    torch.manual_seed(0)
    plain = imagen(images(size=16), text_embeds=embeds(), unet_number=1)
    assert ran and torch.equal(given, plain)


def test_without_auto_normalize_images_go_in_and_come_out_in_minus_one_to_one():
    imagen = cascade(auto_normalize_img=False)
    out = imagen.sample(text_embeds=embeds(), seed=0, progress=False)
    assert out.min() < 0 and out.min() >= -1 and out.max() <= 1
    normalizing = cascade()
    torch.manual_seed(0)
    loss = imagen(images(size=16) * 2 - 1, text_embeds=embeds(), unet_number=1)
    torch.manual_seed(0)
    same = normalizing(images(size=16), text_embeds=embeds(), unet_number=1)
    torch.testing.assert_close(loss, same)


@pytest.mark.parametrize("kwargs,match", [
    (dict(start_at_unet=3), "start_at_unet"),
    (dict(start_at_unet=0), "start_at_unet"),
    (dict(stop_at_unet=3), "stop_at_unet"),
    (dict(start_at_unet=2, stop_at_unet=1, lowres_images=torch.rand(2, 3, 16, 16)), "stop_at_unet"),
    (dict(sampler="euler"), "sampler"),
    (dict(sampler="ddim", steps=6), "steps"),
    (dict(lowres_images=torch.rand(3, 3, 16, 16), start_at_unet=2), "lowres_images"),
])
def test_bad_sampling_arguments_raise_value_error(kwargs, match):
    imagen = cascade()
    with pytest.raises(ValueError, match=match):
        imagen.sample(text_embeds=embeds(), progress=False, **kwargs)


@pytest.mark.parametrize("was_training", [True, False])
def test_sample_restores_the_training_mode(was_training):
    imagen = cascade()
    imagen.train(was_training)
    imagen.sample(text_embeds=embeds(), seed=0, progress=False)
    assert imagen.training == was_training
    assert all(m.training == was_training for m in imagen.modules())


# Casting -------------------------------------------------------------------------------------


def test_unets_are_cast_to_their_place_in_the_cascade():
    torch.manual_seed(0)
    first = SuperTest(lowres_cond=True, text_embed_dim=D)  # wrongly marked super-res
    second = BaseTest(text_embed_dim=D)  # wrongly marked base
    third = SuperTest(lowres_cond=True, text_embed_dim=D)  # already right
    imagen = Imagen((first, second, third), image_sizes=(8, 16, 32), timesteps=5, text_embed_dim=D)
    assert [u.lowres_cond for u in imagen.unets] == [False, True, True]
    assert imagen.unets[2] is third
    assert all(u.text_embed_dim == D for u in imagen.unets)


def test_unets_are_cast_to_the_encoders_width():
    imagen = Imagen((BaseTest(text_embed_dim=D),), image_sizes=(16,), text_encoder_name="minilm")
    assert imagen.text_embed_dim == 384
    assert imagen.unets[0].text_embed_dim == 384 and imagen.unets[0].text_to_cond.in_features == 384


def test_a_single_unet_can_be_passed_without_a_sequence():
    imagen = Imagen(BaseTest(), image_sizes=16, text_embed_dim=D, timesteps=5)
    assert len(imagen.unets) == 1 and imagen.image_sizes == (16,)
    assert torch.isfinite(imagen(images(size=16), text_embeds=embeds()))


# Validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,match", [
    ((2, 3, 8, 8), "at least 16x16"),  # too small for U-Net 1
    ((2, 3, 32, 16), "square"),
    ((2, 1, 32, 32), r"\(batch, 3, height, width\)"),  # wrong channels
])
def test_bad_training_images_raise_value_error(shape, match):
    imagen = cascade()
    with pytest.raises(ValueError, match="images") as info:
        imagen(torch.rand(*shape), text_embeds=embeds(), unet_number=1)
    assert info.match(match)


def test_images_too_small_for_the_super_res_stage_raise_value_error():
    imagen = cascade()
    with pytest.raises(ValueError, match="at least 32x32"):
        imagen(images(size=16), text_embeds=embeds(), unet_number=2)


def test_images_as_a_3d_tensor_raise_value_error():
    imagen = cascade()
    with pytest.raises(ValueError, match="images must be"):
        imagen(torch.rand(3, 32, 32), text_embeds=embeds(), unet_number=1)


def test_text_embeds_for_another_number_of_images_raise_value_error():
    imagen = cascade()
    with pytest.raises(ValueError, match="text_embeds.*one row per image"):
        imagen(images(b=2), text_embeds=embeds(b=3), unet_number=1)


def test_text_embeds_of_the_wrong_width_raise_value_error():
    imagen = cascade()
    with pytest.raises(ValueError, match=r"text_embeds must be \(batch, tokens, 8\)"):
        imagen(images(), text_embeds=torch.randn(2, 4, 5), unet_number=1)


def test_text_masks_of_the_wrong_shape_raise_value_error():
    imagen = cascade()
    with pytest.raises(ValueError, match="text_masks"):
        imagen(images(), text_embeds=embeds(), text_masks=torch.ones(2, 3, dtype=torch.bool), unet_number=1)


def test_missing_text_mask_treats_zero_embeddings_as_padding():
    imagen = cascade()
    e = embeds(tokens=4)
    e[0, 2:] = 0
    _, masks = imagen.encode_text(None, e)
    assert masks.tolist() == [[True, True, False, False], [True, True, True, True]]


def test_no_text_at_all_raises_value_error():
    imagen = cascade()
    with pytest.raises(ValueError, match="texts"):
        imagen(images(), unet_number=1)


def test_texts_for_another_number_of_images_raise_value_error():
    torch.manual_seed(0)
    imagen = Imagen((BaseTest(),), image_sizes=(16,), timesteps=5, text_encoder_name="minilm")
    with pytest.raises(ValueError, match="texts.*one caption per image.*3 captions for 4 images"):
        imagen(images(b=4, size=16), texts=["a red square", "a blue circle", "a green cross"])
    loss = imagen(images(b=3, size=16), texts=["a red square", "a blue circle", "a green cross"])
    assert torch.isfinite(loss)


@pytest.mark.parametrize("bad", [3, -1, 1.5, "1"])
def test_unet_number_out_of_range_raises_value_error(bad):
    imagen = cascade()
    with pytest.raises(ValueError, match="unet_number must be an integer from 1 to 2"):
        imagen(images(), text_embeds=embeds(), unet_number=bad)


def test_unet_number_true_raises_value_error():
    imagen = cascade()
    with pytest.raises(ValueError, match="unet_number"):
        imagen(images(), text_embeds=embeds(), unet_number=True)


def test_missing_unet_number_with_two_unets_raises_value_error():
    imagen = cascade()
    with pytest.raises(ValueError, match="unet_number is required"):
        imagen(images(), text_embeds=embeds())


def test_unknown_text_encoder_name_raises_value_error():
    with pytest.raises(ValueError, match="t5_smal") as info:
        Imagen((BaseTest(),), image_sizes=(16,), text_encoder_name="t5_smal")
    assert "t5_small" in str(info.value), "suggests the close match"


@pytest.mark.parametrize("sizes", [(32, 16), (16, 16)])
def test_image_sizes_must_increase(sizes):
    with pytest.raises(ValueError, match="image_sizes must increase"):
        Imagen((BaseTest(), SuperTest()), image_sizes=sizes, text_embed_dim=D)


def test_image_sizes_of_the_wrong_count_raise_value_error():
    with pytest.raises(ValueError, match="image_sizes"):
        Imagen((BaseTest(), SuperTest()), image_sizes=(16, 32, 64), text_embed_dim=D)


def test_image_size_not_divisible_by_the_unets_downsampling_raises_value_error():
    with pytest.raises(ValueError, match=r"image_sizes\[1\]"):
        Imagen((BaseTest(), SuperTest()), image_sizes=(16, 34), text_embed_dim=D)


@pytest.mark.parametrize("kwargs,match", [
    (dict(loss_type="l3"), "loss_type"),
    (dict(pred_objectives="noise"), "pred_objectives"),
    (dict(noise_schedules="quadratic"), "noise_schedule"),
    (dict(lowres_noise_schedule="quadratic"), "noise_schedule"),
    (dict(cond_drop_prob=1.5), "cond_drop_prob"),
    (dict(timesteps=0), "timesteps"),
    (dict(timesteps=(5, 5, 5)), "timesteps"),
])
def test_bad_constructor_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Imagen((BaseTest(), SuperTest()), image_sizes=(16, 32), text_embed_dim=D, **kwargs)
