"""Shots found before the run: where the stylizer's own cut test puts them, counted exactly, printed
by --dry-run, and not stopped by a damaged frame."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from helpers import damage_frames
from helpers import cut_clip
from vidiff.cli import cli
from vidiff.errors import VidiffError
from vidiff.io.reader import VideoReader, fit_size
from vidiff.plan import Shot, find_shots, plan_run
from vidiff.settings.config import Config
from vidiff.temporal.change import cut_score, is_cut

BEFORE, AFTER = 10, 8  # frames of testsrc2, then of smptebars


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    """A clip with a hard cut at frame 10, one keyframe per frame (so that frames can be damaged)."""
    folder = tmp_path_factory.mktemp("shots")
    return cut_clip(folder / "cut.mp4", BEFORE, AFTER, "-x264-params", "keyint=1", "-crf", "12")


def stylizer_cuts(source, size, threshold: float, **trims) -> list[int]:
    """Where Stylizer._plan finds cuts: is_cut on consecutive frames as the reader delivers them."""
    with VideoReader(source, size, **trims) as reader:
        frames = list(reader)
    return [n for n in range(1, len(frames)) if is_cut(frames[n - 1], frames[n], threshold)]


def dry_run(*args: str):
    return CliRunner().invoke(cli, ["stylize", *args, "--prompt", "x", "--dry-run"])


@pytest.mark.parametrize("max_side", [512, 32])
def test_shots_split_where_the_stylizer_finds_the_cut(cut, max_side):
    size = fit_size(64, 48, max_side)
    threshold = Config.cut_threshold
    assert stylizer_cuts(cut, size, threshold) == [BEFORE]  # the cut is where the sources switch
    with VideoReader(cut, size) as reader:
        frames = list(reader)
    # the scores are not close to the threshold anywhere: the clip tests the split, not the rounding
    assert all(abs(cut_score(a, b) - threshold) > 0.05 for a, b in zip(frames, frames[1:]))

    shots, stopped = find_shots(VideoReader(cut, size), threshold)

    assert stopped is None
    assert shots == (Shot(0, 0, BEFORE, 0), Shot(1, BEFORE, BEFORE + AFTER, BEFORE))


def test_find_shots_with_a_threshold_none_counts_one_shot(cut):
    assert find_shots(VideoReader(cut), None) == ((Shot(0, 0, BEFORE + AFTER, 0),), None)


def test_plan_holds_the_shots_and_the_counted_frames(cut, tmp_path):
    plan = plan_run(cut, tmp_path / "out.mp4", Config(prompt="x", start=4 / 24))
    assert plan.start_frame == 4 and plan.frames == BEFORE + AFTER - 4
    # output frames count from the start trim; the reader starts a shot at its input frame
    assert plan.shots == (Shot(0, 0, BEFORE - 4, 4), Shot(1, BEFORE - 4, BEFORE + AFTER - 4, BEFORE))
    assert stylizer_cuts(cut, plan.size, plan.config.cut_threshold, start=4 / 24) == [BEFORE - 4]
    assert plan.shot_at(0) == plan.shot_at(5) == plan.shots[0]
    assert plan.shot_at(6) == plan.shot_at(99) == plan.shots[1]
    with plan.open_reader() as reader:
        everything = list(reader)
    with plan.open_reader() as reader:
        shot = plan.shots[1]
        assert all((a == b).all() for a, b in zip(reader.frames(shot.first, shot.source_first), everything[shot.first:],
                                                   strict=True))  # fmt: skip
    # plain data: nothing opened or openable lives in the plan itself
    assert not any(isinstance(getattr(plan, field.name), VideoReader) for field in dataclasses.fields(plan))


def test_dry_run_prints_the_shots(cut, tmp_path):
    result = dry_run(str(cut), str(tmp_path / "out.mp4"))
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"frames     {BEFORE + AFTER} " in result.stdout
    assert f"shots      2 (frames 0-{BEFORE - 1}, {BEFORE}-{BEFORE + AFTER - 1})" in result.stdout

    result = dry_run(str(cut), str(tmp_path / "out.mp4"), "--no-cuts")
    assert result.exit_code == 0 and "shots      1 (cut detection off)" in result.stdout


def test_dry_run_sums_up_many_shots(cut, tmp_path):
    plan = plan_run(cut, tmp_path / "out.mp4", Config(prompt="x"))
    many = tuple(Shot(n, n, n + 1, n) for n in range(13))
    lines = dataclasses.replace(plan, shots=many, frames=13).describe().splitlines()
    assert "shots      13 (frames 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … 3 more)" in lines


@pytest.fixture(scope="module")
def damaged_cut(cut, tmp_path_factory):
    """The cut clip with frame 3 damaged."""
    bad = tmp_path_factory.mktemp("damaged_cut") / "bad.mp4"
    damage_frames(cut, bad, {3})
    return bad


def test_frames_left_out_shift_the_shots_but_not_their_source_frames(damaged_cut, tmp_path):
    plan = plan_run(damaged_cut, tmp_path / "out.mp4", Config(prompt="x", on_bad_frame="skip"))
    assert plan.frames == BEFORE + AFTER - 1 and plan.stopped is None
    assert plan.shots == (Shot(0, 0, BEFORE - 1, 0), Shot(1, BEFORE - 1, BEFORE + AFTER - 1, BEFORE))
    assert stylizer_cuts(damaged_cut, plan.size, plan.config.cut_threshold, on_bad_frame="skip") == [BEFORE - 1]


def test_a_damaged_frame_ends_the_shots_without_raising(damaged_cut, tmp_path):
    plan = plan_run(damaged_cut, tmp_path / "out.mp4", Config(prompt="x"))
    # the frames before the damage are still planned: the run stylises them, then stops
    assert plan.frames == 3 and plan.shots == (Shot(0, 0, 3, 0),)
    assert "frame 3 " in plan.stopped and "--on-bad-frame skip" in plan.stopped
    with plan.open_reader() as reader, pytest.raises(VidiffError, match="frame 3 "):
        list(reader)  # where the run stops, as it did before shots were planned

    result = dry_run(str(damaged_cut), str(tmp_path / "out.mp4"))
    assert result.exit_code == 0, (result.output, result.exception)
    assert "shots      1 (frames 0-2)" in result.stdout
    assert "warning: the run will stop after 3 frame(s): frame 3 of input" in result.stdout


def test_damage_at_the_first_frame_leaves_one_empty_shot(cut, tmp_path):
    bad = tmp_path / "bad.mp4"
    damage_frames(cut, bad, {0})
    plan = plan_run(bad, tmp_path / "out.mp4", Config(prompt="x"))
    assert plan.frames == 0 and plan.shots == (Shot(0, 0, 0, 0),) and "frame 0 " in plan.stopped
    described = plan.describe()
    assert "frames     0 (none can be read from frame 0 of the input on)" in described
    assert "shots      0" in described


def test_the_stylizer_starts_a_shot_where_the_plan_does(cut, tmp_path, tiny, monkeypatch):
    from vidiff import stylize_video
    from vidiff.pipelines.img2img import Img2ImgProcessor

    starts, original = [], Img2ImgProcessor.process

    def recording(self, frames, first_index, *args, **kwargs):
        results = original(self, frames, first_index, *args, **kwargs)
        starts.extend(first_index + n for n, result in enumerate(results) if result.new_shot)
        return results

    monkeypatch.setattr(Img2ImgProcessor, "process", recording)
    stylize_video(cut, tmp_path / "out.mp4", parts=tiny, prompt="x", steps=2, max_side=32)
    plan = plan_run(cut, tmp_path / "planned.mp4", Config(prompt="x", max_side=32))
    assert starts == [shot.first for shot in plan.shots] == [0, BEFORE]
