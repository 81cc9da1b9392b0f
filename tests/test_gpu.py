"""The same model on a CUDA device. Selected with `python -m pytest -m gpu tests`; skipped without CUDA."""
import pytest
import torch

from minimagen.Imagen import Imagen
from minimagen.Unet import BaseTest, SuperTest

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def cascade() -> Imagen:
    torch.manual_seed(0)
    return Imagen((BaseTest(), SuperTest()), image_sizes=(16, 32), timesteps=20, text_embed_dim=8).cuda()


def text(b=2):
    return torch.randn(b, 5, 8, device="cuda"), torch.ones(b, 5, dtype=torch.bool, device="cuda")


def test_a_training_step_runs_on_cuda_and_in_bf16_autocast():
    imagen = cascade()
    embeds, masks = text()
    images = torch.rand(2, 3, 32, 32, device="cuda")
    for unet_number in (1, 2):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = imagen(images, text_embeds=embeds, text_masks=masks, unet_number=unet_number)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is None or p.grad.is_cuda for p in imagen.parameters())


def test_sampling_on_cuda_is_reproducible_with_a_seed():
    imagen = cascade()
    embeds, masks = text()
    first = imagen.sample(text_embeds=embeds, text_masks=masks, cond_scale=3.0, seed=0, steps=5, progress=False)
    again = imagen.sample(text_embeds=embeds, text_masks=masks, cond_scale=3.0, seed=0, steps=5, progress=False)
    assert first.is_cuda and first.shape == (2, 3, 32, 32)
    assert torch.equal(first, again)


def test_a_model_saved_on_cuda_loads_on_the_cpu(tmp_path):
    imagen = cascade()
    imagen.save_pretrained(tmp_path / "model")
    loaded = Imagen.from_pretrained(tmp_path / "model", device="cpu")
    for key, value in imagen.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.cpu())
