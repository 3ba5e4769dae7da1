"""Streaming video in and out: sizes, exact frame rates, trims, audio, atomic output."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest

from helpers import make_clip, read_frames
from vidiff.errors import VidiffError
from vidiff.io.ffmpeg import audio_streams
from vidiff.io.rates import exact_fps
from vidiff.io.reader import VideoReader, fit_size, probe
from vidiff.io.writer import VideoWriter


@pytest.mark.parametrize(
    "size, max_side, expected",
    [
        ((1920, 1080), 512, (512, 288)),
        ((1080, 1920), 512, (288, 512)),
        ((203, 117), 512, (200, 120)),  # never upscaled, only rounded to multiples of 8
        ((640, 480), 64, (64, 48)),
        ((16, 16), 512, (16, 16)),
        ((3, 2), 512, (8, 8)),  # the VAE's minimum
    ],
)
def test_fit_size(size, max_side, expected):
    width, height = fit_size(*size, max_side)
    assert (width, height) == expected
    assert width % 8 == 0 and height % 8 == 0 and max(width, height) <= max(max_side, 8)


@pytest.mark.parametrize("fps", [30000 / 1001, 24000 / 1001, 60000 / 1001, 25.0, 12.5, 30.0])
def test_exact_fps_recovers_the_rational_rate(fps):
    rate = exact_fps(fps)
    assert float(rate) == pytest.approx(fps, abs=1e-9)
    assert rate.denominator in (1, 2, 1001)


def test_probe_reads_odd_size_ntsc_clip(clips):
    info = probe(clips["ntsc_odd_stereo"])
    assert (info.width, info.height) == (203, 117)
    assert info.fps == Fraction(30000, 1001)
    assert info.frame_count == 9  # 0.3 s at 29.97 fps


def test_reader_streams_resized_rgb_frames(clips):
    with VideoReader(clips["ntsc_odd_stereo"], size=(200, 120)) as reader:
        frames = list(reader)
    assert len(frames) == reader.expected_frames == 9
    assert all(f.shape == (120, 200, 3) and f.dtype == np.uint8 for f in frames)


def test_reader_yields_one_frame_at_a_time(clips):
    with VideoReader(clips["plain"]) as reader:
        iterator = iter(reader)
        first = next(iterator)
        assert first.shape == (48, 64, 3)


@pytest.mark.parametrize(
    "start, duration, max_frames, expected",
    [(0.0, None, None, 6), (0.125, None, None, 3), (0.0, 0.125, None, 3), (0.0, None, 2, 2), (0.0417, 0.1, 1, 1)],
)
def test_reader_trims(clips, start, duration, max_frames, expected):
    with VideoReader(clips["plain"], start=start, duration=duration, max_frames=max_frames) as reader:
        frames = list(reader)
    assert len(frames) == expected


def test_reader_start_skips_to_the_right_frame(clips):
    with VideoReader(clips["plain"]) as reader:
        everything = list(reader)
    with VideoReader(clips["plain"], start=2 / 24) as reader:
        trimmed = list(reader)
        assert reader.start_frame == 2
    assert np.array_equal(trimmed[0], everything[2])


def _write(path, frames=5, size=(64, 48), fps=Fraction(30000, 1001), **kwargs):
    rng = np.random.default_rng(1)
    width, height = size
    with VideoWriter(path, size, fps, **kwargs) as writer:
        for _ in range(frames):
            writer.write(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_writer_keeps_frame_count_and_exact_fps(tmp_path):
    out = tmp_path / "out.mp4"
    _write(out, frames=7)
    assert probe(out).fps == Fraction(30000, 1001)
    assert len(read_frames(out)) == 7
    assert audio_streams(out) == []


def test_writer_copies_stereo_audio_cut_to_the_video(clips, tmp_path):
    out = tmp_path / "with audio.mp4"
    _write(out, frames=6, audio_source=clips["ntsc_odd_stereo"], audio_start=0.1)
    streams = audio_streams(out)
    assert len(streams) == 1 and "stereo" in streams[0] and streams[0].startswith("aac")


def test_writer_without_audio_in_the_source(clips, tmp_path):
    out = tmp_path / "out.mkv"
    _write(out, frames=3, audio_source=clips["silent"])
    assert audio_streams(out) == [] and len(read_frames(out)) == 3


def test_writer_is_atomic_when_the_run_fails(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, (64, 48), Fraction(24)) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("the model crashed")
    assert os.listdir(tmp_path) == []  # neither OUTPUT nor a temporary file


def test_writer_replaces_output_only_when_done(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    with VideoWriter(out, (64, 48), Fraction(24)) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
        assert out.read_bytes() == b"old"  # nothing touches OUTPUT mid-run
    assert len(read_frames(out)) == 1


def test_writer_with_no_frames_is_an_error(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(VidiffError):
        with VideoWriter(out, (64, 48), Fraction(24)):
            pass
    assert os.listdir(tmp_path) == []


def test_writer_reports_a_failing_ffmpeg(tmp_path, monkeypatch):
    import vidiff.io.writer as writer

    monkeypatch.setattr(writer, "ffmpeg_exe", lambda: "false")  # exits 1 at once, like a crashing encoder
    out = tmp_path / "out.mp4"
    with pytest.raises(VidiffError, match="ffmpeg"):
        with VideoWriter(out, (64, 48), Fraction(24)) as writer:
            for _ in range(200):  # enough to fill the pipe's buffer after ffmpeg is gone
                writer.write(np.zeros((48, 64, 3), np.uint8))
    assert os.listdir(tmp_path) == []


def test_grayscale_and_odd_inputs_decode(tmp_path):
    gray = make_clip(tmp_path / "gray.mp4", size="33x17", pix_fmt="gray", seconds=0.1)
    with VideoReader(gray, size=fit_size(33, 17, 512)) as reader:
        frames = list(reader)
    assert frames and frames[0].shape == (16, 32, 3)


def test_output_gets_the_usual_file_permissions(tmp_path):
    # temporary files made with mkstemp are 0600; OUTPUT must be like any file the user makes
    out = tmp_path / "out.mp4"
    _write(out, frames=1)
    reference = tmp_path / "plain"
    reference.write_bytes(b"")
    assert os.stat(out).st_mode & 0o777 == os.stat(reference).st_mode & 0o777
