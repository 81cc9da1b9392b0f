"""The two code blocks of the original MinImagen README (reference/original-minimagen-readme.md),
run as faithfully as this machine allows.

What differs from the README, and why:
- encoder_name = 'minilm' instead of 't5_small': tests never download, and the MiniLM encoder ships
  in a pip package (384-wide embeddings instead of T5-small's 512).
- Block 1 only: `Base` and `Super` are monkeypatched to the tiny `BaseTest` and `SuperTest` presets
  before the README's import line runs. The README's defaults are 1.6B and 0.7B parameters, far too
  slow on a CPU. The call shape `Base(text_embed_dim=enc_dim)` is unchanged.
- Block 1 only: `Imagen(...)` gets `text_encoder_name=encoder_name`. The README relies on Imagen's
  default encoder being the same as `encoder_name` (both 't5_small'); with 'minilm' it must be said.
- Block 2 runs in its own test, so it repeats the three variables it uses from block 1
  (encoder_name, train_texts, train_images).
- Both blocks: `train_images = torch.rand(...)` instead of `torch.randn(...)`. Images are (b, 3, h, w)
  in [0, 1]; the README's standard-normal placeholder lies outside that range, and Imagen.forward now
  refuses it with a message saying so (test_readme_placeholder_images_are_refused_naming_the_range).
Everything else, the training loop included, is as written in the README.
"""
import pytest
import torch

import minimagen.Unet
from minimagen.Unet import BaseTest, SuperTest


@pytest.fixture
def seeded():
    torch.manual_seed(0)


def test_readme_minimal_usage(tmp_path, monkeypatch, seeded):
    monkeypatch.chdir(tmp_path)  # the README saves its PNGs into the working directory
    monkeypatch.setattr(minimagen.Unet, "Base", BaseTest)  # DIFFERS: tiny presets, see the module docstring
    monkeypatch.setattr(minimagen.Unet, "Super", SuperTest)

    # ---- README block 1 -------------------------------------------------------------------------
    import torch  # noqa: F811
    from minimagen.Imagen import Imagen
    from minimagen.Unet import Unet, Base, Super  # noqa: F401
    from minimagen.t5 import t5_encode_text, get_encoded_dim  # noqa: F401
    from torch import optim

    # Name of the T5 encoder to use
    encoder_name = 'minilm'  # DIFFERS: 't5_small' in the README

    # Text captions of training images
    train_texts = [
        'a pepperoni pizza',
        'a man riding a horse',
        'a Beluga whale',
        'a woman rock climbing'
    ]

    # Training images (side length equal to Imagen final output image size)
    train_images = torch.rand(4, 3, 64, 64)  # DIFFERS: torch.randn in the README, see the module docstring

    # Create the Imagen instance
    enc_dim = get_encoded_dim(encoder_name)
    unets = (Base(text_embed_dim=enc_dim), Super(text_embed_dim=enc_dim))
    imagen = Imagen(unets=unets, image_sizes=(32, 64), timesteps=10,
                    text_encoder_name=encoder_name)  # DIFFERS: the README relies on the default, 't5_small'

    # Create an optimzier
    optimizer = optim.Adam(imagen.parameters())

    # Train the U-Nets in Imagen
    with pytest.warns(UserWarning, match="unet_number=0") as caught:  # TEST: i = 0 means the last U-Net
        for j in range(10):
            for i in range(len(unets)):
                optimizer.zero_grad()
                loss = imagen(train_images, texts=train_texts, unet_number=i)
                loss.backward()
                optimizer.step()

    # Sample captions to generate images for
    sample_captions = [
        'a happy dog',
        'a big red house',
        'a woman standing on a beach',
        'a man on a bike'
    ]

    # Generate images
    images = imagen.sample(texts=sample_captions, cond_scale=3., return_pil_images=True)

    # Save images
    for idx, img in enumerate(images):
        img.save(f'Generated_Image_{idx}.png')
    # ---- end of README block 1 ------------------------------------------------------------------

    assert isinstance(imagen.unets[0], BaseTest) and enc_dim == 384
    assert len([w for w in caught if "unet_number=0" in str(w.message)]) == 10
    assert torch.isfinite(loss)
    from PIL import Image

    files = sorted(tmp_path.glob("Generated_Image_*.png"))
    assert [f.name for f in files] == [f"Generated_Image_{k}.png" for k in range(4)]
    for f in files:
        with Image.open(f) as img:
            assert img.size == (64, 64) and img.mode == "RGB"


