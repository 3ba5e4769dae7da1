"""--ray's errors before any Ray runtime starts: one line, exit code 2."""

from __future__ import annotations

import sys

from click.testing import CliRunner

from helpers import write_images
from vidiff.cli import cli

ARGS = ["--model", "tiny", "--prompt", "a wooden carving", "--steps", "2", "--no-cuts"]


def test_without_ray_installed_ray_is_one_line_naming_the_extra(clips, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(out), *ARGS, "--ray", "local"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "pip install vidiff[ray]" in result.stderr
    assert not out.exists()


def test_an_unreachable_address_is_one_line_and_exit_2(clips, tmp_path):
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(out), *ARGS, "--ray", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "--ray 127.0.0.1:1" in result.stderr and "nothing answers" in result.stderr
    assert not out.exists()


def test_workers_without_ray_is_refused_on_the_command_line(clips, tmp_path):
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(tmp_path / "o.mp4"), *ARGS, "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers" in result.stderr and "--ray" in result.stderr


def test_an_image_sequence_is_refused_with_how_to_make_a_video_of_it(tmp_path):
    write_images(tmp_path / "frames", ["frame_1.png", "frame_2.png"])
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["stylize", str(tmp_path / "frames"), str(out), *ARGS, "--ray", "local"])
    assert result.exit_code == 2
    assert "video file" in result.stderr and "ffmpeg" in result.stderr
    assert not out.exists()
