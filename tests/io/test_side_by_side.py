"""--preview: source | result side by side beside OUTPUT, frame for frame, with the audio."""

from __future__ import annotations

import cv2
import numpy as np
from click.testing import CliRunner

from helpers import read_frames
from vidiff.cli import cli
from vidiff.io.ffmpeg import audio_streams

FAST = ["--model", "tiny", "--prompt", "x", "--steps", "2", "--strength", "0.9", "--max-side", "64", "--quiet"]


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    """On luma: yuv420p halves the colour's resolution, which on a 64-pixel frame of sharp colour
    edges is most of the encoding's error."""
    luma = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(int) for x in (a, b)]
    return float(np.abs(luma[0] - luma[1]).mean())


def test_preview_is_source_and_result_side_by_side_with_the_audio(clips, tmp_path):
    source = clips["ntsc_odd_stereo"]  # 203x117 with stereo audio: resized, and the audio carried over
    out = tmp_path / "styled.mp4"
    loud = [arg for arg in FAST if arg != "--quiet"]  # the summary names the preview
    result = CliRunner().invoke(cli, ["stylize", str(source), str(out), *loud, "--max-frames", "5", "--preview"])
    assert result.exit_code == 0, (result.output, result.exception)
    preview = tmp_path / "styled.preview.mp4"
    assert str(preview) in result.stdout
    styled, shown, sources = read_frames(out), read_frames(preview), read_frames(source)[:5]
    height, width = styled[0].shape[:2]
    assert len(shown) == len(styled) == 5
    assert shown[0].shape == (height, 2 * width, 3)
    for index, (both, made) in enumerate(zip(shown, styled)):
        expected_left = cv2.resize(sources[index], (width, height), interpolation=cv2.INTER_AREA)
        left, right = both[:, :width], both[:, width:]
        assert mean_difference(left, expected_left) < 4, index  # within what H.264 changes, twice
        assert mean_difference(right, made) < 4, index
        assert mean_difference(left, right) > 10, index  # the halves are not the same picture
    assert audio_streams(preview)


def test_an_existing_preview_is_kept_without_overwrite(clips, tmp_path):
    out = tmp_path / "styled.mp4"
    (tmp_path / "styled.preview.mp4").write_bytes(b"mine")
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(out), *FAST, "--max-frames", "2", "--preview"])
    assert result.exit_code == 2 and "styled.preview.mp4 exists" in result.stderr
    assert (tmp_path / "styled.preview.mp4").read_bytes() == b"mine" and not out.exists()


def test_no_preview_unless_asked(clips, tmp_path):
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(tmp_path / "o.mp4"), *FAST, "--max-frames", "2"])
    assert result.exit_code == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]


def test_a_gif_or_a_sequence_gets_its_preview_as_an_mp4_beside_it(clips, tmp_path):
    gif, sequence = tmp_path / "loop.gif", tmp_path / "frames" / "out_%05d.png"
    for output, preview in [(gif, tmp_path / "loop.preview.mp4"), (sequence, tmp_path / "frames" / "out.preview.mp4")]:
        result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(output), *FAST, "--max-frames", "3",
                                          "--preview"])  # fmt: skip
        assert result.exit_code == 0, (result.output, result.exception)
        made = read_frames(gif) if output == gif else [
            cv2.cvtColor(cv2.imread(str(tmp_path / "frames" / f"out_{i:05d}.png")), cv2.COLOR_BGR2RGB) for i in range(3)]
        shown = read_frames(preview)
        height, width = made[0].shape[:2]
        assert len(shown) == 3 and shown[0].shape == (height, 2 * width, 3)
        assert mean_difference(shown[1][:, width:], made[1]) < 6  # the right half is the result (GIF's palette, H.264)
