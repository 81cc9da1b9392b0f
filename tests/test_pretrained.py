"""The shipped shapes cascade: small, loads with one call, samples in seconds, follows its prompts."""
import pytest
import torch

from minimagen.data import HELD_OUT, score_image
from minimagen.data.shapes import make_caption
from minimagen.pretrained import PRETRAINED_DIR, available, load_pretrained

CAPTIONS = [
    "a red circle on a blue background",
    "a yellow square on a black background",
    "a white triangle on a green background",
    "a blue circle on a yellow background",
    "a green square on a purple background",
    "a black triangle on a white background",
    "a orange circle on a green background",
    "a purple square on a orange background",
]


@pytest.fixture(scope="module")
def model():
    return load_pretrained("shapes")


def test_the_shapes_model_ships_with_the_package():
    assert "shapes" in available()


def test_the_shipped_weights_are_fp16_safetensors_under_20_megabytes():
    weights = PRETRAINED_DIR / "shapes" / "model.safetensors"
    assert weights.stat().st_size < 20 * 2**20
    with open(weights, "rb") as f:
        header = f.read(4096)
    assert b'"dtype":"F16"' in header


def test_the_shipped_model_is_a_16_to_64_px_cascade_on_the_offline_encoder(model):
    assert model.image_sizes == (16, 64)
    assert model.text_encoder_name == "minilm"
    assert next(model.parameters()).dtype == torch.float32


def test_the_shipped_model_samples_64_px_images_in_0_1_reproducibly(model):
    first = model.sample(texts=CAPTIONS[:2], cond_scale=3.0, sampler="ddim", steps=10, seed=0, progress=False)
    again = model.sample(texts=CAPTIONS[:2], cond_scale=3.0, sampler="ddim", steps=10, seed=0, progress=False)
    assert first.shape == (2, 3, 64, 64)
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert torch.equal(first, again)


def test_the_shipped_model_paints_the_background_colour_it_is_asked_for(model):
    images = model.sample(texts=CAPTIONS, cond_scale=3.0, sampler="ddim", steps=25, seed=0, progress=False)
    correct = sum(score_image(image, caption)["bg_ok"] for image, caption in zip(images, CAPTIONS))
    assert correct >= 5, f"{correct}/8 backgrounds of the asked colour"


@pytest.fixture(scope="module")
def held_out_samples(model):
    """One picture of each of the 16 held-out combinations (never seen in training), seeded, with the
    model's recommended guidance (as minimagen-sample uses it)."""
    captions = [make_caption(*combination) for combination in HELD_OUT]
    return model.sample(texts=captions, steps=25, seed=0, progress=False), captions


def test_the_shipped_model_paints_both_colours_of_captions_it_never_saw(held_out_samples):
    images, captions = held_out_samples
    correct = sum(score_image(image, caption)["joint_colour_ok"] for image, caption in zip(images, captions))
    assert correct >= 14, f"{correct}/16 held-out captions with both colours right"


def test_the_shipped_model_draws_the_shape_of_captions_it_never_saw(held_out_samples):
    # Circles, squares and triangles; a model that draws blobs gets about a third right by chance.
    images, captions = held_out_samples
    correct = sum(score_image(image, caption)["shape_ok"] for image, caption in zip(images, captions))
    assert correct >= 13, f"{correct}/16 held-out captions drawn in the asked shape"
