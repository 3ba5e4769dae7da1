"""Resume: an interrupted or killed run continues where it stopped and gives the same video."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import make_clip, read_frames
from vidiff.cli import cli
from vidiff.io.workfolder import SEGMENT_FRAMES

# every temporal tool that carries state from frame to frame, so a resume has to restore it all
SETTINGS = ["--model", "tiny", "--prompt", "a wooden carving", "--steps", "2", "--strength", "0.5",
            "--max-side", "64", "--blend", "0.3", "--flow-blend", "0.3", "--fusion", "0.5", "--noise", "warped",
            "--color-match", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """Longer than one segment, so resumes cross a segment boundary."""
    folder = tmp_path_factory.mktemp("resume")
    frames = SEGMENT_FRAMES + 14
    return make_clip(folder / "long.mp4", size="64x48", rate="24", seconds=frames / 24, audio="stereo")


CROSS = ["--cross-frame-attn"]  # its memory is saved at segments and on Ctrl-C, not every frame


@pytest.fixture(scope="module", params=[[], CROSS], ids=["plain", "cross-frame-attn"])
def variant(request):
    return request.param


@pytest.fixture(scope="module")
def reference(long_clip, variant, tmp_path_factory):
    """An uninterrupted run: its decoded frames and its PNGs."""
    folder = tmp_path_factory.mktemp("reference")
    out, frames_dir = folder / "out.mp4", folder / "frames"
    args = ["stylize", str(long_clip), str(out), *SETTINGS, *variant, "--save-frames", str(frames_dir)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.stderr
    assert not (folder / "out.mp4.vidiff").exists()  # the work folder goes once the video is done
    return read_frames(out), _pngs(frames_dir)


def _pngs(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def _same_as_reference(out, frames_dir, reference) -> None:
    video, pngs = reference
    assert _pngs(frames_dir) == pngs
    resumed = read_frames(out)
    assert len(resumed) == len(video)
    assert all(np.array_equal(a, b) for a, b in zip(resumed, video))


@pytest.mark.parametrize("stop_after", [3, SEGMENT_FRAMES + 2])
def test_ctrl_c_saves_and_the_same_command_resumes_identically(
    long_clip, variant, reference, tmp_path, monkeypatch, stop_after
):
    from vidiff.pipelines.img2img import Img2ImgProcessor

    out, frames_dir = tmp_path / "out.mp4", tmp_path / "frames"
    args = ["stylize", str(long_clip), str(out), *SETTINGS, *variant, "--save-frames", str(frames_dir)]
    original = Img2ImgProcessor.process

    def ctrl_c_during(self, frames, index, state=None):
        if index == stop_after - 1:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, arriving mid-frame
        return original(self, frames, index, state)

    monkeypatch.setattr(Img2ImgProcessor, "process", ctrl_c_during)
    stopped = CliRunner().invoke(cli, args)
    assert stopped.exit_code == 130
    assert "run the same command again to resume" in stopped.stderr
    assert not out.exists() and (tmp_path / "out.mp4.vidiff").is_dir()
    assert len(os.listdir(frames_dir)) == stop_after  # the frame in progress was finished

    monkeypatch.setattr(Img2ImgProcessor, "process", original)
    resumed = CliRunner().invoke(cli, [arg for arg in args if arg != "-q"])
    assert resumed.exit_code == 0, resumed.stderr
    assert f"resuming at frame {stop_after} of" in resumed.stderr
    _same_as_reference(out, frames_dir, reference)
    assert not (tmp_path / "out.mp4.vidiff").exists()


def _run_until_killed(args, frames_dir, frames: int) -> None:
    """Start vidiff in its own process and SIGKILL it once `frames` PNGs exist."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "vidiff", *args], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if frames_dir.is_dir() and len(os.listdir(frames_dir)) >= frames:
            break
        time.sleep(0.01)
    assert process.poll() is None, f"vidiff ended before it could be killed: {process.stderr.read()}"
    process.kill()
    process.wait()


@pytest.mark.parametrize("kill_at", [2, SEGMENT_FRAMES - 1, SEGMENT_FRAMES + 5])
def test_sigkill_then_resume_gives_the_uninterrupted_video(long_clip, variant, reference, tmp_path, kill_at):
    out, frames_dir = tmp_path / "out.mp4", tmp_path / "frames"
    args = ["stylize", str(long_clip), str(out), *SETTINGS, *variant, "--save-frames", str(frames_dir)]
    _run_until_killed(args, frames_dir, kill_at)
    assert not out.exists()
    resumed = CliRunner().invoke(cli, [arg for arg in args if arg != "-q"])
    assert resumed.exit_code == 0, resumed.stderr
    # per frame without cross-frame attention; from the last whole segment with it
    if not variant or kill_at > SEGMENT_FRAMES:
        assert "resuming at frame" in resumed.stderr
    _same_as_reference(out, frames_dir, reference)


def test_resume_says_where_it_continues(long_clip, tmp_path, monkeypatch):
    from vidiff.pipelines.img2img import Img2ImgProcessor

    out = tmp_path / "out.mp4"
    args = ["stylize", str(long_clip), str(out), *SETTINGS[:-1]]  # not quiet: the note is printed
    original = Img2ImgProcessor.process
    seen = []

    def ctrl_c_at_five(self, frames, index, state=None):
        seen.append(index)
        if index == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, frames, index, state)

    monkeypatch.setattr(Img2ImgProcessor, "process", ctrl_c_at_five)
    assert CliRunner().invoke(cli, args).exit_code == 130
    seen.clear()
    resumed = CliRunner().invoke(cli, args)
    assert resumed.exit_code == 0
    assert f"resuming at frame 5 of {SEGMENT_FRAMES + 14}" in resumed.stderr
    assert seen[0] == 5  # the first five frames were not stylised again


def test_changed_settings_or_restart_discard_the_old_work(long_clip, tmp_path, monkeypatch):
    from vidiff.pipelines.img2img import Img2ImgProcessor

    out = tmp_path / "out.mp4"
    args = ["stylize", str(long_clip), str(out), *SETTINGS]
    original = Img2ImgProcessor.process
    seen, stop = [], [True]

    def ctrl_c_at_three(self, frame, index, state=None):
        seen.append(index)
        if index == 2 and stop[0]:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, frame, index, state)

    monkeypatch.setattr(Img2ImgProcessor, "process", ctrl_c_at_three)
    assert CliRunner().invoke(cli, args).exit_code == 130
    seen.clear()
    stop[0] = False
    changed = CliRunner().invoke(cli, [*args[:-1], "--seed", "7", "--max-frames", "4"])
    assert changed.exit_code == 0, changed.stderr
    assert "discarded the unfinished work" in changed.stderr and seen[0] == 0

    out.unlink()
    stop[0] = True
    assert CliRunner().invoke(cli, args).exit_code == 130  # stopped again after frame 3
    seen.clear()
    stop[0] = False
    restarted = CliRunner().invoke(cli, [*args, "--restart"])  # the same settings, started over
    assert restarted.exit_code == 0 and seen[0] == 0
