"""Model and system faults: NaN from a half-precision VAE, out of memory, a full disk, a failing ffmpeg."""

from __future__ import annotations

import errno
import logging

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vidiff.cli import cli
from vidiff.settings.config import Config
from vidiff.errors import VidiffError
from vidiff.models.loading import load_parts
from vidiff.pipelines.img2img import Img2ImgProcessor

# one frame at a time, so that a fault can strike a chosen frame
ARGS = ["--model", "tiny", "--prompt", "x", "--steps", "2", "--strength", "0.5", "--max-side", "64", "--batch-size", "1"]


def _nan_when_half(vae):
    """Make the VAE's decode overflow, as SD's VAE can in fp16, unless it runs in fp32."""
    decode = vae.decode

    def overflowing(z, *args, **kwargs):
        out = decode(z, *args, **kwargs)
        if vae.dtype != torch.float32:
            out[0].fill_(float("nan"))
        return out

    vae.decode = overflowing


def test_nan_in_half_precision_decode_is_retried_in_fp32(caplog):
    parts = load_parts("tiny", device="cpu", dtype="bf16")
    _nan_when_half(parts.vae)
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="vidiff"):
        result = Img2ImgProcessor(parts, Config(prompt="x", steps=2, strength=0.5))(frame, 0)
    assert result.image.shape == frame.shape and result.image.std() > 0
    assert parts.vae.dtype == torch.float32 and parts.unet.dtype == torch.bfloat16
    assert any("decoding in fp32" in r.message for r in caplog.records)


def test_nan_that_fp32_cannot_fix_is_a_clear_error():
    parts = load_parts("tiny", device="cpu", dtype="fp32")
    parts.vae.decode = lambda z, *a, **k: (torch.full((1, 3, 48, 64), float("nan")),)
    frame = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(VidiffError, match="NaN"):
        Img2ImgProcessor(parts, Config(prompt="x", steps=2, strength=0.5))(frame, 0)


def _fails_at_frame_3_then_resumes(clip, out, monkeypatch, cls, name, error) -> str:
    """Run with `cls.name` raising `error` at frame 3, check nothing is at OUTPUT, then run again
    without the fault and check it resumes at frame 3. Returns the failed run's stderr (quiet)."""
    original = getattr(cls, name)

    def failing(self, *args, **kwargs):
        index = args[1] if name == "process" else args[0]
        if index == 3:
            raise error
        return original(self, *args, **kwargs)

    args = ["stylize", str(clip), str(out), *ARGS]
    monkeypatch.setattr(cls, name, failing)
    failed = CliRunner().invoke(cli, [*args, "-q"])
    assert failed.exit_code == 2 and "Traceback" not in failed.stderr
    assert not out.exists()
    monkeypatch.setattr(cls, name, original)
    resumed = CliRunner().invoke(cli, args)
    assert resumed.exit_code == 0, resumed.stderr
    assert "resuming at frame 3" in resumed.stderr
    return failed.stderr


def test_out_of_memory_keeps_the_work_and_says_what_lowers_memory(clips, tmp_path, monkeypatch):
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory")
    said = _fails_at_frame_3_then_resumes(clips["plain"], tmp_path / "out.mp4", monkeypatch, Img2ImgProcessor, "process", oom)
    assert "--max-side" in said and "resume" in said


def test_full_disk_is_one_clear_line_and_resumable(clips, tmp_path, monkeypatch):
    from vidiff.io.workfolder import ShotFolder

    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.mp4.vidiff" / "pending-000003.png"))
    said = _fails_at_frame_3_then_resumes(clips["plain"], tmp_path / "out.mp4", monkeypatch, ShotFolder, "save_frame", full)
    lines = [line for line in said.splitlines() if line.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "resume" in lines[0]


def test_a_failing_ffmpeg_leaves_no_output(clips, tmp_path, monkeypatch):
    import vidiff.io.writer as writer

    monkeypatch.setattr(writer, "ffmpeg_exe", lambda: "false")  # exits at once, as a crashing encoder would
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(out), *ARGS, "-q"])
    assert result.exit_code == 2 and "ffmpeg" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
