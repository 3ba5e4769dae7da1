"""Each form of OUTPUT, written from frames we know: every frame comes back, in the codec the form
promises, with the source's audio where the container takes it, put in place atomically."""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction

import cv2
import numpy as np
import pytest

from helpers import make_clip, read_frames, stream_codecs
from vidiff.errors import VidiffError
from vidiff.io.ffmpeg import ffmpeg_exe
from vidiff.io.formats import output_form
from vidiff.io.writer import VideoWriter

SIZE = (64, 48)
FRAMES = 6


@pytest.fixture(scope="module")
def with_audio(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("outputs") / "audio.mp4", seconds=0.5, audio="stereo")


def _frames(count: int = FRAMES) -> list[np.ndarray]:
    """Distinct frames: a moving gradient, so that a dropped or repeated frame shows."""
    width, height = SIZE
    y, x = np.mgrid[0:height, 0:width]
    return [np.stack([(x * 4 + 20 * i) % 256, y * 5, np.full_like(x, 40 * i)], -1).astype(np.uint8)
            for i in range(count)]  # fmt: skip


def _write(path, frames, audio=None, **form) -> None:
    with VideoWriter(path, SIZE, Fraction(24), crf=18, audio_source=audio, **form) as writer:
        for frame in frames:
            writer.write(frame)


def _only(folder, *names) -> None:
    """Nothing but `names` is left in `folder` (no temporary file, palette or listing)."""
    assert sorted(os.listdir(folder)) == sorted(names)


@pytest.mark.parametrize(
    "name, codec, video, audio",
    [
        ("out.mp4", None, "h264", "aac"),
        ("out.mp4", "h265", "hevc", "aac"),
        ("out.mov", "prores", "prores", "aac"),
        ("out.mov", "ffv1", "ffv1", "aac"),
        ("out.mkv", "h264", "h264", "aac"),
        ("out.mkv", "ffv1", "ffv1", "aac"),
        ("out.webm", None, "vp9", "opus"),
        ("out.gif", None, "gif", None),
    ],
)
def test_each_video_form_has_every_frame_its_codec_and_audio_where_the_container_takes_it(
    with_audio, tmp_path, name, codec, video, audio
):
    out = tmp_path / name
    frames = _frames()
    _write(out, frames, with_audio, codec=codec)
    assert stream_codecs(out) == (video, audio)
    back = read_frames(out)
    assert len(back) == FRAMES
    assert back[0].shape == (SIZE[1], SIZE[0], 3)
    # each frame is the one written there, not its neighbour (lossy codecs are close, not exact)
    for index, frame in enumerate(back):
        errors = [np.abs(frame.astype(int) - written.astype(int)).mean() for written in frames]
        assert int(np.argmin(errors)) == index
    _only(tmp_path, name)


def test_ffv1_keeps_every_pixel(tmp_path):
    frames = _frames()
    _write(tmp_path / "out.mkv", frames, codec="ffv1")
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(tmp_path / "out.mkv"), frames, strict=True))


def test_prores_is_422_hq_with_apples_tag(tmp_path):
    _write(tmp_path / "out.mov", _frames(2), codec="prores")
    said = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(tmp_path / "out.mov")], capture_output=True,
                          text=True).stderr  # fmt: skip
    assert "prores (HQ) (apch" in said and "yuv422p10le" in said


def test_gif_loops_with_a_palette_made_for_the_clip(tmp_path):
    # two colours only, neither in a generic palette's exact steps: a palette made for the clip keeps them
    frames = [np.full((SIZE[1], SIZE[0], 3), colour, np.uint8) for colour in [(201, 13, 77), (17, 143, 229)] * 2]
    _write(tmp_path / "out.gif", frames)
    data = (tmp_path / "out.gif").read_bytes()
    assert b"NETSCAPE2.0" in data  # the looping extension (ffmpeg's -loop 0: for ever)
    back = read_frames(tmp_path / "out.gif")
    assert len(back) == len(frames)
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 2 for a, b in zip(back, frames))


