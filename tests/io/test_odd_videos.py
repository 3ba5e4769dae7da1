"""Odd but valid inputs run end to end: sizes, frame rates, rotation, audio layouts, pixel formats,
containers, image sequences, and frames a decoder can't read.

Every input is made by ffmpeg here, a few frames long, and goes through the whole command line;
what comes out is read back with OpenCV and checked: frame count, size, frame rate, audio streams.
"""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from helpers import clip_args, damaged_clip, ffmpeg, read_frames, write_images
from vidiff.cli import cli
from vidiff.io.ffmpeg import audio_streams, ffmpeg_exe
from vidiff.io.reader import DEFAULT_IMAGE_FPS, VideoReader, _decoded_frames, fit_size, image_sequence, input_identity, probe

MAX_SIDE = 64
FAST = ["--model", "tiny", "--prompt", "x", "--steps", "2", "--strength", "0.5", "--max-side", str(MAX_SIDE)]


def x264(pix_fmt: str = "yuv420p") -> list[str]:
    return ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix_fmt]


def stylize(source: Path | str, output: Path, *options: str, quiet: bool = True):
    """Run `vidiff stylize` in-process; the CliRunner result."""
    args = ["stylize", str(source), str(output), *FAST, *options] + (["-q"] if quiet else [])
    return CliRunner().invoke(cli, args)


def stylized(source: Path | str, output: Path, *options: str) -> list[np.ndarray]:
    """Stylise `source` into `output`, which must succeed; the output's frames."""
    result = stylize(source, output, *options)
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "Traceback" not in result.output
    return read_frames(output)


def fps_of(path: Path) -> float:
    capture = cv2.VideoCapture(str(path))
    try:
        return capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()


def sizes(frames: list[np.ndarray]) -> set[tuple[int, int]]:
    return {(frame.shape[1], frame.shape[0]) for frame in frames}


# --- sizes and lengths ---


def test_single_frame(tmp_path):
    source = tmp_path / "one.mp4"
    ffmpeg(*clip_args("64x48", frames=1), *x264(), source)
    frames = stylized(source, tmp_path / "out.mp4")
    assert len(frames) == 1 and sizes(frames) == {(64, 48)}


def test_16x16(tmp_path):
    source = tmp_path / "small.mp4"
    ffmpeg(*clip_args("16x16", frames=2), *x264(), source)
    frames = stylized(source, tmp_path / "out.mp4")
    assert len(frames) == 2 and sizes(frames) == {(16, 16)}


def test_4k_is_scaled_to_max_side(tmp_path):
    source = tmp_path / "uhd.mp4"
    ffmpeg(*clip_args("3840x2160", frames=1), *x264(), source)
    frames = stylized(source, tmp_path / "out.mp4")
    assert len(frames) == 1 and sizes(frames) == {fit_size(3840, 2160, MAX_SIDE)}


def test_variable_frame_rate(tmp_path):
    # 4 frames at 24 fps, then 3 at 8 fps, kept with their own timestamps
    source = tmp_path / "vfr.mp4"
    graph = ("[0:v]scale=64:48,setsar=1,trim=end_frame=4[a];[1:v]scale=64:48,setsar=1,trim=end_frame=3[b];"
             "[a][b]concat=n=2:v=1[v]")  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=8",
           "-filter_complex", graph, "-map", "[v]", "-fps_mode", "vfr", *x264(), source)  # fmt: skip
    capture = cv2.VideoCapture(str(source))
    stamps = []
    while capture.grab():
        stamps.append(capture.get(cv2.CAP_PROP_POS_MSEC))
    capture.release()
    gaps = np.diff(stamps)
    assert len(stamps) == 7 and gaps.max() > 2 * gaps.min()  # the source really is variable

    out = tmp_path / "out.mp4"
    frames = stylized(source, out)
    assert len(frames) == 7 and sizes(frames) == {(64, 48)}
    # constant out: the average rate, between the slowest and the fastest part of the source
    assert 8 <= fps_of(out) <= 24


