"""Shared fixtures: tiny models and synthetic clips, all built offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach a model hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from vidiff.cli import cli
from vidiff.models.tiny import tiny_parts
from vidiff.io.ffmpeg import ffmpeg_exe
from vidiff.settings.config import Config


def make_clip(
    path: Path,
    size: str = "64x48",
    rate: str = "24",
    seconds: float = 0.5,
    audio: str | None = None,
    pix_fmt: str = "yuv420p",
    source: str = "testsrc2",
) -> Path:
    """A synthetic clip from ffmpeg's test sources; audio: None, 'mono' or 'stereo' (AAC)."""
    width, height = size.split("x")
    # the test sources round odd sizes to even ones: draw larger, then scale to the exact size
    command = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"{source}=size=320x240:rate={rate}"]
    if audio:
        channels = "1" if audio == "mono" else "2"
        command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-ac", channels, "-c:a", "aac"]
    command += ["-t", str(seconds), "-vf", f"scale={width}:{height},setsar=1"]
    command += ["-c:v", "libx264", "-pix_fmt", pix_fmt, str(path)]
    subprocess.run(command, check=True)
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    """All frames of a video as RGB arrays (for small test clips only)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def write_static_clip(path: Path, frames: int = 4, size=(64, 48), jitter: float = 0.0, seed: int = 0) -> Path:
    """A clip of one still picture; `jitter` adds fresh sensor-like noise to each frame."""
    from vidiff.io.writer import VideoWriter

    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    still = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, 128)], -1).astype(np.float32)
    with VideoWriter(path, size, 24, crf=0) as writer:
        for _ in range(frames):
            frame = still + rng.normal(0, jitter, still.shape) if jitter else still
            writer.write(frame.clip(0, 255).astype(np.uint8))
    return path


@pytest.fixture(scope="session")
def tiny():
    """The tiny random SD model, built once for the session (the stylizer never changes it)."""
    parts = tiny_parts()
    for module in (parts.vae, parts.text_encoder, parts.unet):
        module.eval().requires_grad_(False)
    return parts


@pytest.fixture(scope="session")
def tiny_xl():
    """The tiny random SDXL model, built once for the session."""
    parts = tiny_parts(kind="sdxl")
    for module in (parts.vae, parts.text_encoder, parts.text_encoder_2, parts.unet):
        module.eval().requires_grad_(False)
    return parts


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """Synthetic clips shared by the tests (never modified by them)."""
    folder = tmp_path_factory.mktemp("clips")
    return {
        "plain": make_clip(folder / "plain.mp4", size="64x48", rate="24", seconds=0.25),
        "ntsc_odd_stereo": make_clip(
            folder / "ntsc odd stereo.mp4", size="203x117", rate="30000/1001", seconds=0.3, audio="stereo",
            pix_fmt="yuv444p",
        ),
        "silent": make_clip(folder / "silent.mp4", size="64x48", rate="25", seconds=0.2),
    }


class FakeResult:
    def summary(self) -> str:
        return "fake run done"


@pytest.fixture
def run_configs(monkeypatch, tmp_path):
    """Replace the run with a fake that records each Config the command line builds."""
    received = []

    def fake_stylize_video(input, output, config=None, **kwargs):
        received.append((input, output, config))
        return FakeResult()

    monkeypatch.setattr("vidiff.run.stylize_video", fake_stylize_video)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Config:
        result = CliRunner().invoke(cli, ["stylize", "in.mp4", "out.mp4", *args])
        assert result.exit_code == 0, (result.output, result.exception)
        assert "fake run done" in result.stdout
        assert len(received) == 1
        input, output, config = received.pop()
        assert (input, output) == ("in.mp4", "out.mp4")
        assert isinstance(config, Config)
        return config

    return run


def tiny_controlnet(unet, seed: int = 0):
    """A ControlNet made from a tiny UNet (as diffusers' from_unet makes them), its zero-initialised
    output convolutions randomised: a fresh ControlNet adds nothing, and a test must see it act."""
    import torch
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))
    generator = torch.Generator().manual_seed(seed)
    zeroed = [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for module in zeroed:
            for parameter in module.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return net.eval().requires_grad_(False)


def write_tiny_lora(folder: Path, kind: str = "sd1", seed: int = 0) -> Path:
    """A random LoRA on the attention projections of the tiny model of `kind`, as diffusers saves one."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = tiny_parts(kind=kind).unet
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # init_lora_weights=False: both LoRA matrices random, so that it changes the output
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                    init_lora_weights=False))  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))
    return folder / "pytorch_lora_weights.safetensors"
