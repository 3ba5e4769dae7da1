"""Runs into each form of OUTPUT: a picture from a picture, numbered PNGs, WebM with its audio, a GIF;
resumed after a stop as a video is; and the forms that don't fit the input refused before any work."""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import vidiff
from helpers import make_clip, read_frames, stream_codecs
from vidiff.cli import cli

SETTINGS = dict(model="tiny", prompt="a wooden carving", steps=2, strength=0.5, max_side=64, batch_size=1,
                noise="warped", flow_blend=0.3)  # fmt: skip
OPTIONS = ["--model", "tiny", "--prompt", "a wooden carving", "--steps", "2", "--strength", "0.5", "--max-side", "64",
           "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("outputs") / "clip.mp4", seconds=8 / 24, audio="stereo")


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("picture") / "rabbit.png"
    y, x = np.mgrid[0:48, 0:64]
    cv2.imwrite(str(path), np.stack([x * 4, y * 5, np.full_like(x, 128)], -1).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def parts():
    return vidiff.load_parts(vidiff.Config(**SETTINGS))


def _pngs(folder) -> dict[str, np.ndarray]:
    return {name: cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED) for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("name, depth", [("out.png", "8"), ("out.png", "16"), ("out.jpg", "8"), ("out.webp", "8")])
def test_a_picture_in_gives_the_picture_restyled(picture, tmp_path, name, depth):
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["stylize", str(picture), str(out), *OPTIONS, "--bit-depth", depth,
                                      "--save-frames", str(tmp_path / "saved")])  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    read = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert read.shape == (48, 64, 3) and read.dtype == (np.uint16 if depth == "16" else np.uint8)
    stylized = cv2.imread(str(tmp_path / "saved" / "frame_000000.png"))
    assert not np.array_equal(stylized, cv2.imread(str(picture)))  # restyled, not copied
    if name == "out.png":
        assert np.array_equal(read, stylized.astype(np.uint16) * 257 if depth == "16" else stylized)
    assert sorted(os.listdir(tmp_path)) == sorted([name, "saved"])  # no work folder or temporary file left


def test_a_sequence_has_every_frame_exactly_in_a_folder_it_makes(clip, tmp_path):
    pattern = tmp_path / "frames" / "out_%05d.png"
    result = CliRunner().invoke(cli, ["stylize", str(clip), str(pattern), *OPTIONS, "--save-frames",
                                      str(tmp_path / "saved")])  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    written, saved = _pngs(tmp_path / "frames"), _pngs(tmp_path / "saved")
    assert list(written) == [f"out_{index:05d}.png" for index in range(len(read_frames(clip)))]
    assert all(np.array_equal(a, b) for a, b in zip(written.values(), saved.values(), strict=True))


def test_webm_is_vp9_with_the_audio_as_opus(clip, tmp_path):
    out = tmp_path / "out.webm"
    result = CliRunner().invoke(cli, ["stylize", str(clip), str(out), *OPTIONS])
    assert result.exit_code == 0, (result.output, result.exception)
    assert stream_codecs(out) == ("vp9", "opus")
    assert len(read_frames(out)) == len(read_frames(clip))


@pytest.mark.parametrize("name", ["frames/out_%05d.png", "out.gif", "out.mov"])
def test_a_stopped_run_resumes_into_the_same_output(clip, parts, tmp_path, monkeypatch, name):
    # segments of 3 frames: the stop and the resume cross committed segments and a pending one, in a few frames
    monkeypatch.setattr("vidiff.run.SEGMENT_FRAMES", 3)
    monkeypatch.setattr("vidiff.io.workfolder.SEGMENT_FRAMES", 3)
    extra = dict(codec="prores") if name.endswith(".mov") else {}
    reference = tmp_path / "reference" / name
    reference.parent.mkdir(parents=True)
    vidiff.stylize_video(clip, reference, parts=parts, **SETTINGS, **extra)

    out = tmp_path / "resumed" / name
    out.parent.mkdir(parents=True)
    cancel = threading.Event()

    def stop_after_five(progress):
        if progress.done == 5:
            cancel.set()

    with pytest.raises(vidiff.Interrupted):
        vidiff.stylize_video(clip, out, parts=parts, on_progress=stop_after_five, cancel=cancel, **SETTINGS, **extra)
    assert not os.path.exists(out.parent / "out_00000.png") and not out.exists()
    work = next(out.parent.glob("*.vidiff"))
    segments = sorted(path.suffix for path in work.rglob("segment-*"))
    assert segments == [".mkv" if name.endswith((".png", ".gif")) else ".mov"]  # frames 0-2; 3-4 wait as PNGs

    seen = []
    vidiff.stylize_video(clip, out, parts=parts, on_progress=seen.append, **SETTINGS, **extra)
    assert seen[0].index == 5  # nothing stylised twice
    if name.endswith(".png"):
        resumed, whole = _pngs(out.parent), _pngs(reference.parent)
        assert list(resumed) == list(whole)
        assert all(np.array_equal(a, b) for a, b in zip(resumed.values(), whole.values()))
    else:
        resumed, whole = read_frames(out), read_frames(reference)
        assert len(resumed) == len(whole) == len(read_frames(clip))
        assert all(np.array_equal(a, b) for a, b in zip(resumed, whole))
    assert not list(out.parent.glob("*.vidiff"))


@pytest.mark.parametrize(
    "output, options, words",
    [
        ("out.png", [], "write them all as"),
        ("out.mp4", ["--codec", "prores"], "--codec prores"),
        ("out.webm", ["--codec", "h265"], ".webm holds VP9 video; leave --codec out"),
        ("out.gif", ["--bit-depth", "16"], "--bit-depth 16"),
        ("frames/out_%05d.jpg", [], "out_%05d.png"),
    ],
)
def test_a_form_that_does_not_fit_is_one_line_exit_2_and_nothing_written(clip, tmp_path, output, options, words):
    result = CliRunner().invoke(cli, ["stylize", str(clip), str(tmp_path / output), *OPTIONS, *options])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "output, options, words",
    [("out.mov", ["--codec", "prores"], "ProRes 422 HQ video, any audio copied"),
     ("out.webm", [], "VP9 video, any audio as Opus"),
     ("f/out_%05d.png", ["--bit-depth", "16"], "numbered 16-bit PNG pictures, no audio")],
)  # fmt: skip
def test_dry_run_says_what_output_will_be_and_writes_nothing(clip, tmp_path, output, options, words):
    result = CliRunner().invoke(cli, ["stylize", str(clip), str(tmp_path / output), *OPTIONS, *options, "--dry-run"])
    assert result.exit_code == 0, (result.output, result.exception)
    line = next(line for line in result.stdout.splitlines() if line.startswith("output"))
    assert words in line
    assert os.listdir(tmp_path) == []
