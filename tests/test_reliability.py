"""No run is ever lost: --overwrite, two trainers on one folder, crashes during the export, signals,
left-over temporary files, a damaged log, a full disk, per-invocation resume options
and damaged model folders.

Every run uses the `tiny` preset for one or two steps per U-Net with the offline MiniLM encoder; only
the SIGTERM test runs a real subprocess (a signal from outside).
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from minimagen import sample
from minimagen.checkpoint import CheckpointError
from minimagen.Imagen import Imagen
from minimagen.train import (CHECKPOINT_NAME, MODEL_DIR, RunExistsError, Trainer, main,
                             read_checkpoint_meta, resolve_config)
from minimagen.train.cli import export_run
from minimagen.train.lock import RunLock, RunLockedError
from minimagen.train.state import REPLACED_DIR, set_aside_run
from minimagen.train.stops import TrainingInterrupted
from test_train import cache_dir, fit, tiny  # noqa: F401 (cache_dir: the fixture, shared)


def cli(out, cache_dir, *argv) -> int:
    return main(["--preset", "tiny", "--out", str(out), "--text-cache-dir", cache_dir, "--data-size", "16",
                 "--no-progress", *argv])


def snapshot(folder) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache_dir):
    """A finished tiny run (steps 1, 1) to copy: its folder."""
    out = tmp_path_factory.mktemp("finished") / "run"
    fit(tiny(out, cache_dir, steps=(1, 1)))
    return out


@pytest.fixture
def run(finished, tmp_path):
    """A fresh copy of the finished run."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


# Work lost 1: --overwrite -----------------------------------------------------------------------


def _empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    return ["--data", f"folder:{tmp_path / 'empty'}"]


def _bad_metadata(tmp_path):
    from PIL import Image

    (tmp_path / "bad").mkdir()
    Image.new("RGB", (32, 32), "red").save(tmp_path / "bad" / "a.png")
    (tmp_path / "bad" / "metadata.jsonl").write_text('{"file_name": "a.png", "text": 3}\n')
    return ["--data", f"folder:{tmp_path / 'bad'}"]


def _hf_at_an_image_folder(tmp_path):
    pytest.importorskip("datasets")
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (32, 32), "red").save(tmp_path / "images" / "a.png")
    return ["--data", f"hf:{tmp_path / 'images'}"]


def _encoder_not_downloaded(tmp_path):
    return ["--text-encoder", "t5_small"]  # offline (HF_HUB_OFFLINE=1) and not in the cache


@pytest.mark.parametrize("bad", [_empty_folder, _bad_metadata, _hf_at_an_image_folder, _encoder_not_downloaded],
                         ids=["empty-folder", "bad-metadata", "hf-at-image-folder", "encoder-offline"])
def test_overwrite_that_cannot_start_leaves_the_old_run_untouched(run, tmp_path, cache_dir, capsys, bad):
    before = snapshot(run)
    assert cli(run, cache_dir, "--overwrite", *bad(tmp_path)) == 2
    assert "error" in capsys.readouterr().err
    assert snapshot(run) == before


def test_overwrite_that_fails_before_its_first_checkpoint_puts_the_old_run_back(run, cache_dir, monkeypatch):
    before = snapshot(run)
    original = Trainer.compute_loss

    def crash(self, unet_number, batch):
        raise RuntimeError("simulated crash in the first step")

    monkeypatch.setattr(Trainer, "compute_loss", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        fit(tiny(run, cache_dir, overwrite=True, steps=(2, 0)))
    monkeypatch.setattr(Trainer, "compute_loss", original)
    assert snapshot(run) == before


def test_an_overwrite_killed_before_its_first_checkpoint_is_undone_on_the_next_start(run, cache_dir):
    before = snapshot(run)
    set_aside_run(run)  # what a killed --overwrite leaves: the old run in .replaced_run/, nothing new
    (run / "log.jsonl").write_text('{"step": 1, "loss": 9.0}\n')  # and maybe a line of the new run's log
    with pytest.warns(UserWarning, match="back in place"):
        trainer = Trainer(resolve_config(dict(out_dir=str(run), resume=True)))
    assert trainer.steps_done == [1, 1]
    assert snapshot(run) == before


def test_overwrite_replaces_the_old_run_once_the_new_one_has_a_checkpoint(run, cache_dir):
    fit(tiny(run, cache_dir, overwrite=True, steps=(2, 0)))
    assert not (run / REPLACED_DIR).exists()
    assert read_checkpoint_meta(run / CHECKPOINT_NAME)["steps_done"] == [2, 0]
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2]


# Work lost 2: two trainers, one folder ----------------------------------------------------------


