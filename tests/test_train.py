"""The trainer: exact resume, safe checkpoints, divergence, accumulation, EMA, U-Net choice, refusals.

Every run uses the `tiny` preset (the original's BaseTest/SuperTest U-Nets at 16 -> 32 px) on a few
shapes pictures, for a handful of steps, with the offline MiniLM text encoder.
"""
import dataclasses
import json
import time

import pytest
import torch

import minimagen.train as train_module
from minimagen.checkpoint import CheckpointError
from minimagen.Imagen import Imagen
from minimagen.train import (
    CHECKPOINT_NAME,
    RunExistsError,
    StepSampler,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    main,
    read_checkpoint,
    read_checkpoint_meta,
    resolve_config,
    resolve_precision,
)
from minimagen.train.state import PREVIOUS_CHECKPOINT_NAME
from minimagen.utils import cpu_has_fast_bf16




@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("text_cache"))


def tiny(out_dir, cache_dir, **overrides) -> TrainConfig:
    settings = dict(out_dir=str(out_dir), text_cache_dir=cache_dir, data_size=16, steps=(3, 3), progress=False)
    return TrainConfig.from_preset("tiny", **{**settings, **overrides})


def fit(config) -> Trainer:
    trainer = Trainer(config)
    trainer.fit()
    return trainer


