"""Shared fixtures: tiny models and synthetic clips, all built offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach a model hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest
from click.testing import CliRunner

from helpers import make_clip
from vidiff.cli import cli
from vidiff.models.tiny import tiny_parts
from vidiff.settings.config import Config


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