def test_a_second_trainer_on_a_locked_run_folder_is_refused_naming_the_holder(run, cache_dir, capsys):
    lock = RunLock(run)
    lock.acquire()  # as a live trainer in another process holds it
    try:
        before = snapshot(run)
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            Trainer(resolve_config(dict(out_dir=str(run), resume=True, steps=(2, 2))))
        assert cli(run, cache_dir, "--resume", "--steps", "2,2") == 2
        assert "in use" in capsys.readouterr().err
        assert snapshot(run) == before
    finally:
        lock.release()


def test_a_stale_lock_left_by_a_killed_trainer_is_taken_over(run, cache_dir, capsys):
    (run / ".lock").write_text("pid 999999 on elsewhere, since long ago\n")  # nobody holds it
    fit(resolve_config(dict(out_dir=str(run), resume=True, steps=(2, 1))))
    assert "pid 999999" in capsys.readouterr().out
    assert not (run / ".lock").exists()


def test_two_trainers_opened_on_one_empty_folder_cannot_both_write_it(tmp_path, cache_dir):
    out = tmp_path / "run"
    first, second = Trainer(tiny(out, cache_dir, steps=(1, 1))), Trainer(tiny(out, cache_dir, steps=(1, 1)))
    first.fit()
    before = snapshot(out)
    with pytest.raises(RunExistsError, match="changed since this Trainer opened it"):
        second.fit()
    assert snapshot(out) == before


# Work lost 3: a crash during the final export ---------------------------------------------------


def _same_weights(a: Imagen, b: Imagen) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_model_killed_between_weights_and_config_is_repaired_by_resume(run, tmp_path, cache_dir):
    good = Imagen.from_pretrained(run / MODEL_DIR)
    # The weights of a newer save landed, its config.json did not.
    torch.manual_seed(1)
    Imagen.from_config(good.model_config()).save_pretrained(tmp_path / "newer")
    os.replace(tmp_path / "newer" / "model.safetensors", run / MODEL_DIR / "model.safetensors")
    with pytest.raises(CheckpointError, match="different saves"):
        Imagen.from_pretrained(run / MODEL_DIR)
    assert main(["--resume", "--out", str(run), "--no-progress"]) == 0
    assert _same_weights(Imagen.from_pretrained(run / MODEL_DIR), good)


def test_a_stale_model_is_re_exported_by_resume_of_a_finished_run(run, cache_dir, capsys):
    good = Imagen.from_pretrained(run / MODEL_DIR)
    torch.manual_seed(1)
    Imagen.from_config(good.model_config()).save_pretrained(run / MODEL_DIR)  # an older checkpoint's weights
    assert main(["--resume", "--out", str(run), "--no-progress"]) == 0
    assert "exported again" in capsys.readouterr().out
    assert _same_weights(Imagen.from_pretrained(run / MODEL_DIR), good)


def test_export_writes_the_checkpoints_ema_model(run, tmp_path):
    shutil_model = Imagen.from_pretrained(run / MODEL_DIR)
    (run / MODEL_DIR / "config.json").unlink()
    assert main(["--export", "--out", str(run)]) == 0
    assert _same_weights(Imagen.from_pretrained(run / MODEL_DIR), shutil_model)
    assert export_run(run, tmp_path / "elsewhere") == tmp_path / "elsewhere"
    assert _same_weights(Imagen.from_pretrained(tmp_path / "elsewhere"), shutil_model)


# Signals ------------------------------------------------------------------------------------------


