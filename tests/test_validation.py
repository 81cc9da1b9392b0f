"""Bad input is refused before any work, with one sentence naming the argument (minimagen.validation).

Covers Imagen.forward, Imagen.sample, load_pretrained, model folders' config.json, the data sets and
minimagen-sample. Tiny cascades (BaseTest at 16 px, SuperTest at 32 px) with random 8-wide text
embeddings; nothing is trained or really sampled.
"""
import json
import re
import warnings

import pytest
import torch
from PIL import Image

from minimagen import pretrained, sample
from minimagen.checkpoint import CheckpointError
from minimagen.data import HFImageTextDataset, ImageFolderDataset
from minimagen.Imagen import Imagen
from minimagen.Unet import BaseTest, SuperTest

D = 8
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.fixture(scope="module")
def imagen():
    torch.manual_seed(0)
    return Imagen((BaseTest(), SuperTest()), image_sizes=(16, 32), timesteps=5, text_embed_dim=D)


def embeds(b=2):
    return torch.randn(b, 4, D, generator=torch.Generator().manual_seed(1))


def good_images(b=2, size=32):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(2))


# Imagen.forward ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, message", [
    ((good_images() * 255).to(torch.uint8), "float tensor.*uint8"),
    (good_images() * 255, r"\[0, 1\].*divide by 255"),
    (good_images() * 2 - 1, r"\[0, 1\].*unnormalize"),
    (torch.full((2, 3, 32, 32), float("nan")), "NaN"),
    (good_images()[:, :1], r"\(batch, 3, height, width\)"),
    (torch.rand(2, 3, 32, 24), "square"),
    (good_images(size=8), "at least 16x16"),
], ids=["uint8", "0-255", "minus1-1", "nan", "one-channel", "not-square", "too-small"])
def test_forward_refuses_images_of_the_wrong_dtype_range_or_shape_naming_images(imagen, bad, message):
    with pytest.raises(ValueError, match="images") as info:
        imagen(bad, text_embeds=embeds(), unet_number=1)
    assert info.match(message)


def test_forward_takes_minus_one_to_one_images_when_the_model_does_not_normalise():
    torch.manual_seed(0)
    raw = Imagen(BaseTest(), image_sizes=16, timesteps=5, text_embed_dim=D, auto_normalize_img=False)
    assert torch.isfinite(raw(good_images(size=16) * 2 - 1, text_embeds=embeds()))
    with pytest.raises(ValueError, match=r"images must lie in \[-1, 1\]"):
        raw(good_images(size=16) * 3, text_embeds=embeds())


def test_forward_refuses_nan_text_embeddings(imagen):
    with pytest.raises(ValueError, match="text_embeds holds NaN"):
        imagen(good_images(), text_embeds=embeds() * float("nan"), unet_number=1)


# Imagen.sample ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(cond_scale=float("nan")), "cond_scale must be a finite number"),
    (dict(cond_scale=(3.0, float("inf"))), "cond_scale must be a finite number"),
    (dict(cond_scale="3"), "cond_scale must be a finite number"),
    (dict(seed=2.5), "seed must be an integer"),
    (dict(seed=-1), "seed must be an integer from 0"),
    (dict(seed=2**64), "seed must be an integer from 0"),
    (dict(lowres_sample_noise_level=1.5), r"lowres_sample_noise_level must be a number in \[0, 1\]"),
    (dict(lowres_sample_noise_level=float("nan")), "lowres_sample_noise_level must be"),
    (dict(steps=0), "steps must be a positive integer"),
    (dict(eta=-1.0), "eta must be"),
    (dict(device="gpu0"), "device must be a device name"),
    (dict(start_at_unet=2, lowres_images=good_images(size=16) * 255), r"lowres_images must lie in \[0, 1\]"),
    (dict(start_at_unet=2, lowres_images=good_images(size=16).half().to(torch.uint8)), "lowres_images must be a float"),
    (dict(start_at_unet=2, lowres_images=torch.rand(2, 3, 16)), r"lowres_images must be a \(batch, 3"),
], ids=["nan-scale", "inf-scale", "str-scale", "float-seed", "negative-seed", "huge-seed", "noise-1.5",
        "noise-nan", "steps-0", "eta", "device-name", "lowres-range", "lowres-uint8", "lowres-shape"])
def test_sample_refuses_bad_arguments_naming_them_before_any_step(imagen, kwargs, message, monkeypatch):
    monkeypatch.setattr(Imagen, "_sample_stage", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(ValueError, match=message):
        imagen.sample(text_embeds=embeds(), progress=False, **kwargs)


@no_cuda
def test_sample_on_a_missing_gpu_says_cuda_is_not_available(imagen):
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        imagen.sample(text_embeds=embeds(), device="cuda", progress=False)


@no_cuda
def test_load_pretrained_on_a_missing_gpu_says_cuda_is_not_available():
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        pretrained.load_pretrained("shapes", device="cuda")


# config.json ------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, key", [
    (lambda c: c.update(unets={}), '"unets" must be a non-empty list'),
    (lambda c: c.update(imagen=[]), '"imagen" must be an object'),
    (lambda c: c["imagen"].update(image_sizes="16"), '"imagen"."image_sizes" must be a list of positive integers'),
    (lambda c: c["imagen"].update(image_sizes=[16]), '"imagen"."image_sizes" must be one size per U-Net'),
    (lambda c: c["imagen"].update(timesteps=[1000, "x"]), '"imagen"."timesteps" must be a positive integer'),
    (lambda c: c["imagen"].update(lowres_sample_noise_level=3), '"imagen"."lowres_sample_noise_level"'),
    (lambda c: c["imagen"].update(colour="red"), "\"imagen\" key 'colour' must be one of"),
    (lambda c: c["unets"][0].update(dim={"a": 1}), '"unets"\\[0\\]."dim" must be'),
    (lambda c: c["unets"][1].update(colour="red"), '"unets"\\[1\\] key \'colour\' must be one of dim, '),
], ids=["unets", "imagen", "sizes-str", "sizes-count", "timesteps", "noise", "unknown-key", "unet-value",
        "unet-unknown-key"])
