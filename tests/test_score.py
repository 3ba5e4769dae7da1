"""`vidiff score`: warp error and flicker follow what the stylised frames do, not what the source does.

Every clip is built here from numpy frames with known motion and written losslessly (crf=0), or
made by conftest.make_clip; the expectations come from how the clips were built.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from helpers import make_clip, read_frames, write_static_clip
from vidiff.cli import cli
from vidiff.settings.config import Config

CUT_THRESHOLD = Config.cut_threshold
from vidiff.score import PLOT_SIZE, score_video
from vidiff.io.writer import VideoWriter

FRAMES = 8
# pixels per frame the pan moves, (dx, dy); even, so that the half-size chroma planes of yuv420p
# shift by whole pixels too and the decoded frames are exact shifts of one another
SHIFT = (2, 2)


def textured(width: int, height: int, seed: int) -> np.ndarray:
    """Fine grey detail everywhere (for the flow to follow) over smooth colour (which yuv420p keeps)."""
    rng = np.random.default_rng(seed)
    detail = cv2.GaussianBlur(rng.normal(0, 120, (height, width)).astype(np.float32), (0, 0), 1.5)
    tint = cv2.GaussianBlur(rng.uniform(0, 255, (height, width, 3)).astype(np.float32), (0, 0), 6)
    return np.clip((tint - tint.mean()) * 4 + 128 + detail[..., None], 0, 255).astype(np.uint8)


def panned(size: tuple[int, int], frames: int = FRAMES, seed: int = 0, scale: int = 1) -> list[np.ndarray]:
    """Windows of one textured picture sliding by SHIFT (times `scale`) pixels per frame."""
    width, height = size
    dx, dy = SHIFT[0] * scale, SHIFT[1] * scale
    big = textured(width + dx * frames, height + dy * frames, seed)
    return [np.ascontiguousarray(big[t * dy : t * dy + height, t * dx : t * dx + width]) for t in range(frames)]


def write(path: Path, frames: list[np.ndarray]) -> str:
    height, width = frames[0].shape[:2]
    with VideoWriter(path, (width, height), 24, crf=0) as writer:
        for frame in frames:
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    return str(path)


@pytest.fixture(scope="module")
def pan(tmp_path_factory) -> str:
    return write(tmp_path_factory.mktemp("score") / "pan.mp4", panned((64, 48)))


@pytest.fixture(scope="module")
def two_shots(tmp_path_factory) -> str:
    """Four frames of one textured picture panning, then four of another with other colours: a cut at 4."""
    first = panned((64, 48), frames=4, seed=1)
    second = [255 - frame for frame in panned((64, 48), frames=4, seed=2)]
    second = [np.clip(frame.astype(int) // 2 + (120, 0, 60), 0, 255).astype(np.uint8) for frame in second]
    return write(tmp_path_factory.mktemp("score") / "two-shots.mp4", first + second)


def run_score(*args: str):
    return CliRunner().invoke(cli, ["score", *map(str, args)])


def test_a_still_clip_scored_against_itself_has_no_warp_error_and_no_flicker(tmp_path):
    clip = write_static_clip(tmp_path / "still.mp4", frames=5)
    report = score_video(clip, clip)
    assert (report.frames, report.pairs, report.cuts) == (5, 4, [])
    assert report.warp_error < 0.05 and report.flicker < 0.05 and report.warp_mse < 1e-5
    assert report.change_from_source == 0.0


def test_the_warp_follows_a_known_pan(pan):
    report = score_video(pan, pan)
    frames = [frame.astype(np.float32) for frame in read_frames(Path(pan))]
    unwarped = np.mean([np.abs(b - a).mean() for a, b in zip(frames, frames[1:])])
    assert report.pairs == FRAMES - 1
    # most of the frame is trusted (only the strips uncovered by the pan are not) ...
    assert report.trusted_fraction > 0.7
    # ... and warping explains the motion: what is left is a small fraction of the raw frame difference
    assert report.warp_error < 1.0 and report.warp_error < 0.05 * unwarped
    assert report.flicker < 1.0
    # a source scored against itself sits exactly on the floor the flow allows
    assert report.warp_error == pytest.approx(report.source_warp_error)


def test_flickering_stylisation_scores_far_worse_than_a_steady_one(pan, tmp_path):
    rng = np.random.default_rng(7)
    frames = [frame.astype(np.float32) for frame in read_frames(Path(pan))]
    # the same change on every frame, a low-contrast negative: a steady "style"
    steady = write(tmp_path / "steady.mp4", [230 - frame * 0.8 for frame in frames])
    # the same, with a fresh brightness offset and fresh noise on every frame: flicker
    flickery = write(
        tmp_path / "flickery.mp4",
        [230 - frame * 0.8 + rng.uniform(-25, 25) + rng.normal(0, 6, frame.shape) for frame in frames],
    )
    steady_report, flickery_report = score_video(pan, steady), score_video(pan, flickery)
    assert flickery_report.warp_error > 3 * steady_report.warp_error
    assert flickery_report.warp_mse > 3 * steady_report.warp_mse
    assert flickery_report.flicker > 5 * steady_report.flicker
    # both moved away from the source by about the same amount: the flicker is what differs
    assert flickery_report.change_from_source > 20 and steady_report.change_from_source > 20
    per_frame = flickery_report.per_frame["flicker"]
    assert per_frame[0] is None and all(value is not None for value in per_frame[1:])


def test_change_from_source_is_zero_for_the_source_and_positive_for_an_altered_copy(pan, tmp_path):
    altered = write(tmp_path / "brighter.mp4", [frame.astype(np.float32) + 20 for frame in read_frames(Path(pan))])
    assert score_video(pan, pan).change_from_source == 0.0
    report = score_video(pan, altered)
    assert report.change_from_source > 10  # 20 levels added, a few pixels clipped at 255
    assert all(value > 10 for value in report.per_frame["change_from_source"])
    assert len(report.per_frame["change_from_source"]) == FRAMES


def test_a_blurred_copy_looks_steadier_but_shows_less_detail(pan, tmp_path):
    # blur is the other way to look steady: the warp error drops, and detail says why
    frames = read_frames(Path(pan))
    blurred = write(tmp_path / "blurred.mp4", [cv2.GaussianBlur(frame, (0, 0), 3) for frame in frames])
    itself, soft = score_video(pan, pan), score_video(pan, blurred)
    assert itself.detail == pytest.approx(itself.source_detail) and itself.detail > 2
    assert soft.source_detail == pytest.approx(itself.source_detail)
    assert soft.detail < 0.5 * itself.detail
    assert len(soft.per_frame["detail"]) == FRAMES and None not in soft.per_frame["detail"]


def test_a_larger_source_is_resized_to_the_stylised_size(tmp_path):
    big = panned((128, 96), scale=2)
    source = write(tmp_path / "source-128x96.mp4", big)
    small = [cv2.resize(frame, (64, 48), interpolation=cv2.INTER_AREA) for frame in big]
    stylized = write(tmp_path / "stylised-64x48.mp4", small)
    report = score_video(source, stylized)
    assert (report.width, report.height, report.frames, report.pairs) == (64, 48, FRAMES, FRAMES - 1)
    # compared at the same size and lined up, the stylised frames are the source's own: far closer
    # to it than to their neighbours, one pan step away, and moving as it does
    decoded = [frame.astype(np.float32) for frame in read_frames(Path(stylized))]
    one_step = np.mean([np.abs(b - a).mean() for a, b in zip(decoded, decoded[1:])])
    assert report.change_from_source < 0.25 * one_step
    assert report.warp_error < 0.05 * one_step


def test_a_single_frame_has_no_pairs_and_no_warp_figures(tmp_path):
    clip = write_static_clip(tmp_path / "one.mp4", frames=1)
    report = score_video(clip, clip, plot_path=tmp_path / "one.png")
    assert (report.frames, report.pairs, report.cuts) == (1, 0, [])
    assert report.warp_error is None and report.warp_mse is None and report.flicker is None
    assert report.source_warp_error is None
    assert report.change_from_source == 0.0
    assert report.per_frame["warp_error"] == [None]
    assert "n/a" in report.table()
    assert cv2.imread(str(tmp_path / "one.png")) is not None


def test_the_cut_is_found_and_the_pair_across_it_left_out(two_shots):
    report = score_video(two_shots, two_shots)
    assert report.cuts == [4]
    assert report.per_frame["cut_score"][4] > CUT_THRESHOLD
    assert report.pairs == 6
    errors = report.per_frame["warp_error"]
    assert errors[4] is None and errors[0] is None
    assert all(errors[t] is not None for t in (1, 2, 3, 5, 6, 7))

    # without cut detection the pair across the cut is measured, and it is far off the others
    every_pair = score_video(two_shots, two_shots, cut_threshold=None)
    assert every_pair.cuts == [] and every_pair.cut_threshold is None
    across = every_pair.per_frame["warp_error"][4]
    assert across is not None and across > 5 * max(errors[t] for t in (1, 2, 3, 5, 6, 7))
    assert every_pair.warp_error > report.warp_error


def test_ordinary_motion_is_not_taken_for_a_cut(tmp_path, pan):
    moving = make_clip(tmp_path / "testsrc2.mp4", size="64x48", seconds=1.0)
    assert score_video(moving, moving).cuts == []
    assert score_video(pan, pan).cuts == []


def test_cli_prints_the_table_and_writes_json_and_plot(two_shots, tmp_path):
    result = run_score(two_shots, two_shots, "--json", tmp_path / "score.json", "--plot", tmp_path / "score.png")
    assert result.exit_code == 0, result.output
    assert "warp error" in result.stdout and "flicker" in result.stdout and "change from source" in result.stdout

    data = json.loads((tmp_path / "score.json").read_text())
    warp_keys = {key for key in data if "warp" in key}
    assert {"warp_error", "warp_mse", "source_warp_error"} <= warp_keys
    assert all(data[key] is not None for key in warp_keys)
    assert {"flicker", "change_from_source", "detail", "source_detail", "frames", "width", "height", "cuts", "per_frame"} <= set(data)
    assert (data["frames"], data["width"], data["height"], data["cuts"]) == (8, 64, 48, [4])
    assert data["cut_threshold"] == CUT_THRESHOLD
    for name in ("warp_error", "flicker", "change_from_source"):
        assert len(data["per_frame"][name]) == 8
    assert data["per_frame"]["warp_error"][4] is None  # the cut

    plot = cv2.imread(str(tmp_path / "score.png"))
    assert plot is not None and plot.shape == (PLOT_SIZE[1], PLOT_SIZE[0], 3)
    assert (plot < 200).any()  # something was drawn on the white canvas
    # written atomically: nothing but the two reports beside them
    assert sorted(path.name for path in tmp_path.iterdir()) == ["score.json", "score.png"]


def test_cli_no_cuts_measures_every_pair(two_shots, tmp_path):
    result = run_score(two_shots, two_shots, "--no-cuts", "--json", tmp_path / "score.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "score.json").read_text())
    assert data["cuts"] == [] and data["cut_threshold"] is None
    assert None not in data["per_frame"]["warp_error"][1:]


def test_cli_refuses_clips_of_different_lengths(tmp_path):
    long = write_static_clip(tmp_path / "six.mp4", frames=6)
    short = write_static_clip(tmp_path / "four.mp4", frames=4)
    result = run_score(long, short, "--json", tmp_path / "score.json")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "4 frames" in lines[0] and "has 6" in lines[0] and "same frames" in lines[0]
    assert not (tmp_path / "score.json").exists()


@pytest.mark.parametrize(
    "options, mention",
    [
        (["--no-cuts", "--cut-threshold", "0.3"], "--no-cuts"),
        (["--cut-threshold", "0"], "--cut-threshold"),
        (["--plot", "chart.jpg"], ".png"),
        (["--json", "missing-folder/score.json"], "missing-folder"),
    ],
)
def test_cli_refuses_bad_options_before_any_work(pan, tmp_path, monkeypatch, options, mention):
    monkeypatch.chdir(tmp_path)
    result = run_score(pan, pan, *options)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and mention in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_to_write_a_report_over_a_video_being_scored(pan, tmp_path):
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(Path(pan).read_bytes())
    before = copy.read_bytes()
    result = run_score(pan, copy, "--json", copy)
    assert result.exit_code == 2 and "copy.mp4" in result.stderr
    assert copy.read_bytes() == before
