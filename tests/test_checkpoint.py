"""Specification of minimagen.checkpoint: save_pretrained / from_pretrained, the file format,
and clear errors for missing, truncated, corrupt or future checkpoints."""
import json
import os
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from minimagen.checkpoint import (
    CONFIG_NAME,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    CheckpointError,
    atomic_write,
)
from minimagen.Imagen import Imagen
from minimagen.Unet import BaseTest, SuperTest

D = 8




def trained_looking_cascade(seed=0, **kwargs) -> Imagen:
    """A tiny cascade whose weights all differ from a fresh initialisation (so loading must matter)."""
    torch.manual_seed(seed)
    imagen = Imagen((BaseTest(), SuperTest()), image_sizes=(16, 32), timesteps=4, text_embed_dim=D,
                    pred_objectives=("eps", "v"), noise_schedules=("cosine", "linear"), **kwargs)
    with torch.no_grad():
        for p in imagen.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return imagen


def text_embeds(b=2):
    return torch.randn(b, 3, D, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def saved(tmp_path):
    imagen = trained_looking_cascade()
    folder = tmp_path / "model"
    imagen.save_pretrained(folder)
    return imagen, folder


def test_round_trip_gives_identical_weights_and_samples(saved):
    imagen, folder = saved
    loaded = Imagen.from_pretrained(folder)
    original_state, loaded_state = imagen.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    for key in original_state:
        assert torch.equal(original_state[key], loaded_state[key]), key
    a = imagen.sample(text_embeds=text_embeds(), seed=0, progress=False, cond_scale=2.0)
    b = loaded.sample(text_embeds=text_embeds(), seed=0, progress=False, cond_scale=2.0)
    assert torch.equal(a, b)


def test_round_trip_keeps_the_configuration(saved):
    imagen, folder = saved
    loaded = Imagen.from_pretrained(folder)
    assert loaded.config == imagen.config
    assert [u.config for u in loaded.unets] == [u.config for u in imagen.unets]
    assert [u.lowres_cond for u in loaded.unets] == [False, True]
    assert [s.name for s in loaded.noise_schedulers] == ["cosine", "linear"]
    assert not loaded.training, "from_pretrained returns the model in eval mode"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_a_different_seed_of_the_loaded_model_differs(saved):
    """Guards the round-trip test: samples do depend on the seed, so equality above means something."""
    _, folder = saved
    loaded = Imagen.from_pretrained(folder)
    a = loaded.sample(text_embeds=text_embeds(), seed=0, progress=False)
    b = loaded.sample(text_embeds=text_embeds(), seed=1, progress=False)
    assert not torch.equal(a, b)


def test_folder_holds_a_versioned_json_config_and_safetensors_weights(saved):
    _, folder = saved
    names = sorted(os.listdir(folder))
    assert names == sorted([CONFIG_NAME, WEIGHTS_NAME]), "no temporary files are left behind"
    assert CONFIG_NAME == "config.json" and WEIGHTS_NAME == "model.safetensors"
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["format_version"] == FORMAT_VERSION == 2
    assert config["format"] == "minimagen"
    assert config["imagen"]["image_sizes"] == [16, 32]
    assert len(config["unets"]) == 2


def test_weights_are_safetensors_not_pickle(saved):
    imagen, folder = saved
    raw = (folder / WEIGHTS_NAME).read_bytes()
    assert not raw.startswith(b"PK\x03\x04"), "torch.save's zip container"
    assert not raw.startswith(b"\x80"), "a pickle protocol header"
    (header_len,) = struct.unpack("<Q", raw[:8])  # safetensors: u64 little-endian header length, then JSON
    header = json.loads(raw[8:8 + header_len])
    assert set(header) - {"__metadata__"} == set(imagen.state_dict())
    assert load_file(str(folder / WEIGHTS_NAME)).keys() == imagen.state_dict().keys()


def test_saving_in_float16_halves_the_file_and_loads_back_as_float32(tmp_path):
    imagen = trained_looking_cascade()
    imagen.save_pretrained(tmp_path / "fp32")
    imagen.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    full = (tmp_path / "fp32" / WEIGHTS_NAME).stat().st_size
    half = (tmp_path / "fp16" / WEIGHTS_NAME).stat().st_size
    assert 0.45 < half / full < 0.55
    assert {v.dtype for v in load_file(str(tmp_path / "fp16" / WEIGHTS_NAME)).values()} == {torch.float16}
    loaded = Imagen.from_pretrained(tmp_path / "fp16")
    for key, value in imagen.state_dict().items():
        got = loaded.state_dict()[key]
        assert got.dtype == torch.float32, key
        torch.testing.assert_close(got, value, rtol=1e-3, atol=1e-4, msg=key)


def test_saving_twice_overwrites(tmp_path):
    folder = tmp_path / "model"
    trained_looking_cascade(seed=0).save_pretrained(folder)
    second = trained_looking_cascade(seed=1)
    second.save_pretrained(folder)
    loaded = Imagen.from_pretrained(folder)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in second.state_dict().items())


# Errors --------------------------------------------------------------------------------------


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_truncated_weights_raise_checkpoint_error(saved):
    _, folder = saved
    path = folder / WEIGHTS_NAME
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        Imagen.from_pretrained(folder)
    assert WEIGHTS_NAME in str(info.value)


def test_weights_truncated_inside_the_header_raise_checkpoint_error(saved):
    _, folder = saved
    path = folder / WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Imagen.from_pretrained(folder)


def test_random_bytes_as_weights_raise_checkpoint_error(saved):
    _, folder = saved
    path = folder / WEIGHTS_NAME
    size = path.stat().st_size
    torch.manual_seed(0)
    path.write_bytes(bytes(torch.randint(0, 256, (size,), dtype=torch.uint8).tolist()))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Imagen.from_pretrained(folder)