def _signal_at_step(monkeypatch, step: int, signum):
    original = Trainer.compute_loss

    def send(self, unet_number, batch):
        if self.global_step == step:
            os.kill(os.getpid(), signum)  # arrives mid-step: the step still completes
        return original(self, unet_number, batch)

    monkeypatch.setattr(Trainer, "compute_loss", send)
    return original


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_resume_is_exact(tmp_path, cache_dir, monkeypatch):
    full = fit(tiny(tmp_path / "full", cache_dir, steps=(2, 1)))
    original = _signal_at_step(monkeypatch, 1, signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as info:
        fit(tiny(tmp_path / "cut", cache_dir, steps=(2, 1)))
    monkeypatch.setattr(Trainer, "compute_loss", original)
    assert info.value.signal == signal.SIGTERM and info.value.step == 2
    assert read_checkpoint_meta(tmp_path / "cut" / CHECKPOINT_NAME)["steps_done"] == [2, 0]
    resumed = fit(resolve_config(dict(out_dir=str(tmp_path / "cut"), resume=True)))
    assert _same_weights(resumed.imagen, full.imagen)


def test_ctrl_c_stops_training_the_same_way(tmp_path, cache_dir, monkeypatch):
    _signal_at_step(monkeypatch, 0, signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        fit(tiny(tmp_path / "run", cache_dir, steps=(3, 0)))
    assert info.value.signal == signal.SIGINT and info.value.step == 1
    assert read_checkpoint_meta(tmp_path / "run" / CHECKPOINT_NAME)["steps_done"] == [1, 0]


def test_the_cli_says_how_to_resume_after_sigterm_and_exits_143(tmp_path, cache_dir, monkeypatch, capsys):
    _signal_at_step(monkeypatch, 1, signal.SIGTERM)
    assert cli(tmp_path / "run", cache_dir, "--steps", "3,0") == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"minimagen-train: interrupted; the last checkpoint is {tmp_path / 'run' / CHECKPOINT_NAME} "
                       f"(step 2); continue with --resume --out {tmp_path / 'run'}")


def test_sigterm_from_outside_ends_a_real_training_process_with_a_checkpoint(tmp_path, cache_dir):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "minimagen.train", "--preset", "tiny", "--out", str(out),
                             "--text-cache-dir", cache_dir, "--data-size", "16", "--steps", "100000,0",
                             "--no-progress"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 120
    while not ((out / "log.jsonl").exists() and len((out / "log.jsonl").read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert f"continue with --resume --out {out}" in err.strip().splitlines()[-1]
    steps = read_checkpoint_meta(out / CHECKPOINT_NAME)["steps_done"][0]
    logged = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps >= 2 and logged[-1] == steps  # nothing lost: the checkpoint is the last step taken


def test_ctrl_c_in_minimagen_sample_keeps_the_pictures_already_made(tmp_path, monkeypatch, capsys):
    class Halfway:
        device = torch.device("cpu")
        calls = 0

        def sample(self, texts, **kwargs):
            Halfway.calls += 1
            if Halfway.calls == 3:
                raise KeyboardInterrupt
            return torch.rand(len(texts), 3, 8, 8)

    monkeypatch.setattr(sample, "load_model", lambda *a, **k: Halfway())
    out = tmp_path / "pictures"
    assert sample.main(["a red circle", "a blue square", "--num-images", "2", "--batch-size", "1", "--out", str(out),
                        "--no-progress"]) == 130
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("*.png")) == ["0_a-red-circle.png", "1_a-red-circle.png", "grid.png"]
    assert "kept the 2 of 4 pictures" in captured.err
    assert str(out / "grid.png") in captured.out


# Left-overs, damaged logs, full disks ----------------------------------------------------------------


def test_temporary_files_of_a_killed_run_are_removed_on_the_next_start(run):
    left = [run / ".checkpoint.safetensors.x1y2.tmp", run / MODEL_DIR / ".model.safetensors.abc.tmp"]
    for path in left:
        path.write_bytes(b"half a file")
    fit(resolve_config(dict(out_dir=str(run), resume=True, steps=(2, 1))))
    assert not any(path.exists() for path in left)


def test_a_damaged_last_log_line_does_not_block_resume(run):
    log = run / "log.jsonl"
    log.write_text(log.read_text() + '{"step": 3, "unet": 1, "lo')  # a power cut mid-line
    with pytest.warns(UserWarning, match=f"{log}:3 is damaged"):
        fit(resolve_config(dict(out_dir=str(run), resume=True, steps=(2, 1))))
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3]


def test_a_full_disk_is_one_sentence_naming_the_folder_and_the_space(run, monkeypatch, capsys):
    def no_space(tensors, filename, metadata=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("minimagen.checkpoint.save_file", no_space)
    before = (run / CHECKPOINT_NAME).read_bytes()
    assert main(["--resume", "--out", str(run), "--steps", "2,1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"the disk holding {run} is full" in err and "MB are free" in err and "needs about" in err
    assert (run / CHECKPOINT_NAME).read_bytes() == before


# Per-invocation options, the final report ---------------------------------------------------------


def test_unet_and_time_limit_given_on_one_resume_apply_to_that_invocation_only(run, capsys):
    assert main(["--resume", "--out", str(run), "--steps", "2,2", "--unet", "2", "--time-limit", "5",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "U-Net 1 1/2, U-Net 2 2/2" in out and "U-Net 1 not finished" in out
    config = resolve_config(dict(out_dir=str(run), resume=True))
    assert (config.unet, config.time_limit, config.steps) == ("all", None, (2, 2))
    assert main(["--resume", "--out", str(run), "--no-progress"]) == 0
    assert "done (U-Net 1 2/2, U-Net 2 2/2)" in capsys.readouterr().out


# Model folders -----------------------------------------------------------------------------------


def test_flipped_bytes_in_a_model_folder_are_refused_not_sampled(run, capsys):
    weights = run / MODEL_DIR / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-7] ^= 0x7F  # inside the tensor data, where only the checksum notices
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        Imagen.from_pretrained(run / MODEL_DIR)
    assert sample.main(["a red circle", "--model", str(run / MODEL_DIR), "--out", str(run / "s")]) == 2
    assert "checksum" in capsys.readouterr().err