def clone_state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def snapshot(folder) -> dict:
    """Every file under folder -> its bytes (to prove nothing was written or deleted)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def losses(out_dir) -> list:
    return [(r["step"], r["unet"], r["loss"]) for r in map(json.loads, (out_dir / "log.jsonl").read_text().splitlines())]


class Crash(Exception):
    pass


needs_cpu_bf16 = pytest.mark.skipif(not cpu_has_fast_bf16(), reason="this CPU has no AMX or AVX512-BF16 instructions")


@pytest.mark.parametrize("precision", ["no", pytest.param("bf16", marks=needs_cpu_bf16)], ids=["fp32", "bf16"])
def test_resume_is_exact(tmp_path, cache_dir, monkeypatch, precision):
    # Gradient accumulation, EMA copying then averaging, and a crash in U-Net 2's block after the
    # last checkpoint, so the resumed run redoes a step and crosses no block boundary by luck.
    config = tiny(tmp_path / "full", cache_dir, grad_accum=2, checkpoint_every=2, ema_start=1, precision=precision)
    full = fit(config)

    original = Trainer.compute_loss

    def crash_in_step_6(self, unet_number, batch):
        if self.global_step == 5:
            raise Crash("simulated power cut")
        return original(self, unet_number, batch)

    monkeypatch.setattr(Trainer, "compute_loss", crash_in_step_6)
    cut_dir = tmp_path / "cut"
    with pytest.raises(Crash):
        fit(dataclasses.replace(config, out_dir=str(cut_dir)))
    monkeypatch.setattr(Trainer, "compute_loss", original)
    assert read_checkpoint_meta(cut_dir / CHECKPOINT_NAME)["steps_done"] == [3, 1]

    resumed = fit(resolve_config(dict(out_dir=str(cut_dir), resume=True)))
    assert resumed.steps_done == full.steps_done == [3, 3]
    assert_same(clone_state(resumed.imagen), clone_state(full.imagen))
    for a, b in zip(resumed.emas, full.emas):
        assert_same(clone_state(a), clone_state(b))
    for a, b in zip(resumed.optimizers, full.optimizers):
        a, b = a.state_dict(), b.state_dict()
        assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
        for index in a["state"]:
            assert_same(a["state"][index], b["state"][index])
    assert losses(cut_dir) == losses(tmp_path / "full")  # the log was trimmed and redone, not duplicated
    exported = Imagen.from_pretrained(cut_dir / "model")
    assert_same(clone_state(exported), clone_state(Imagen.from_pretrained(tmp_path / "full" / "model")))


def test_corrupt_checkpoint_is_refused_before_anything_is_lost(tmp_path, cache_dir, capsys):
    out = tmp_path / "run"
    fit(tiny(out, cache_dir, steps=(2, 1)))
    path = out / CHECKPOINT_NAME
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[-20] ^= 0xFF  # inside the tensor data: only the checksum notices
    for damaged in (good[: len(good) // 2], b"not a checkpoint at all", bytes(flipped)):
        path.write_bytes(damaged)
        before = snapshot(out)
        with pytest.raises(CheckpointError, match="corrupt|truncated|checkpoint"):
            Trainer(resolve_config(dict(out_dir=str(out), resume=True))).fit()
        assert main(["--resume", "--out", str(out), "--no-progress"]) == 2
        assert str(path) in capsys.readouterr().err
        assert snapshot(out) == before


def nan_after(monkeypatch, global_step: int):
    """Make the loss NaN in the step after `global_step` steps; returns the real compute_loss."""
    original = Trainer.compute_loss

    def nan_loss(self, unet_number, batch):
        loss = original(self, unet_number, batch)
        return loss * float("nan") if self.global_step == global_step else loss

    monkeypatch.setattr(Trainer, "compute_loss", nan_loss)
    return original


def test_nan_loss_stops_with_the_last_good_checkpoint_intact(tmp_path, cache_dir, monkeypatch, capsys):
    nan_after(monkeypatch, 2)
    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError) as info:
        fit(tiny(out, cache_dir, checkpoint_every=2))
    err = info.value
    assert (err.step, err.unet, err.checkpoint) == (3, 1, out / CHECKPOINT_NAME)
    assert "step 3" in str(err) and "U-Net 1" in str(err) and str(out / CHECKPOINT_NAME) in str(err)
    tensors, meta = read_checkpoint(out / CHECKPOINT_NAME)
    assert meta["global_step"] == 2 and meta["steps_done"] == [2, 0]
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    Imagen.from_pretrained(out / "model")  # the export of that checkpoint loads too

    # The command line says the same and exits non-zero.
    code = main(["--preset", "tiny", "--out", str(tmp_path / "cli"), "--text-cache-dir", cache_dir,
                 "--data-size", "16", "--steps", "3,3", "--checkpoint-every", "2", "--no-progress"])
    assert code == 1
    assert "diverged" in capsys.readouterr().err


def test_nan_advice_names_the_finite_checkpoints_and_its_options_work_on_resume(tmp_path, cache_dir, monkeypatch):
    original = nan_after(monkeypatch, 4)
    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError) as info:
        fit(tiny(out, cache_dir, steps=(6, 0), checkpoint_every=2))
    monkeypatch.setattr(Trainer, "compute_loss", original)
    message = str(info.value)
    last, before = read_checkpoint_meta(out / CHECKPOINT_NAME), read_checkpoint_meta(out / PREVIOUS_CHECKPOINT_NAME)
    assert (last["global_step"], before["global_step"]) == (4, 2)
    assert f"{out / CHECKPOINT_NAME} (step 4, loss {last['loss']:.4g})" in message
    assert f"{out / PREVIOUS_CHECKPOINT_NAME} (step 2, loss {before['loss']:.4g})" in message
    assert f"--resume --out {out} --lr 0.0005 --max-grad-norm 0.5" in message

    # The advice, followed: both options are accepted on --resume and take effect.
    trainer = Trainer(resolve_config(dict(out_dir=str(out), resume=True, lr=5e-4, max_grad_norm=0.5)))
    factor = trainer.schedulers[0].lr_lambdas[0](trainer.schedulers[0].last_epoch)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(5e-4 * factor)
    trainer.fit()
    saved = read_checkpoint_meta(out / CHECKPOINT_NAME)
    assert saved["steps_done"] == [6, 0] and saved["config"]["lr"] == 5e-4 and saved["config"]["max_grad_norm"] == 0.5


def test_failed_checkpoint_write_leaves_the_old_one_intact(tmp_path, cache_dir, monkeypatch):
    out = tmp_path / "run"
    fit(tiny(out, cache_dir, steps=(2, 0)))
    path = out / CHECKPOINT_NAME
    before = path.read_bytes()

    def dies_mid_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr("minimagen.checkpoint.save_file", dies_mid_write)
    with pytest.raises(OSError, match="disk full"):
        fit(resolve_config(dict(out_dir=str(out), resume=True, steps=(4, 0))))
    assert path.read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert read_checkpoint(path)[1]["steps_done"] == [2, 0]


@pytest.mark.parametrize("accum", [1, 2])
def test_grad_accumulation_matches_a_plain_loop(tmp_path, cache_dir, accum):
    """The trainer (accelerate) equals a hand-written PyTorch loop: mean of accum micro-batch
    gradients, clipped once, one optimizer and scheduler step per accum micro-batches."""
    config = tiny(tmp_path / "trainer", cache_dir, unet="1", steps=(3, 0), grad_accum=accum)
    trained = fit(config)

    ref = Trainer(dataclasses.replace(config, out_dir=str(tmp_path / "plain")))
    unet, optimizer, scheduler = ref.imagen.unets[0].train(), ref.optimizers[0], ref.schedulers[0]
    batches = iter(ref.dataloader(1))
    for _ in range(3):
        optimizer.zero_grad()
        for micro in range(accum):
            batch = next(batches)
            ref._reseed(1, micro)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=ref.precision == "bf16"):  # as the trainer
                loss = ref.imagen(batch["images"], text_embeds=batch["text_embeds"],
                                  text_masks=batch["text_masks"], unet_number=1)
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        ref.steps_done[0] += 1
    assert_same(clone_state(trained.imagen.unets[0]), clone_state(unet))
    assert trained.optimizers[0].state_dict()["state"][0]["step"].item() == 3


def test_ema_is_used_for_sampling_and_export(tmp_path, cache_dir):
    out = tmp_path / "run"
    trainer = fit(tiny(out, cache_dir, steps=(4, 3), ema_decay=0.5, ema_start=1))
    for unet, ema in zip(trainer.imagen.unets, trainer.emas):
        assert ema.n_averaged.item() > 1
        assert any(not torch.equal(p, q) for p, q in zip(unet.parameters(), ema.module.parameters()))
    exported = Imagen.from_pretrained(out / "model")
    assert_same(clone_state(exported), clone_state(trainer.ema_imagen))
    assert any(not torch.equal(v, trainer.imagen.state_dict()[k]) for k, v in exported.state_dict().items())


def test_unet_2_trains_only_unet_2(tmp_path, cache_dir):
    trainer = Trainer(tiny(tmp_path / "run", cache_dir, unet="2", steps=(3, 3)))
    first, second = clone_state(trainer.imagen.unets[0]), clone_state(trainer.imagen.unets[1])
    first_ema = clone_state(trainer.emas[0])
    trainer.fit()
    assert trainer.steps_done == [0, 3]
    assert_same(clone_state(trainer.imagen.unets[0]), first)
    assert_same(clone_state(trainer.emas[0]), first_ema)
    assert not trainer.optimizers[0].state
    assert any(not torch.equal(v, second[k]) for k, v in trainer.imagen.unets[1].state_dict().items())


def test_refuses_to_overwrite_a_run(tmp_path, cache_dir, capsys):
    out = tmp_path / "run"
    fit(tiny(out, cache_dir, steps=(1, 1)))
    before = snapshot(out)
    with pytest.raises(RunExistsError, match="--resume"):
        Trainer(tiny(out, cache_dir, steps=(1, 1)))
    assert main(["--preset", "tiny", "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(out) == before

    fit(tiny(out, cache_dir, steps=(2, 0), overwrite=True))
    assert [step for step, _, _ in losses(out)] == [1, 2]  # the old run's log is gone
    assert read_checkpoint_meta(out / CHECKPOINT_NAME)["steps_done"] == [2, 0]


def test_resume_refuses_changed_settings(tmp_path, cache_dir):
    out = tmp_path / "run"
    fit(tiny(out, cache_dir, steps=(1, 1)))
    with pytest.raises(ValueError, match="weight_decay"):
        resolve_config(dict(out_dir=str(out), resume=True, weight_decay=0.5))
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(tiny(out, cache_dir, steps=(1, 1), batch_size=2, resume=True))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(tiny(tmp_path / "empty", cache_dir, resume=True))


@pytest.mark.parametrize("argv, message", [
    (["--data", "nope"], "data must be one of"),
    (["--data", "folder:/does/not/exist"], "does not exist"),
    (["--unet", "3"], "unet must be 'all' or a U-Net number from 1 to 2"),
    (["--steps", "1,2,3"], "steps must be"),
    (["--unets", "BaseTest,Nope"], "unets must be among"),
    (["--sample-cond-scale", "3,1,1"], "sample_cond_scale must be one number or one per U-Net (2)"),
])
def test_bad_settings_fail_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["--preset", "tiny", "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv", [["--preset", "nope"], ["--no-such-flag"], ["--lr-schedule", "linear"]])
def test_bad_flags_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: minimagen-train" in capsys.readouterr().err


@pytest.mark.parametrize("setting, expected", [(None, (3.0, 1.0)), (0.0, 0.0), ((5, 2), (5, 2))])
def test_sample_grids_guide_the_base_only_unless_told_otherwise(tmp_path, cache_dir, monkeypatch, setting, expected):
    seen, real = [], Imagen.sample

    def spy(self, *args, **kwargs):  # the scale sample() will use: None means the model's recommended ones
        scales = kwargs["cond_scale"]
        seen.append(tuple(self.config["sampling"]["cond_scale"]) if scales is None else scales)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Imagen, "sample", spy)
    trainer = Trainer(tiny(tmp_path / "run", cache_dir, steps=(1, 1), sample_cond_scale=setting))
    trainer.fit()
    assert seen and all(scales == expected for scales in seen)


def test_time_limit_stops_cleanly(tmp_path, cache_dir):
    out = tmp_path / "run"
    trainer = fit(tiny(out, cache_dir, steps=(50, 50), time_limit=1e-6))
    assert trainer.steps_done == [1, 1]  # each U-Net's share of the budget ran out after one step
    assert read_checkpoint_meta(out / CHECKPOINT_NAME)["steps_done"] == [1, 1]
    Imagen.from_pretrained(out / "model")


def test_time_limit_shares_the_budget_by_steps_times_measured_seconds_per_step(tmp_path, cache_dir, monkeypatch):
    trainer = Trainer(tiny(tmp_path / "run", cache_dir, steps=(30, 10), time_limit=1.0))
    monkeypatch.setattr(trainer, "_step_cost", {1: 0.5, 2: 0.5}.get)  # base work 15 s, super-resolution 5 s
    given = {}

    def record(unet_number, deadline):
        given[unet_number] = deadline - time.monotonic()
        return True

    monkeypatch.setattr(trainer, "_train_unet", record)
    trainer.fit()
    assert given[1] == pytest.approx(45, abs=2)  # three quarters of the minute
    assert given[2] == pytest.approx(60, abs=2)  # all that is left, as the base "took" no time


def test_measuring_a_step_changes_no_weight_gradient_or_random_stream(tmp_path, cache_dir):
    trainer = Trainer(tiny(tmp_path / "run", cache_dir, random_crop_sizes=(0, 16)))
    weights, rng = clone_state(trainer.imagen), torch.get_rng_state()
    costs = [trainer._step_cost(2), trainer._step_cost(1)]
    assert all(cost > 0 for cost in costs)
    assert trainer._step_cost(2) == costs[0]  # measured once, then remembered
    assert_same(clone_state(trainer.imagen), weights)
    assert all(p.grad is None for p in trainer.imagen.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert not trainer.imagen.unets[0].training and not trainer.imagen.unets[1].training


def test_a_run_with_cropped_super_resolution_exports_a_model_of_full_size(tmp_path, cache_dir):
    out = tmp_path / "run"
    fit(tiny(out, cache_dir, random_crop_sizes=(0, 16)))
    model = Imagen.from_pretrained(out / "model")
    assert model.config["random_crop_sizes"] == (None, 16)
    images = model.sample(text_embeds=torch.randn(1, 3, model.text_embed_dim), steps=2, sampler="ddim", seed=0,
                          progress=False)
    assert images.shape == (1, 3, 32, 32)


def test_a_saved_config_from_before_random_crops_resumes_on_whole_images():
    saved = TrainConfig.from_preset("shapes").to_dict()
    del saved["random_crop_sizes"]  # what runs saved before the field existed hold
    assert TrainConfig.from_dict(saved).random_crop_sizes is None
    assert TrainConfig.from_preset("shapes").random_crop_sizes == (0, 32)


def test_the_model_carries_the_runs_recommended_guidance_and_lowres_noise_level(tmp_path, cache_dir):
    fit(tiny(tmp_path, cache_dir, steps=(1, 1), cond_scale=(4.0, 2.0), lowres_sample_noise_level=0.3))
    model = Imagen.from_pretrained(tmp_path / "model")
    assert model.config["sampling"]["cond_scale"] == [4.0, 2.0] and model.lowres_sample_noise_level == 0.3


def test_a_saved_config_from_before_recommended_guidance_resumes_with_what_its_model_had():
    saved = TrainConfig.from_preset("shapes").to_dict()
    del saved["cond_scale"], saved["lowres_sample_noise_level"]  # what runs saved before the fields existed hold
    old = TrainConfig.from_dict(saved)
    assert old.cond_scale == (3.0, 1.0) and old.lowres_sample_noise_level == 0.2


@pytest.mark.parametrize("field, value", [("cond_scale", (3.0,)), ("cond_scale", (3.0, "1")),
                                          ("lowres_sample_noise_level", 1.5)])
def test_bad_recommended_sampling_settings_are_refused_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig.from_preset("shapes", **{field: value}).validate()


def test_step_sampler_is_a_pure_function_of_position():
    whole = list(StepSampler(10, seed=3, start=0, count=35))
    assert sorted(whole[:10]) == list(range(10)) and whole[:10] != whole[10:20]  # epochs are reshuffled
    assert list(StepSampler(10, seed=3, start=17, count=18)) == whole[17:]
    assert list(StepSampler(10, seed=4, start=0, count=10)) != whole[:10]


def test_config_presets_and_cli_types():
    assert TrainConfig().unets == ("SmallBase", "SmallSuper") and TrainConfig().image_sizes == (16, 64)
    config = resolve_config(dict(preset="tiny", steps=(7,), sample_captions=("a", "b")))
    assert config.out_dir.endswith("tiny") and config.target_steps() == [7, 7]
    parser = train_module.build_parser()
    args = vars(parser.parse_args(["--steps", "3000,1000", "--adam-betas", "0.9,0.95", "--max-grad-norm", "none",
                                   "--unet", "2", "--sample-caption", "x y", "--sample-caption", "z"]))
    assert args == {"steps": (3000, 1000), "adam_betas": (0.9, 0.95), "max_grad_norm": None, "unet": "2",
                    "sample_captions": ["x y", "z"]}
    for name in train_module.PRESETS:
        TrainConfig.from_preset(name).validate()


def test_folder_and_hugging_face_data(tmp_path, cache_dir):
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    captions = ["a red picture", "a green picture", "a blue picture", "a grey picture"]
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 120)]
    lines = []
    for i, (caption, colour) in enumerate(zip(captions, colours)):
        Image.new("RGB", (40, 48), colour).save(folder / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": caption}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    trainer = fit(tiny(tmp_path / "folder_run", cache_dir, data=f"folder:{folder}", steps=(2, 1)))
    assert trainer.steps_done == [2, 1] and trainer.sample_captions() == captions

    import datasets

    ds = datasets.Dataset.from_dict({"picture": [Image.open(folder / f"{i}.png") for i in range(4)],
                                     "caption": captions})
    ds.save_to_disk(str(tmp_path / "hf"))
    trainer = fit(tiny(tmp_path / "hf_run", cache_dir, data=f"hf:{tmp_path / 'hf'}", image_column="picture",
                       caption_column="caption", steps=(1, 1), warm_cache_max_captions=2))  # 4 > 2: encode lazily
    assert trainer.steps_done == [1, 1]
    assert not any(warmed for _, warmed in trainer._datasets.values())


def test_trainer_optimizer_takes_the_same_steps_as_plain_adamw():
    from minimagen.train import make_optimizer

    config = TrainConfig.from_preset("tiny", lr=1e-2, weight_decay=0.1)
    torch.manual_seed(0)
    ours, plain = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    plain.load_state_dict(ours.state_dict())
    start = ours.weight.detach().clone()
    optimizers = [make_optimizer(ours, config),
                  torch.optim.AdamW(plain.parameters(), lr=1e-2, betas=config.adam_betas, weight_decay=0.1)]
    x = torch.randn(16, 8)
    for _ in range(5):
        for model, optimizer in zip((ours, plain), optimizers):
            optimizer.zero_grad()
            model(x).pow(2).mean().backward()
            optimizer.step()
    torch.testing.assert_close(ours.weight, plain.weight)
    assert (ours.weight - start).abs().max() > 1e-2  # five steps of lr 1e-2 did move the weights


# Precision -----------------------------------------------------------------------------------


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "no")])
def test_auto_precision_on_the_cpu_is_bf16_only_with_bf16_instructions(monkeypatch, native, expected):
    monkeypatch.setattr("minimagen.train.build.cpu_has_fast_bf16", lambda: native)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("no", torch.device("cpu")) == "no"


def test_bf16_on_a_cpu_without_bf16_instructions_is_refused_naming_the_setting(monkeypatch):
    monkeypatch.setattr("minimagen.train.build.cpu_has_fast_bf16", lambda: False)
    with pytest.raises(ValueError, match=r"precision='bf16'.*AMX or AVX512-BF16.*use precision 'no'"):
        resolve_precision("bf16", torch.device("cpu"))


@needs_cpu_bf16
def test_bf16_training_follows_the_fp32_losses_closely(tmp_path, cache_dir):
    runs = {p: fit(tiny(tmp_path / p, cache_dir, steps=(4, 4), log_every=1, precision=p)) for p in ("no", "bf16")}
    assert [t.precision for t in runs.values()] == ["no", "bf16"]
    fp32, bf16 = (losses(tmp_path / p) for p in runs)
    assert [(s, u) for s, u, _ in fp32] == [(s, u) for s, u, _ in bf16]
    for (_, _, a), (_, _, b) in zip(fp32, bf16):
        assert b == pytest.approx(a, rel=0.03)
    assert fp32 != bf16  # the bf16 run really ran in bf16
