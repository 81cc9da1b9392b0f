"""The command lines end to end (train a tiny model, sample from it), pretrained loading, and utils."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from minimagen import pretrained
from minimagen.Imagen import Imagen
from minimagen.sample import main as sample_main
from minimagen.train import main as train_main
from minimagen.utils import get_device, image_grid, save_images, set_seed, slugify




@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run through `minimagen-train` (in-process): returns its output folder."""
    root = tmp_path_factory.mktemp("cli")
    out = root / "run"
    code = train_main(["--preset", "tiny", "--out", str(out), "--text-cache-dir", str(root / "cache"),
                       "--data-size", "16", "--steps", "2,2", "--sample-every", "2", "--checkpoint-every", "2",
                       "--no-progress"])
    assert code == 0
    return out


def test_train_cli_writes_model_log_samples_and_checkpoint(trained):
    assert (trained / "model" / "config.json").is_file() and (trained / "model" / "model.safetensors").is_file()
    assert (trained / "checkpoint.safetensors").is_file()
    records = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [r["unet"] for r in records] == [1, 1, 2, 2]
    assert {"step", "unet", "loss", "lr", "images_per_s", "time"} <= set(records[0])
    samples = sorted(p.name for p in (trained / "samples").glob("*.png"))
    assert samples == ["step_000002.png", "step_000004.png"]
    assert Image.open(trained / "samples" / "step_000004.png").size[0] >= 4 * 128  # 4 captioned cells a row


def test_sample_cli_writes_one_png_per_image_and_a_grid(trained, tmp_path, capsys):
    out = tmp_path / "samples"
    code = sample_main(["--model", str(trained / "model"), "a red circle on a blue background", "a green square",
                        "--steps", "5", "--num-images", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["0_a-red-circle-on-a-blue-background.png", "1_a-red-circle-on-a-blue-background.png",
                     "2_a-green-square.png", "3_a-green-square.png", "grid.png"]
    assert Image.open(out / "0_a-red-circle-on-a-blue-background.png").size == (32, 32)
    printed = capsys.readouterr().out.split()
    assert printed[-1] == str(out / "grid.png") and len(printed) == 5

    # Same seed, same pictures.
    again = tmp_path / "again"
    sample_main(["--model", str(trained / "model"), "a red circle on a blue background", "a green square",
                 "--steps", "5", "--num-images", "2", "--out", str(again), "--no-progress"])
    assert (again / "3_a-green-square.png").read_bytes() == (out / "3_a-green-square.png").read_bytes()


def _picture(folder):
    return np.asarray(Image.open(next(Path(folder).glob("0_*.png"))))


def test_sample_cli_uses_the_models_recommended_settings_for_what_it_is_not_told(trained, tmp_path):
    """The model folder's config["sampling"] fills in --cond-scale and --sampler when they are not given."""
    model = Imagen.from_pretrained(trained / "model")
    model.config["sampling"]["cond_scale"] = [5.0, 2.0]
    model.save_pretrained(tmp_path / "model")
    common = ["--model", str(tmp_path / "model"), "a red circle on a blue background", "--steps", "2", "--no-progress"]
    assert sample_main([*common, "--out", str(tmp_path / "default")]) == 0
    recommended = model.config["sampling"]["sampler"]
    assert sample_main([*common, "--cond-scale", "5,2", "--sampler", recommended, "--out", str(tmp_path / "same")]) == 0
    assert sample_main([*common, "--cond-scale", "3,1", "--out", str(tmp_path / "other")]) == 0
    assert np.array_equal(_picture(tmp_path / "default"), _picture(tmp_path / "same"))
    assert not np.array_equal(_picture(tmp_path / "default"), _picture(tmp_path / "other"))


def test_sample_cli_refuses_a_cond_scale_that_is_not_numbers(capsys):
    with pytest.raises(SystemExit) as info:
        sample_main(["--cond-scale", "high", "a cat"])
    assert info.value.code == 2
    assert "--cond-scale" in capsys.readouterr().err


def test_sample_cli_guidance_interval_guides_only_inside_it(trained, tmp_path, capsys):
    common = ["--model", str(trained / "model"), "a red circle on a blue background", "--steps", "4", "--cond-scale",
              "5,1", "--no-progress"]
    assert sample_main([*common, "--out", str(tmp_path / "all")]) == 0
    assert sample_main([*common, "--guidance-interval", "0,1", "--out", str(tmp_path / "same")]) == 0
    assert sample_main([*common, "--guidance-interval", "0,0", "--out", str(tmp_path / "none")]) == 0
    assert np.array_equal(_picture(tmp_path / "all"), _picture(tmp_path / "same"))
    assert not np.array_equal(_picture(tmp_path / "all"), _picture(tmp_path / "none"))
    capsys.readouterr()
    assert sample_main([*common, "--guidance-interval", "0.8,0.2", "--out", str(tmp_path / "bad")]) == 2
    assert "guidance_interval" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        sample_main(["--guidance-interval", "high", "a cat"])
    assert info.value.code == 2


def test_sample_cli_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert sample_main(["--model", str(tmp_path / "missing"), "a cat"]) == 2
    err = capsys.readouterr().err
    assert "model folder not found" in err and "Traceback" not in err

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    assert sample_main(["--model", str(broken), "a cat"]) == 2
    assert "corrupt" in capsys.readouterr().err

    if "nope" not in pretrained.available():
        assert sample_main(["--model", "nope", "a cat"]) == 2
        assert "minimagen-train --preset shapes" in capsys.readouterr().err


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "minimagen.train", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    assert "usage: minimagen-train" in result.stdout and "--resume" in result.stdout


def test_pretrained_missing_and_export(trained, tmp_path, monkeypatch):
    assert isinstance(pretrained.available(), list)
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "pretrained")
    (tmp_path / "pretrained").mkdir()
    with pytest.raises(FileNotFoundError, match="minimagen-train --preset shapes --out runs/shapes"):
        pretrained.load_pretrained("shapes")
    assert pretrained.available() == []

    pretrained.export(trained / "model", "shapes")
    assert pretrained.available() == ["shapes"]
    half = pretrained.load_pretrained("shapes")
    full = Imagen.from_pretrained(trained / "model")
    for key, value in full.state_dict().items():
        loaded = half.state_dict()[key]
        assert loaded.dtype == torch.float32  # stored in fp16, loaded as fp32
        assert torch.equal(loaded, value.half().float())


def test_image_grid_puts_captions_under_images(tmp_path):
    images = torch.zeros(3, 3, 16, 16)
    images[:, 0] = 1.0  # red squares
    grid = image_grid(images, ["a red square", "another red square, with a long caption", "c"], nrow=2,
                      min_size=64)
    assert grid.width == 2 * (64 + 2) + 2 and grid.height > 2 * (64 + 2)
    assert grid.getpixel((3, 3)) == (255, 0, 0)  # the image sits at the top of its cell
    with pytest.raises(ValueError, match="one caption per image"):
        image_grid(images, ["only one"])
    paths = save_images(images, tmp_path, ["a.png", "b.png", "c.png"])
    assert [p.name for p in paths] == ["a.png", "b.png", "c.png"] and Image.open(paths[0]).size == (16, 16)


def test_seed_device_and_slug():
    set_seed(3)
    a = torch.rand(3)
    set_seed(3)
    assert torch.equal(a, torch.rand(3))
    assert get_device().type in ("cpu", "cuda", "mps")
    assert slugify("A red circle, on blue!") == "a-red-circle-on-blue"
    assert slugify("???") == "image"