def test_rotation_metadata_comes_out_upright(tmp_path, monkeypatch):
    # a landscape picture with four different quadrants, stored sideways as phones do
    width, height = 64, 48
    picture = np.zeros((height, width, 3), np.uint8)
    picture[: height // 2, : width // 2] = (230, 30, 30)
    picture[: height // 2, width // 2 :] = (30, 230, 30)
    picture[height // 2 :, : width // 2] = (30, 30, 230)
    picture[height // 2 :, width // 2 :] = (230, 230, 30)
    cv2.imwrite(str(tmp_path / "picture.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    stored = tmp_path / "stored.mp4"
    ffmpeg("-loop", "1", "-i", tmp_path / "picture.png", "-frames:v", 2, *x264("yuv444p"), stored)
    source = tmp_path / "phone.mp4"
    ffmpeg("-display_rotation", 90, "-i", stored, "-c", "copy", source)  # 90° counter-clockwise on display

    from vidiff.pipelines.img2img import Img2ImgProcessor

    fed, original = [], Img2ImgProcessor.process

    def recording(self, frames, *args, **kwargs):
        fed.extend(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(Img2ImgProcessor, "process", recording)
    frames = stylized(source, tmp_path / "out.mp4")

    assert len(frames) == 2 and sizes(frames) == {(48, 64)}  # portrait
    upright = np.rot90(picture, 1)  # np.rot90 turns counter-clockwise, like the display matrix
    for frame in fed:
        assert frame.shape == upright.shape
        for rows in (slice(0, 32), slice(32, 64)):
            for cols in (slice(0, 24), slice(24, 48)):
                # inner parts of each quadrant: chroma subsampling blurs the edges
                inner = (slice(rows.start + 4, rows.stop - 4), slice(cols.start + 4, cols.stop - 4))
                assert np.abs(frame[inner].mean((0, 1)) - upright[inner].mean((0, 1))).max() < 12


# --- audio ---


def test_no_audio(tmp_path):
    source = tmp_path / "silent.mp4"
    ffmpeg(*clip_args(frames=2), *x264(), source)
    out = tmp_path / "out.mp4"
    assert len(stylized(source, out)) == 2
    assert audio_streams(out) == []


def test_two_audio_streams_are_both_kept(tmp_path):
    source = tmp_path / "two tracks.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000",
           "-map", "0:v", "-map", "1:a", "-map", "2:a", "-frames:v", 3, "-vf", "scale=64:48,setsar=1", "-t", 0.125,
           *x264(), "-c:a", "aac", source)  # fmt: skip
    assert len(audio_streams(source)) == 2
    out = tmp_path / "out.mp4"
    assert len(stylized(source, out)) == 3
    streams = audio_streams(out)
    assert len(streams) == 2
    assert any("44100 Hz" in s for s in streams) and any("48000 Hz" in s for s in streams)


# --- pixel formats and containers ---


@pytest.mark.parametrize("pix_fmt", ["gray", "yuv420p10le"])
def test_pixel_formats(tmp_path, pix_fmt):
    source = tmp_path / f"{pix_fmt}.mp4"
    ffmpeg(*clip_args("64x48", frames=2), *x264(pix_fmt), source)
    assert pix_fmt in subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", source], capture_output=True,
                                     text=True).stderr  # fmt: skip
    frames = stylized(source, tmp_path / "out.mp4")
    assert len(frames) == 2 and sizes(frames) == {(64, 48)}


CONTAINERS = {
    "mov": x264(),
    "mkv": x264(),
    "webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"],
    "gif": [],
}


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_containers(tmp_path, suffix):
    source = tmp_path / f"clip.{suffix}"
    ffmpeg(*clip_args("64x48", frames=3), *CONTAINERS[suffix], source)
    out = tmp_path / "out.mp4"
    frames = stylized(source, out)
    assert len(frames) == 3 and sizes(frames) == {(64, 48)}
    assert Fraction(fps_of(out)).limit_denominator(1001) == probe(source).fps  # GIF's own 25, the rest 24


# --- image sequences ---


def test_folder_of_images_in_number_order_with_fps(tmp_path):
    folder = tmp_path / "frames"
    in_order = ["img_1.png", "img_2.png", "img_10.png"]  # img_10 comes after img_2 by number, before it by text
    pictures = dict(zip(in_order, write_images(folder, in_order)))
    (folder / "notes.txt").write_text("not a frame")
    write_images(folder, ["cover.png", ".img_0.png"], size=(20, 20))  # no number, hidden: not frames

    assert [Path(p).name for p in image_sequence(str(folder))] == in_order
    with VideoReader(folder) as reader:
        read = list(reader)
    assert len(read) == 3 and all(np.array_equal(a, pictures[name]) for a, name in zip(read, in_order))

    out = tmp_path / "out.mp4"
    frames = stylized(folder, out, "--fps", "12")
    assert len(frames) == 3 and sizes(frames) == {(64, 48)}
    assert fps_of(out) == pytest.approx(12)
    assert audio_streams(out) == []


def test_printf_pattern_of_jpegs_defaults_to_24_fps(tmp_path):
    write_images(tmp_path / "shots", [f"img_{i:04d}.jpg" for i in range(1, 3)] + ["img_12.jpg", "other_0003.jpg"])
    out = tmp_path / "out.mkv"
    frames = stylized(tmp_path / "shots" / "img_%04d.jpg", out)
    assert len(frames) == 2  # img_12 has two digits, other_0003 another name: neither matches
    assert fps_of(out) == pytest.approx(float(DEFAULT_IMAGE_FPS))


def test_ntsc_fraction_fps_for_images(tmp_path):
    folder = tmp_path / "frames"
    write_images(folder, ["f1.png", "f2.png"])
    out = tmp_path / "out.mp4"
    assert len(stylized(folder, out, "--fps", "30000/1001")) == 2
    assert probe(out).fps == Fraction(30000, 1001)


def test_input_identity_sees_an_image_edited_in_place(tmp_path):
    folder = tmp_path / "frames"
    write_images(folder, ["f1.png", "f2.png"])
    before = input_identity(folder)
    write_images(folder, ["f2.png"], seed=1)
    path = folder / "f2.png"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert input_identity(folder) != before
    assert set(input_identity(folder)) == {"images", "sha256"}


def _error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidiff: error: "), result.stderr
    return lines[0]


def test_images_of_different_sizes_name_the_odd_one(tmp_path):
    folder = tmp_path / "frames"
    write_images(folder, ["f1.png", "f2.png"])
    write_images(folder, ["f3.png"], size=(48, 48))
    out = tmp_path / "out.mp4"
    line = _error_line(stylize(folder, out))
    assert "f3.png" in line and "48x48" in line and "64x48" in line
    assert not out.exists()


def test_unreadable_image_stops_or_is_skipped(tmp_path):
    folder = tmp_path / "frames"
    write_images(folder, ["f1.png", "f2.png", "f4.png"])
    (folder / "f3.png").write_bytes(b"\x89PNG\r\n\x1a\n but the rest is missing")
    out = tmp_path / "out.mp4"
    line = _error_line(stylize(folder, out))
    assert "frame 2" in line and "f3.png" in line and "--on-bad-frame skip" in line
    assert not out.exists()

    result = stylize(folder, out, "--on-bad-frame", "skip", quiet=False)
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "frame 2" in result.stderr and "f3.png" in result.stderr
    assert len(read_frames(out)) == 3


@pytest.mark.parametrize(
    "make, options, mentions",
    [
        (lambda p: (p / "empty").mkdir() or p / "empty", [], ["empty", "numbered images", "video"]),
        (lambda p: write_images(p / "covers", ["cover.png"]) and p / "covers", [], ["covers", "numbered images"]),
        (lambda p: write_images(p / "mixed", ["a1.png", "a2.jpg"]) and p / "mixed", [], [".jpg", ".png"]),
        (lambda p: p / "absent_%04d.png", [], ["absent_%04d.png", "matches no files"]),
        (lambda p: write_images(p / "f", ["f1.png"]) and p / "f", ["--fps", "0"], ["--fps", "'0'"]),
        (lambda p: write_images(p / "f", ["f1.png"]) and p / "f", ["--fps", "fast"], ["--fps", "'fast'"]),
    ],
    ids=["empty-folder", "no-numbered-images", "mixed-kinds", "pattern-matches-nothing", "fps-zero", "fps-text"],
)
def test_image_input_errors(tmp_path, make, options, mentions):
    source = make(tmp_path)
    line = _error_line(stylize(source, tmp_path / "out.mp4", *options))
    for text in mentions:
        assert text in line, line
    assert not (tmp_path / "out.mp4").exists()


def test_fps_is_refused_for_a_video(tmp_path):
    source = tmp_path / "clip.mp4"
    ffmpeg(*clip_args(frames=1), *x264(), source)
    line = _error_line(stylize(source, tmp_path / "out.mp4", "--fps", "30"))
    assert "--fps" in line and "image sequence" in line


# --- frames a decoder can't read ---


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A 6-frame clip whose frame 2 can't be decoded, and the clip it was made from."""
    clean, bad = damaged_clip(tmp_path_factory.mktemp("damaged"), 6, {2})
    # the recipe really makes OpenCV fail on frame 2 and read on after it
    capture = cv2.VideoCapture(str(bad))
    reads = [capture.read()[0] for _ in range(8)]
    capture.release()
    assert reads == [True, True, False, True, True, True, False, False]
    return {"clean": clean, "bad": bad}


def test_bad_frame_stops_the_run_by_default(damaged, tmp_path):
    out = tmp_path / "out.mp4"
    line = _error_line(stylize(damaged["bad"], out))
    assert "frame 2" in line and "--on-bad-frame skip" in line
    assert not out.exists()


def test_bad_frame_skipped_on_request(damaged, tmp_path):
    out = tmp_path / "out.mp4"
    result = stylize(damaged["bad"], out, "--on-bad-frame", "skip", quiet=False)
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "frame 2 " in result.stderr
    assert len(read_frames(out)) == 5


def test_reader_skips_exactly_the_bad_frame(damaged):
    with VideoReader(damaged["clean"]) as reader:
        clean = list(reader)
    with VideoReader(damaged["bad"], on_bad_frame="skip") as reader:
        skipped = list(reader)
    assert len(skipped) == 5
    assert all(np.array_equal(a, b) for a, b in zip(skipped, clean[:2] + clean[3:]))
    with VideoReader(damaged["bad"], start=3 / 24) as reader:  # the damage lies before the start
        assert len(list(reader)) == 3


class FakeCapture:
    """A capture whose grab() follows a script of True (a frame) and False (a failed read); then EOF."""

    def __init__(self, script: str):
        self.script, self.position = script, 0

    def grab(self) -> bool:
        self.position += 1
        return self.position <= len(self.script) and self.script[self.position - 1] == "."

    def retrieve(self):
        return True, np.full((2, 2, 3), self.position - 1, np.uint8)


@pytest.mark.parametrize(
    "script, count, expected",
    [
        ("....", 4, "...."),  # a plain end
        ("....", 9, "...."),  # the container promised more: still the end, not damage
        ("..x..", 5, "..x.."),
        ("xx...", 5, "xx..."),
        ("..xxxxxxxxxxxx.", 15, "..xxxxxxxxxxxx."),  # a long damaged stretch the count vouches for
        ("..xxxxxxxxxxxx.", 3, ".."),  # ... which the count doesn't: read as the end
    ],
)
def test_failed_read_is_damage_only_if_frames_follow(script, count, expected):
    decoded = list(_decoded_frames(FakeCapture(script), 0, count))
    assert "".join("." if frame is not None else "x" for _, frame in decoded) == expected
    assert [index for index, _ in decoded] == list(range(len(expected)))
    assert all(frame[0, 0, 0] == index for index, frame in decoded if frame is not None)  # the right frame


def test_failed_reads_before_the_start_are_passed_over():
    decoded = list(_decoded_frames(FakeCapture(".x...x."), 3, 7))
    assert [(index, frame is None) for index, frame in decoded] == [(3, False), (4, False), (5, True), (6, False)]
