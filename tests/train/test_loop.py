"""Training on the tiny models: the loss falls, the files load in diffusers and in vidiff, a run
stopped or killed resumes to the same weights, and a LoRA of a flat colour pulls stylised frames to it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import load_file

from helpers import read_frames
from vidiff.cli import cli
from vidiff.errors import Interrupted
from vidiff.io.writer import VideoWriter
from vidiff.models.loading import load_parts
from vidiff.models.tiny import TRAINED_TINY, tiny_parts
from vidiff.train.config import TrainConfig
from vidiff.train.data import DataSet, bucketed, scan_folder
from vidiff.train.export import save_lora
from vidiff.train.loop import Trainer, checkpoint_path, train_lora
from vidiff.train.report import loss_plot_path, samples_folder

TRAINED = TRAINED_TINY  # follows its source, and learns in few steps where the random tiny model barely does
RED = (220, 60, 40)  # the colour of the red_pictures fixture (RGB)
FAST = dict(model="tiny", token="<red>", resolution=64, checkpoint_every=0)


def eval_loss(trainer: Trainer, data: DataSet) -> float:
    """The loss on fixed batches, VAE samples, noise and timesteps: comparable before and after training."""
    with torch.no_grad():
        return float(np.mean([trainer.loss(data.batch(step), 1000 + step).item() for step in range(8)]))


def test_the_loss_falls(red_pictures):
    # the trained tiny model: the random one's loss stays near 1 whatever it sees
    parts = load_parts(str(TRAINED), "cpu", "fp32")
    config = TrainConfig(**{**FAST, "model": str(TRAINED)}, steps=40, lr=3e-3, rank=4).validate()
    data = DataSet(bucketed(scan_folder(red_pictures, "<red>"), 64, 16), 1, 1, 0, True)
    trainer = Trainer(parts, config)
    before = eval_loss(trainer, data)
    for step in range(config.steps):
        trainer.step(data.batch(step), step)
    after = eval_loss(trainer, data)
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
def test_both_formats_load_in_diffusers_and_vidiff_as_trained(tmp_path, red_pictures, kind):
    trained = tiny_parts(kind=kind)
    model = "tiny" if kind == "sd1" else "tiny-sdxl"
    train_lora(red_pictures, tmp_path / "style.safetensors", parts=trained, **{**FAST, "model": model}, steps=3,
               lr=1e-2, rank=4, text_encoder=True)  # fmt: skip
    save_lora(trained, tmp_path / "kohya.safetensors", "kohya")
    # Kohya's names for the text encoders: lora_te for SD 1.x/2.x's one, lora_te1 and lora_te2 for SDXL's two
    prefixes = {key.split("_text_model_")[0] for key in load_file(tmp_path / "kohya.safetensors") if "_te" in key}
    assert prefixes == ({"lora_te1", "lora_te2"} if kind == "sdxl" else {"lora_te"})
    assert all(key.startswith(("lora_unet_", "lora_te")) for key in load_file(tmp_path / "kohya.safetensors"))
    assert all(key.startswith(("unet.", "text_encoder.text_model.", "text_encoder_2.text_model."))
               for key in load_file(tmp_path / "style.safetensors"))  # fmt: skip

    sample = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    tokens = trained.tokenizer("<red>", padding="max_length", max_length=77, return_tensors="pt").input_ids

    def outputs(parts):
        with torch.no_grad():
            text = parts.text_encoder(tokens)[0]
            hidden = torch.cat([text, text], -1) if kind == "sdxl" else text
            extra = {"text_embeds": torch.ones(1, 32), "time_ids": torch.ones(1, 6) * 64} if kind == "sdxl" else None
            return text, parts.unet(sample, 500, hidden, added_cond_kwargs=extra).sample

    want_text, want_unet = outputs(trained)
    base_text, base_unet = outputs(tiny_parts(kind=kind))
    assert not torch.allclose(want_unet, base_unet, atol=1e-4) and not torch.allclose(want_text, base_text, atol=1e-4)
    pipeline = StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline
    for name in ("style", "kohya"):
        file = tmp_path / f"{name}.safetensors"
        fresh = tiny_parts(kind=kind)  # diffusers' own loader
        pipe_parts = dict(vae=fresh.vae, text_encoder=fresh.text_encoder, tokenizer=fresh.tokenizer, unet=fresh.unet,
                          scheduler=None)  # fmt: skip
        if kind == "sdxl":
            pipe = pipeline(text_encoder_2=fresh.text_encoder_2, tokenizer_2=fresh.tokenizer_2, **pipe_parts)
        else:
            pipe = pipeline(safety_checker=None, feature_extractor=None, requires_safety_checker=False, **pipe_parts)
        pipe.load_lora_weights(str(file))
        for parts in (fresh, load_parts(model, "cpu", "fp32", lora=(str(file),))):  # diffusers, then vidiff (fused)
            text, unet = outputs(parts)
            torch.testing.assert_close(text, want_text, atol=1e-5, rtol=1e-4, msg=f"{name} text encoder")
            torch.testing.assert_close(unet, want_unet, atol=1e-5, rtol=1e-4, msg=f"{name} UNet")


def test_a_stopped_or_killed_run_resumes_to_the_same_weights(tmp_path, red_pictures, monkeypatch):
    settings = dict(**FAST, steps=7, lr=1e-2, rank=4, text_encoder=True, batch_size=2)
    train_lora(red_pictures, tmp_path / "whole.safetensors", **settings)

    # stopped (Ctrl-C, or a UI's stop button) after step 3: a checkpoint at 3, nothing at OUT
    out = tmp_path / "parts.safetensors"
    cancel = threading.Event()
    step = Trainer.step

    def stop_at_three(self, batch, index):
        if index == 2:
            cancel.set()
        return step(self, batch, index)

    monkeypatch.setattr(Trainer, "step", stop_at_three)
    with pytest.raises(Interrupted, match="step 3 of 7"):
        train_lora(red_pictures, out, **{**settings, "checkpoint_every": 2}, cancel=cancel)
    assert checkpoint_path(out).exists() and not out.exists()

    # killed during step 6 (nothing saved then): the checkpoint of step 4 stands
    def killed_at_six(self, batch, index):
        if index == 5:
            raise KeyboardInterrupt
        return step(self, batch, index)

    monkeypatch.setattr(Trainer, "step", killed_at_six)
    with pytest.raises(KeyboardInterrupt):
        train_lora(red_pictures, out, **{**settings, "checkpoint_every": 2})
    assert not out.exists()
    monkeypatch.setattr(Trainer, "step", step)
    result = train_lora(red_pictures, out, **{**settings, "checkpoint_every": 2})
    assert result.resumed_at == 4 and len(result.losses) == 7
    assert not checkpoint_path(out).exists()

    whole, resumed = load_file(tmp_path / "whole.safetensors"), load_file(out)
    assert whole.keys() == resumed.keys() and any("text_encoder" in key for key in whole)
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, red_pictures, caplog):
    out = tmp_path / "style.safetensors"
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Interrupted):
        train_lora(red_pictures, out, **FAST, steps=3, cancel=cancel)
    result = train_lora(red_pictures, out, **{**FAST, "rank": 2}, steps=3)
    assert result.resumed_at == 0


def test_train_then_stylize_pulls_frames_towards_the_colour(tmp_path, red_pictures):
    """The issue's end-to-end: `vidiff train`, then `vidiff stylize --lora`. On the trained tiny model
    (random weights would learn too slowly to show it) a LoRA of red pictures makes a grey clip redder."""
    grey = tmp_path / "grey.mp4"
    with VideoWriter(grey, (64, 64), 24, crf=0) as writer:
        for _ in range(2):
            writer.write(np.full((64, 64, 3), 128, np.uint8))
    style = tmp_path / "red.safetensors"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(red_pictures), str(style), "--model", str(TRAINED), "--token", "<red>",
                                 "--steps", "60", "--lr", "1e-2", "--rank", "4", "--resolution", "64",
                                 "--sample-every", "30", "--sample-steps", "2", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"--lora {style}" in result.stdout
    assert loss_plot_path(style).stat().st_size > 0
    assert sorted(p.name for p in samples_folder(style).iterdir()) == ["step-000030.png", "step-000060.png"]

    means = {}
    for name, extra in (("plain", []), ("lora", ["--lora", str(style)])):
        out = tmp_path / f"{name}.mp4"
        result = runner.invoke(cli, ["stylize", str(grey), str(out), "--model", str(TRAINED), "--prompt", "a picture, <red>",
                                     "--strength", "0.9", "--steps", "4", "--quiet", *extra])  # fmt: skip
        assert result.exit_code == 0, result.output
        means[name] = np.mean(read_frames(out), axis=(0, 1, 2))
    distance = {name: np.linalg.norm(mean - np.array(RED)) for name, mean in means.items()}
    assert distance["lora"] < distance["plain"] - 15, means


def test_gradient_checkpointing_trains_the_same_weights(tmp_path, red_pictures):
    """It recomputes activations instead of keeping them (on by default on a GPU): the gradients must not change."""
    for name, checkpointing in (("kept", False), ("recomputed", True)):
        train_lora(red_pictures, tmp_path / f"{name}.safetensors", **FAST, steps=2, lr=1e-2, rank=4, text_encoder=True,
                   gradient_checkpointing=checkpointing)  # fmt: skip
    kept, recomputed = load_file(tmp_path / "kept.safetensors"), load_file(tmp_path / "recomputed.safetensors")
    for key in kept:
        torch.testing.assert_close(recomputed[key], kept[key], atol=1e-6, rtol=1e-5, msg=key)
    assert any(not torch.equal(value, torch.zeros_like(value)) for key, value in kept.items() if "lora_B" in key)


def test_a_v_prediction_model_trains_against_the_velocity(tmp_path, red_pictures):
    """SD 2.x's 768 models predict v: the target comes from the model's scheduler config."""
    epsilon, velocity = tiny_parts(), tiny_parts()
    velocity.scheduler_config = {**velocity.scheduler_config, "prediction_type": "v_prediction"}
    data = DataSet(bucketed(scan_folder(red_pictures, "<red>"), 64, 16), 1, 1, 0, True)
    config = TrainConfig(**FAST, steps=1).validate()
    with torch.no_grad():
        losses = [Trainer(parts, config).loss(data.batch(0), 5).item() for parts in (epsilon, velocity)]
    # the same prediction, noise and timestep: only the target differs (v = α·ε − σ·x0)
    assert losses[0] != losses[1]
    fresh = tiny_parts()
    fresh.scheduler_config = velocity.scheduler_config
    result = train_lora(red_pictures, tmp_path / "v.safetensors", parts=fresh, **FAST, steps=2)
    assert all(np.isfinite(result.losses))


def test_ctrl_c_then_kill_9_then_the_same_command_gives_the_same_weights(tmp_path, red_pictures):
    """The command stopped by Ctrl-C (exit 130, a checkpoint), then resumed and killed with kill -9,
    then run once more, writes the file an uninterrupted run writes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    train_lora(red_pictures, tmp_path / "whole.safetensors", **FAST, steps=20, lr=1e-2, rank=4)
    out = tmp_path / "stopped.safetensors"
    command = [sys.executable, "-m", "vidiff", "train", str(red_pictures), str(out), "--model", "tiny", "--token",
               "<red>", "--resolution", "64", "--steps", "20", "--lr", "1e-2", "--rank", "4", "--checkpoint-every", "1"]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def start_and_wait_for_a_new_checkpoint() -> subprocess.Popen:
        before = checkpoint_path(out).stat().st_mtime_ns if checkpoint_path(out).exists() else None
        process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if checkpoint_path(out).exists() and checkpoint_path(out).stat().st_mtime_ns != before:
                break
            time.sleep(0.01)
        return process

    process = start_and_wait_for_a_new_checkpoint()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "the checkpoint is saved: run the same command to resume" in stderr, stderr
    process = start_and_wait_for_a_new_checkpoint()
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert checkpoint_path(out).exists() and not out.exists()

    resumed = CliRunner().invoke(cli, command[3:])  # the same command, in this process: one start-up less
    assert resumed.exit_code == 0, resumed.output
    assert "resuming at step" in resumed.stderr
    whole, again = load_file(tmp_path / "whole.safetensors"), load_file(out)
    for key in whole:
        assert torch.equal(whole[key], again[key]), key


def test_a_damaged_checkpoint_is_not_resumed(tmp_path, red_pictures, caplog):
    out = tmp_path / "style.safetensors"
    checkpoint_path(out).write_bytes(b"not a checkpoint")
    result = train_lora(red_pictures, out, **FAST, steps=2)
    assert result.resumed_at == 0 and out.exists() and not checkpoint_path(out).exists()
    assert "could not be read" in caplog.text


def test_the_loss_chart_draws_the_losses():
    from vidiff.train.report import PLOT_SIZE, draw_loss_plot, smoothed

    falling = draw_loss_plot([1.0 / (1 + step) for step in range(50)])
    assert falling.shape == (PLOT_SIZE[1], PLOT_SIZE[0], 3)
    blue = (falling[..., 0] > 150) & (falling[..., 2] < 60)  # the moving average's pixels
    rows = np.nonzero(blue)[0]
    columns = np.nonzero(blue)[1]
    # a falling loss: the line's left end is higher on the picture than its right end
    assert rows[columns < columns.min() + 20].mean() < rows[columns > columns.max() - 20].mean()
    assert smoothed([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # debiased: no pull towards 0