def test_a_malformed_config_json_is_refused_naming_the_key_and_the_form(imagen, tmp_path, change, key):
    imagen.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    change(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=key):
        Imagen.from_pretrained(tmp_path)


# Data sets --------------------------------------------------------------------------------------


def _folder(tmp_path, metadata: bytes):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "b.png")
    (tmp_path / "metadata.jsonl").write_bytes(metadata)
    return tmp_path


def test_a_utf8_byte_order_mark_in_metadata_is_accepted(tmp_path):
    lines = '{"file_name": "a.png", "text": "a red square"}\n{"file_name": "b.png", "text": "a blue square"}\n'
    ds = ImageFolderDataset(_folder(tmp_path, b"\xef\xbb\xbf" + lines.encode()), size=8)
    assert sorted(ds.captions()) == ["a blue square", "a red square"] and not ds.skipped


def test_metadata_in_another_encoding_is_refused_naming_the_file_and_line(tmp_path):
    lines = '{"file_name": "a.png", "text": "red"}\n{"file_name": "b.png", "text": "caf\u00e9 bleu"}\n'
    with pytest.raises(ValueError, match=r"metadata.jsonl:2 is not UTF-8"):
        ImageFolderDataset(_folder(tmp_path, lines.encode("latin-1")), size=8)


def test_a_metadata_line_whose_file_name_is_not_a_string_is_skipped_and_named(tmp_path):
    lines = '{"file_name": 3, "text": "a red square"}\n{"file_name": "b.png", "text": "a blue square"}\n'
    with pytest.warns(UserWarning, match=r"metadata.jsonl:1 \(bad metadata line.*both strings\)"):
        ds = ImageFolderDataset(_folder(tmp_path, lines.encode()), size=8)
    assert ds.captions() == ["a blue square"]


def test_folder_skips_name_the_first_files_and_count_the_rest(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "keep.png")
    (tmp_path / "keep.txt").write_text("kept")
    for i in range(7):
        (tmp_path / f"bad{i}.png").write_bytes(b"not a png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ImageFolderDataset(tmp_path, size=8)
    text = str(caught[0].message)
    assert "bad0.png (no caption" in text and "and 2 more" in text


def test_an_empty_hugging_face_dataset_is_refused():
    datasets = pytest.importorskip("datasets")
    empty = datasets.Dataset.from_dict({"image": [], "text": []})
    with pytest.raises(ValueError, match="length 0"):
        HFImageTextDataset(empty)


# minimagen-sample -------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "--seed must be an integer from 0"),
    (["--cond-scale", "nan"], "--cond-scale must be a finite number"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--lowres-noise-level", "2"], r"--lowres-noise-level must be a number in \[0, 1\]"),
    pytest.param(["--device", "cuda"], "CUDA is not available on this machine", marks=no_cuda),
], ids=["seed", "cond-scale", "steps", "noise", "cuda"])
def test_sample_cli_refuses_bad_values_in_one_line_before_loading(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(sample, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert sample.main(["a red circle", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("minimagen-sample: error:")
    assert re.search(message, err)


def test_sample_cli_refuses_an_out_that_is_a_file_before_sampling(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sample, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "pictures").write_text("not a folder")
    assert sample.main(["a red circle", "--out", str(tmp_path / "pictures")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_every_imagen_setting_has_its_json_form_in_checkpoint_py():
    # A new Imagen setting needs its line in IMAGEN_CONFIG_FORMS, or folders saved with it are refused.
    import inspect

    from minimagen.checkpoint import IMAGEN_CONFIG_FORMS

    settings = set(inspect.signature(Imagen.__init__).parameters) - {"self", "unets"}
    assert settings == set(IMAGEN_CONFIG_FORMS)


def test_a_trainer_given_an_empty_dataset_refuses_it_before_writing_anything(tmp_path):
    from minimagen.train import TrainConfig, Trainer

    out = tmp_path / "run"
    config = TrainConfig.from_preset("tiny", out_dir=str(out), text_cache_dir=str(tmp_path / "cache"), progress=False)
    with pytest.raises(ValueError, match="length 0"):
        Trainer(config, dataset=[]).fit()
    assert not out.exists()


def test_from_pretrained_on_a_missing_device_says_so_before_loading(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal needs a machine without it")
    with pytest.raises(ValueError, match="device: CUDA is not available on this machine"):
        Imagen.from_pretrained(tmp_path / "no such folder", device="cuda")