def test_readme_precomputed_embeddings_and_explicit_unets(seeded):
    # From block 1 (block 2 continues its namespace):
    encoder_name = 'minilm'  # DIFFERS: 't5_small' in the README
    train_texts = ['a pepperoni pizza', 'a man riding a horse', 'a Beluga whale', 'a woman rock climbing']
    train_images = torch.rand(4, 3, 64, 64)  # DIFFERS: torch.randn in the README, see the module docstring
    from minimagen.Imagen import Imagen
    from minimagen.Unet import Unet
    from minimagen.t5 import t5_encode_text, get_encoded_dim

    # ---- README block 2 -------------------------------------------------------------------------
    train_encs, train_mask = t5_encode_text(train_texts, name=encoder_name)

    enc_dim = get_encoded_dim(encoder_name)

    base_unet = Unet(
        dim=32,
        text_embed_dim=enc_dim,
        cond_dim=64,
        dim_mults=(1, 2, 4),
        num_resnet_blocks=2,
        layer_attns=(False, False, True),
        layer_cross_attns=(False, False, True),
        attend_at_middle=True
    )

    super_res_unet = Unet(
        dim=32,
        text_embed_dim=enc_dim,
        cond_dim=512,
        dim_mults=(1, 2, 4),
        num_resnet_blocks=(2, 4, 8),
        layer_attns=(False, False, True),
        layer_cross_attns=(False, False, True),
        attend_at_middle=False
    )

    # Create Imagen instance
    imagen = Imagen((base_unet, super_res_unet), image_sizes=(32, 64), timesteps=10)
    # ---- end of README block 2 ------------------------------------------------------------------

    train_encs, train_mask = train_encs.cpu(), train_mask.cpu()
    assert train_encs.shape[0] == 4 and train_encs.shape[-1] == enc_dim == 384
    assert train_mask.dtype == torch.bool and train_mask.shape == train_encs.shape[:2]

    # As written, Imagen uses its default encoder, 't5_small' (512 wide), and builds: it casts both
    # U-Nets to 512-wide text embeddings. The 384-wide MiniLM embeddings then do not fit, and
    # training says so. (With the README's own encoder_name = 't5_small' the widths agree.)
    assert imagen.text_encoder_name == "t5_small" and imagen.text_embed_dim == 512
    assert [u.text_embed_dim for u in imagen.unets] == [512, 512]
    assert [u.lowres_cond for u in imagen.unets] == [False, True]
    with pytest.raises(ValueError, match=r"text_embeds must be \(batch, tokens, 512\)"):
        imagen(train_images, text_embeds=train_encs, text_masks=train_mask, unet_number=1)

    # The working form names the encoder the embeddings came from.
    imagen = Imagen((base_unet, super_res_unet), image_sizes=(32, 64), timesteps=10, text_encoder_name=encoder_name)
    assert imagen.unets[0] is base_unet, "already a 384-wide base U-Net: used as is"
    assert imagen.unets[1].lowres_cond and imagen.unets[1].config["cond_dim"] == 512
    optimizer = torch.optim.Adam(imagen.parameters())
    for unet_number in (1, 2):
        optimizer.zero_grad()
        loss = imagen(train_images, text_embeds=train_encs, text_masks=train_mask, unet_number=unet_number)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    # Two denoising steps per stage instead of all ten, to keep the test short.
    images = imagen.sample(text_embeds=train_encs[:2], text_masks=train_mask[:2], cond_scale=3.0, seed=0,
                           steps=2, progress=False)
    assert images.shape == (2, 3, 64, 64) and images.min() >= 0 and images.max() <= 1


def test_readme_placeholder_images_are_refused_naming_the_range(seeded):
    from minimagen.Imagen import Imagen

    imagen = Imagen(unets=(BaseTest(text_embed_dim=384), SuperTest(text_embed_dim=384)), image_sizes=(32, 64),
                    timesteps=10, text_encoder_name="minilm")
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        imagen(torch.randn(4, 3, 64, 64), texts=["a pepperoni pizza"] * 4, unet_number=1)