@pytest.mark.parametrize("depth", [8, 16])
def test_a_sequence_is_every_frame_as_a_numbered_png_of_its_bit_depth(tmp_path, depth):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = _frames()
    _write(folder / "out_%05d.png", frames, bit_depth=depth)
    names = [f"out_{index:05d}.png" for index in range(FRAMES)]
    _only(folder, *names)
    for name, frame in zip(names, frames):
        read = cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED)
        assert read.dtype == (np.uint16 if depth == 16 else np.uint8)
        expected = frame[:, :, ::-1].astype(np.uint16) * 257 if depth == 16 else frame[:, :, ::-1]
        assert np.array_equal(read, expected)  # exact: the segments are lossless, 16 bits is 8 widened


def test_a_shorter_sequence_over_a_longer_one_leaves_exactly_its_frames(tmp_path):
    pattern = tmp_path / "f%d.png"
    _write(pattern, _frames(5))
    (tmp_path / "notes.txt").write_text("not a frame: stays")
    _write(pattern, _frames(2))
    _only(tmp_path, "f0.png", "f1.png", "notes.txt")


@pytest.mark.parametrize("name", ["out.png", "out.jpg", "out.webp"])
def test_a_picture_is_the_frame(tmp_path, name):
    frame = _frames(1)[0]
    _write(tmp_path / name, [frame])
    read = cv2.cvtColor(cv2.imread(str(tmp_path / name)), cv2.COLOR_BGR2RGB)
    limit = 0 if name == "out.png" else 4  # JPEG and WebP at quality 95: close on average
    assert np.abs(read.astype(int) - frame.astype(int)).mean() <= limit
    _only(tmp_path, name)


def test_a_failed_picture_form_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "out.gif", SIZE, Fraction(24)) as writer:
            writer.write(_frames(1)[0])
            raise RuntimeError("the run failed")
    _only(tmp_path)


@pytest.mark.parametrize(
    "name, codec, depth, words",
    [
        ("out.mp4", "prores", 8, "--codec prores: ProRes 422 HQ doesn't go in .mp4"),
        ("out.m4v", "ffv1", 8, "write .mov or .mkv"),
        ("out.webm", "h264", 8, "--codec h264: .webm holds VP9 video"),
        ("out.gif", "h265", 8, "--codec h265 is for a video"),
        ("out.png", "h264", 8, "leave --codec out"),
        ("out.jpg", None, 16, "--bit-depth 16 is for PNG output"),
        ("out.mp4", None, 16, "--bit-depth 16"),
        ("out_%04d.jpg", None, 8, "a numbered sequence is written as PNG"),
        ("out_%4d.png", None, 8, "pad the number with zeros (%04d)"),
        ("out.avi", None, 8, "use a video (.mp4, .m4v, .mov, .mkv, .webm), .gif, a picture"),
    ],
)
def test_forms_that_do_not_fit_are_one_line(name, codec, depth, words):
    with pytest.raises(VidiffError) as caught:
        output_form(name, codec, depth)
    line = caught.value.on_command_line()
    assert words in line and "\n" not in line


@pytest.mark.parametrize(
    "name, kind, codec, segments",
    [("a.MP4", "video", "h264", ".mp4"), ("a.mov", "video", "h264", ".mp4"), ("a.webm", "video", "vp9", ".webm"),
     ("a.gif", "gif", "gif", ".mkv"), ("a.jpeg", "picture", "jpeg", ".mkv"), ("f/a_%05d.png", "sequence", "png", ".mkv"),
     ("100%%_%d.png", "sequence", "png", ".mkv"), ("100%.png", "picture", "png", ".mkv")],
)  # fmt: skip
def test_the_form_follows_the_name(name, kind, codec, segments):
    form = output_form(name)
    assert (form.kind, form.codec, form.segment_suffix) == (kind, codec, segments)
