"""Reading from a shot's first frame gives the frames that reading in order gives, frame for frame:
across keyframes, after a start trim, past damaged frames, and in image sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import cut_clip, damaged_clip, write_images
from vidiff.errors import VidiffError
from vidiff.io.reader import VideoReader, probe
from vidiff.settings.config import Config
from vidiff.temporal.change import is_cut

CUT = 30  # where the long clip switches from testsrc2 to smptebars: inside its third 12-frame GOP
LENGTH = 72  # 3 s at 24 fps


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """3 s in GOPs of 12 frames with B-frames, a cut at frame 30: a seek must decode across keyframes."""
    folder = tmp_path_factory.mktemp("seek")
    return cut_clip(folder / "gops.mp4", CUT, LENGTH - CUT, "-g", "12", "-bf", "2", "-crf", "12")


def in_order(source, **trims) -> list[np.ndarray]:
    with VideoReader(source, **trims) as reader:
        return list(reader)


def test_the_long_clip_is_what_the_tests_need(long_clip):
    frames = in_order(long_clip)
    assert len(frames) == LENGTH
    assert [n for n in range(1, LENGTH) if is_cut(frames[n - 1], frames[n], Config.cut_threshold)] == [CUT]


@pytest.mark.parametrize("frame", [0, 1, 11, 12, 13, CUT - 1, CUT, CUT + 1, 50, LENGTH - 1])
def test_a_frame_read_from_its_own_index_is_the_frame_read_in_order(long_clip, frame):
    everything = in_order(long_clip)
    with VideoReader(long_clip) as reader:
        sought = list(reader.frames(frame, source_first=frame))
    assert len(sought) == LENGTH - frame
    assert all(np.array_equal(a, b) for a, b in zip(sought, everything[frame:]))


@pytest.mark.parametrize("frame", [CUT, CUT + 5, CUT + 18, LENGTH - 1])
def test_resuming_inside_a_shot_counts_from_its_first_frame(long_clip, frame):
    everything = in_order(long_clip)
    with VideoReader(long_clip) as reader:
        resumed = reader.frames(frame, source_first=CUT, shot_first=CUT)
        assert np.array_equal(next(resumed), everything[frame])
    # without a source frame, it counts from the start trim
    with VideoReader(long_clip) as reader:
        assert np.array_equal(next(iter(reader.frames(frame))), everything[frame])


def test_seeking_after_a_start_trim_and_up_to_a_frame_limit(long_clip):
    everything = in_order(long_clip)
    trims = dict(start=0.5, max_frames=40)  # output frame 0 is input frame 12; 40 frames in all
    with VideoReader(long_clip, **trims) as reader:
        assert reader.start_frame == 12
        numbered = list(reader.indexed_frames(CUT - 12, source_first=CUT))
    assert [index for index, _ in numbered] == list(range(CUT, 12 + 40))
    assert all(np.array_equal(frame, everything[index]) for index, frame in numbered)
    with VideoReader(long_clip, **trims) as reader, pytest.raises(ValueError, match="start trim"):
        next(reader.frames(0, source_first=5))  # before the trim's first frame


def test_image_sequence_starts_at_the_file(tmp_path, monkeypatch):
    names = [f"img_{i:03d}.png" for i in range(1, 9)]
    pictures = write_images(tmp_path / "frames", names)
    assert all(np.array_equal(a, b) for a, b in zip(in_order(tmp_path / "frames"), pictures))

    import cv2

    info = probe(tmp_path / "frames")  # probing reads the first image; the reader need not
    opened, imread = [], cv2.imread
    monkeypatch.setattr(cv2, "imread", lambda name, *args: opened.append(Path(name).name) or imread(name, *args))
    for frame in (0, 3, 7):
        opened.clear()
        with VideoReader(info) as reader:
            sought = list(reader.frames(frame, source_first=frame))
        assert opened == names[frame:]  # the images before it are not even read
        assert all(np.array_equal(a, b) for a, b in zip(sought, pictures[frame:], strict=True))
    with VideoReader(info) as reader:  # a resume inside a shot that starts at frame 2
        assert np.array_equal(next(reader.frames(5, source_first=2, shot_first=2)), pictures[5])


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """An 8-frame clip, one frame per keyframe, whose frame 2 can't be decoded."""
    return damaged_clip(tmp_path_factory.mktemp("damaged"), 8, {2})[1]


def test_seeking_past_damaged_frames_as_reading_in_order(damaged):
    skipped = in_order(damaged, on_bad_frame="skip")
    assert len(skipped) == 7
    with VideoReader(damaged, on_bad_frame="skip") as reader:
        # output frame 2 is input frame 3: the damaged frame is not counted
        assert [index for index, _ in reader.indexed_frames(2, source_first=3)] == [3, 4, 5, 6, 7]
    with VideoReader(damaged, on_bad_frame="skip") as reader:  # a resume counts past the damage as in order
        assert all(np.array_equal(a, b) for a, b in zip(reader.frames(4, source_first=0, shot_first=0), skipped[4:],
                                                        strict=True))  # fmt: skip
    with VideoReader(damaged) as reader:  # "stop": damage before the frame sought is not read
        assert len(list(reader.frames(0, source_first=3))) == 5
    with VideoReader(damaged) as reader, pytest.raises(VidiffError, match="frame 2 "):
        list(reader.frames(4, source_first=1, shot_first=1))  # ... but damage after it is, as in order