def test_missing_weights_raise_checkpoint_error(saved):
    _, folder = saved
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match="not found"):
        Imagen.from_pretrained(folder)


def test_corrupt_json_raises_checkpoint_error(saved):
    _, folder = saved
    path = folder / CONFIG_NAME
    path.write_text(path.read_text()[:40])
    with pytest.raises(CheckpointError, match="corrupt") as info:
        Imagen.from_pretrained(folder)
    assert CONFIG_NAME in str(info.value)


def test_unknown_format_version_raises_checkpoint_error(saved):
    _, folder = saved
    path = folder / CONFIG_NAME
    config = json.loads(path.read_text())
    config["format_version"] = 99
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="format_version") as info:
        Imagen.from_pretrained(folder)
    assert "99" in str(info.value)


def test_a_format_1_folder_loads_with_the_default_sampling_settings(saved):
    """Folders saved before the recommended sampling settings existed (format_version 1, no "sampling")
    keep loading, and sample with the defaults."""
    imagen, folder = saved
    path = folder / CONFIG_NAME
    config = json.loads(path.read_text())
    config["format_version"] = 1
    del config["imagen"]["sampling"]
    path.write_text(json.dumps(config))
    loaded = Imagen.from_pretrained(folder)
    assert loaded.config["sampling"] == {"sampler": "dpmpp_2m", "steps": [4, 4], "cond_scale": [3.0, 1.0]}
    assert torch.equal(loaded.state_dict()["unets.0.final_conv.weight"], imagen.state_dict()["unets.0.final_conv.weight"])


def test_the_recommended_sampling_settings_are_saved_and_loaded(tmp_path):
    sampling = {"sampler": "ddpm", "steps": [3, 2], "cond_scale": [5.0, 1.5]}
    trained_looking_cascade(sampling=sampling).save_pretrained(tmp_path)
    assert json.loads((tmp_path / CONFIG_NAME).read_text())["imagen"]["sampling"] == sampling
    assert Imagen.from_pretrained(tmp_path).config["sampling"] == sampling


def test_a_changed_setting_is_what_gets_saved(tmp_path):
    """The config is the one record: setting an attribute changes what is trained and what is saved."""
    imagen = trained_looking_cascade()
    imagen.cond_drop_prob = 0.25
    assert imagen.config["cond_drop_prob"] == 0.25
    imagen.save_pretrained(tmp_path)
    assert Imagen.from_pretrained(tmp_path).cond_drop_prob == 0.25


def test_a_config_that_is_not_a_minimagen_config_raises_checkpoint_error(saved):
    _, folder = saved
    (folder / CONFIG_NAME).write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(CheckpointError, match="not a MinImagen model config"):
        Imagen.from_pretrained(folder)


def test_weights_that_do_not_match_the_config_raise_checkpoint_error(tmp_path):
    trained_looking_cascade().save_pretrained(tmp_path / "a")
    torch.manual_seed(0)
    other = Imagen((BaseTest(dim=16), SuperTest()), image_sizes=(16, 32), timesteps=4, text_embed_dim=D)
    other.save_pretrained(tmp_path / "b")
    # Same save id and checksum as folder b's weights, so only the shapes disagree.
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    config["weights_sha256"] = json.loads((tmp_path / "b" / "config.json").read_text())["weights_sha256"]
    (tmp_path / "a" / "config.json").write_text(json.dumps(config))
    save_file(load_file(tmp_path / "b" / WEIGHTS_NAME), tmp_path / "a" / WEIGHTS_NAME,
              metadata={"save_id": config["save_id"]})
    with pytest.raises(CheckpointError, match="shape"):
        Imagen.from_pretrained(tmp_path / "a")


def test_missing_folder_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Imagen.from_pretrained(tmp_path / "does_not_exist")


def test_folder_without_config_raises_checkpoint_error(saved):
    _, folder = saved
    (folder / CONFIG_NAME).unlink()
    with pytest.raises(CheckpointError, match="not found"):
        Imagen.from_pretrained(folder)


# Atomic writes -------------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_on_success(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("old")

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("new")

    atomic_write(path, write)
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["file.txt"]


def test_atomic_write_leaves_the_old_file_intact_if_writing_fails(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("old")

    def crash(tmp):
        with open(tmp, "w") as f:
            f.write("half-writ")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, crash)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["file.txt"], "the temporary file is removed"


def test_failed_save_keeps_the_previous_checkpoint_loadable(saved, monkeypatch):
    imagen, folder = saved
    import minimagen.checkpoint as checkpoint

    def broken_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        trained_looking_cascade(seed=1).save_pretrained(folder)
    monkeypatch.undo()
    loaded = Imagen.from_pretrained(folder)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in imagen.state_dict().items())


def test_weights_and_config_from_different_saves_raise_checkpoint_error(tmp_path):
    # A crash between the two renames of a save leaves new weights beside an old config.
    first, second = tmp_path / "first", tmp_path / "second"
    trained_looking_cascade(seed=0).save_pretrained(first)
    trained_looking_cascade(seed=1).save_pretrained(second)
    os.replace(second / "model.safetensors", first / "model.safetensors")
    with pytest.raises(CheckpointError, match="different saves"):
        Imagen.from_pretrained(first)


def test_saved_files_get_the_usual_permissions_not_private_ones(tmp_path):
    old = os.umask(0o022)
    try:
        Imagen((BaseTest(), SuperTest()), image_sizes=(16, 32), text_embed_dim=8).save_pretrained(tmp_path / "m")
    finally:
        os.umask(old)
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "m" / name).stat().st_mode & 0o777 == 0o644
