"""Whole runs: `vidiff stylize` and `vidiff demo` end to end, the Python API, determinism."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from fractions import Fraction

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from helpers import read_frames, write_static_clip
from vidiff import Config, stylize_video
from vidiff.cli import cli
from vidiff.settings.config import RULES, ConfigError
from vidiff.io.ffmpeg import audio_streams
from vidiff.io.reader import probe

FAST = ["--model", "tiny", "--steps", "4", "--strength", "0.5", "--prompt", "a wooden carving"]


def test_stylize_keeps_frame_count_fps_and_stereo_audio(clips, tmp_path):
    source = clips["ntsc_odd_stereo"]  # 203x117, 4:4:4, 30000/1001 fps, stereo AAC
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["stylize", str(source), str(out), *FAST, "--max-side", "128"])
    assert result.exit_code == 0, result.output + result.stderr
    info = probe(out)
    assert info.fps == Fraction(30000, 1001)
    assert (info.width, info.height) == (128, 72)
    assert len(read_frames(out)) == len(read_frames(source)) == 9
    streams = audio_streams(out)
    assert len(streams) == 1 and "stereo" in streams[0]
    assert "9 frames" in result.stdout and str(out) in result.stdout


def test_stylize_trims_and_saves_lossless_frames(clips, tmp_path):
    out, frames_dir = tmp_path / "out.mkv", tmp_path / "frames"
    result = CliRunner().invoke(
        cli,
        ["stylize", str(clips["ntsc_odd_stereo"]), str(out), *FAST, "--max-side", "64",
         "--start", "0.1", "--duration", "0.2", "--save-frames", str(frames_dir), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    names = sorted(os.listdir(frames_dir))
    assert names == [f"frame_{i:06d}.png" for i in range(6)]  # 0.2 s at 29.97 fps
    assert len(read_frames(out)) == 6
    assert audio_streams(out)  # the audio is cut, not dropped
    png = cv2.imread(str(frames_dir / names[0]))
    assert png.shape == (40, 64, 3)


def test_same_settings_give_identical_pngs(tmp_path, tiny):
    source = write_static_clip(tmp_path / "still.mp4", frames=3, jitter=8)
    runs = []
    for run in range(2):
        frames_dir = tmp_path / f"frames{run}"
        stylize_video(
            source, tmp_path / f"out{run}.mp4", parts=tiny, prompt="oil painting", steps=4, strength=0.6,
            blend=0.3, noise="per-frame", save_frames=str(frames_dir), max_side=64,
        )  # fmt: skip
        runs.append([(frames_dir / n).read_bytes() for n in sorted(os.listdir(frames_dir))])
    assert len(runs[0]) == 3 and runs[0] == runs[1]


def test_api_returns_a_summary_and_takes_a_config(clips, tmp_path, tiny):
    config = Config(prompt="claymation", steps=3, strength=0.7, max_side=64)
    result = stylize_video(clips["silent"], tmp_path / "out.mp4", config, parts=tiny, max_frames=2)
    assert result.frames == 2 and result.size == (64, 48) and result.seconds > 0
    assert audio_streams(tmp_path / "out.mp4") == []


def test_api_output_frames_match_the_stylizer(clips, tmp_path, tiny):
    # the saved PNGs are the stylizer's frames; the video holds them up to H.264's loss
    frames_dir = tmp_path / "frames"
    stylize_video(clips["plain"], tmp_path / "o.mp4", parts=tiny, prompt="x", steps=2, strength=0.5,
                  max_side=64, max_frames=3, save_frames=str(frames_dir), crf=0)  # fmt: skip
    saved = [cv2.cvtColor(cv2.imread(str(frames_dir / n)), cv2.COLOR_BGR2RGB) for n in sorted(os.listdir(frames_dir))]
    encoded = read_frames(tmp_path / "o.mp4")
    assert len(saved) == len(encoded) == 3
    # yuv420p subsamples colour, so compare the mean error, which stays small for a faithful encode
    assert all(np.abs(a.astype(int) - b.astype(int)).mean() < 12 for a, b in zip(saved, encoded))


def test_demo_runs_offline(tmp_path):
    out = tmp_path / "demo.mp4"
    result = CliRunner().invoke(cli, ["demo", str(out)])
    assert result.exit_code == 0, result.stderr
    assert len(read_frames(out)) == 48
    assert audio_streams(out)
    assert str(out) in result.stdout
    # beside it, source | result; and the demo model follows its source (the random tiny model's
    # output is its noise, whatever the picture): the brightness of each half goes together
    shown = read_frames(tmp_path / "demo.preview.mp4")
    width = read_frames(out)[0].shape[1]
    assert len(shown) == 48 and shown[0].shape[1] == 2 * width and audio_streams(tmp_path / "demo.preview.mp4")
    for both in shown[::16]:
        luma = [cv2.GaussianBlur(cv2.cvtColor(half, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 2).ravel()
                for half in (both[:, :width], both[:, width:])]  # fmt: skip
        assert np.corrcoef(*luma)[0, 1] > 0.3


def test_python_dash_m_vidiff(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vidiff", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "vidiff" in done.stdout


def test_every_config_field_has_a_rule_and_a_cli_option():
    names = {f.name for f in fields(Config)}
    assert set(RULES) == names
    options = {p.name for p in cli.commands["stylize"].params}
    assert names <= options


@pytest.mark.parametrize("field, bad", [("strength", 1.01), ("steps", 0), ("blend", 1.0), ("max_side", 7),
                                        ("crf", 52), ("noise", "random"), ("scheduler", "heun")])  # fmt: skip
def test_config_rejects_out_of_range_values(field, bad):
    with pytest.raises(ConfigError, match=rf"^{field} "):
        Config(prompt="x").replace(**{field: bad}).validate()


def test_config_rejects_strength_that_runs_no_step():
    with pytest.raises(Exception, match="raise strength or steps"):
        Config(prompt="x", strength=0.05, steps=10).validate()


@pytest.mark.parametrize("name", ["-leading dash.mp4", "quote's \"double\".mp4", "ünïcødé 视频.mkv"])
def test_awkward_file_names_work(clips, tmp_path, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = tmp_path / f"in {name}"
    source.write_bytes(clips["ntsc_odd_stereo"].read_bytes())
    result = CliRunner().invoke(cli, ["stylize", *FAST, "--max-side", "64", "-q", "--", source.name, name])
    assert result.exit_code == 0, result.stderr
    assert len(read_frames(tmp_path / name)) == 9 and audio_streams(tmp_path / name)
    assert sorted(os.listdir(tmp_path)) == sorted([source.name, name])


def test_start_past_the_end_is_refused_before_any_work(clips, tmp_path):
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(out), *FAST, "--start", "60"])
    assert result.exit_code == 2 and "lower --start" in result.stderr
    assert os.listdir(tmp_path) == []  # no OUTPUT, no work folder
