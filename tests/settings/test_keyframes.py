"""Keyframe strings: parsing, placing on frames, interpolation, and the errors they give."""

from __future__ import annotations

import numpy as np
import pytest

from vidiff.settings.config import Config, ConfigError
from vidiff.settings.keyframes import (
    Schedule, ScheduleError, Timeline, is_text_schedule, number_schedule, parse_mix, parse_numbers, parse_texts,
)
from vidiff.pipelines.img2img import Img2ImgProcessor


@pytest.mark.parametrize("interpolation", ["linear", "step", "smooth"])
def test_keyframes_are_hit_exactly_and_held_outside(interpolation):
    schedule = number_schedule("4:0.3, 10:0.7, 20:0.45", None, interpolation)
    assert [schedule(frame) for frame in (4, 10, 20)] == [0.3, 0.7, 0.45]
    assert schedule(0) == schedule(3) == 0.3  # held before the first keyframe
    assert schedule(21) == schedule(500) == 0.45  # and after the last


def test_linear_step_and_smooth_between_keyframes():
    linear, step, smooth = (number_schedule("0:0.2, 10:0.6", None, mode) for mode in ("linear", "step", "smooth"))
    assert linear(5) == pytest.approx(0.4) and linear(2) == pytest.approx(0.28)
    assert step(5) == step(9) == 0.2 and step(10) == 0.6
    # smoothstep: the same midpoint, slower near the keyframes, and always between them
    assert smooth(5) == pytest.approx(0.4)
    assert 0.2 < smooth(1) < linear(1) and linear(9) < smooth(9) < 0.6
    values = [smooth(frame) for frame in range(11)]
    assert values == sorted(values)


def test_seconds_are_placed_with_the_frame_rate():
    schedule = number_schedule("0s:0.3, 2.5s:0.7", 24.0, "linear")
    assert schedule.positions == [0, 60]
    assert schedule(60) == 0.7 and schedule(30) == pytest.approx(0.5)
    # units may be mixed once the frame rate is known
    assert number_schedule("0:1, 1s:2, 48:3", 24.0, "linear").positions == [0, 24, 48]


def test_seeds_step_rather_than_interpolate():
    seeds = number_schedule("0:1234, 10:99", None, "linear", integer=True)
    assert [seeds(frame) for frame in (0, 9, 10, 11)] == [1234, 1234, 99, 99]
    assert all(isinstance(seeds(frame), int) for frame in range(12))


@pytest.mark.parametrize(
    "text, where, expected",
    [
        ("0:0.3, 48", "keyframe 2 (character 8)", "expected POSITION:VALUE"),
        ("0:0.3, 48:x", "keyframe 2 (character 11)", "expected a number"),
        ("0:0.3,, 48:1", "keyframe 2 (character 7)", "nothing between two separators"),
        ("10:0.3, 5:0.4", "keyframe 2 (character 9)", "increasing order"),
        ("0:0.3, 4.5:0.4", "keyframe 2 (character 8)", "write 4.5s for seconds"),
        ("-1:0.3", "keyframe 1 (character 1)", "expected POSITION:VALUE"),
        ("0:nan", "keyframe 1 (character 3)", "not a finite number"),
        ("", "", "expected keyframes"),
    ],
)
def test_malformed_keyframes_name_the_position_and_what_was_expected(text, where, expected):
    with pytest.raises(ScheduleError) as caught:
        parse_numbers(text)
    assert where in str(caught.value) and expected in str(caught.value)


def test_mixed_units_out_of_order_are_caught_once_placed():
    with pytest.raises(ScheduleError, match="increasing order"):
        number_schedule("2s:0.3, 24:0.4", 24.0, "linear")  # 2 s is frame 48, after frame 24
    with pytest.raises(ScheduleError, match="frame rate"):
        number_schedule("0s:0.3, 2s:0.4", None, "linear")


def test_prompt_keyframes_need_a_position_and_two_keyframes():
    assert is_text_schedule("0:a wooden carving | 120:a marble statue")
    assert not is_text_schedule("style: wooden | marble")  # no position first: a plain prompt
    assert not is_text_schedule("1:1 scale model")  # one keyframe is just a prompt with a colon
    keyframes = parse_texts("0:a wooden carving | 5s: a marble statue")
    assert [(k.at, k.seconds, k.value) for k in keyframes] == [(0, False, "a wooden carving"), (5, True, "a marble statue")]
    with pytest.raises(ScheduleError, match="keyframe 2 .*expected a text"):
        parse_texts("0:a wooden carving | 120:  ")


def test_mix_splits_at_the_colon_a_weight_follows():
    assert parse_mix("a frog:0.5") == ("a frog", 0.5)
    assert parse_mix("a 16:9 poster:0.25") == ("a 16:9 poster", 0.25)
    assert parse_mix("a frog:0:0, 48:1") == ("a frog", "0:0, 48:1")
    with pytest.raises(ScheduleError, match="TEXT:WEIGHT"):
        parse_mix("a frog")


def _timeline(**settings) -> Timeline:
    return Timeline(Config(**{"prompt": "a rabbit", **settings}).validate(), 24.0)


def test_mixing_weights_follow_the_formula():
    assert _timeline().at(0).prompt == (("a rabbit", 1.0),)
    # weight 0 is the prompt alone; 1 the other text alone; in between, (1 − Σw) and the wᵢ
    assert _timeline(mix=("a frog:0",)).at(0).prompt == (("a rabbit", 1.0),)
    assert _timeline(mix=("a frog:1",)).at(0).prompt == (("a frog", 1.0),)
    terms = dict(_timeline(mix=("a frog:0.3", "a cat:0.2")).at(0).prompt)
    assert terms == pytest.approx({"a rabbit": 0.5, "a frog": 0.3, "a cat": 0.2})
    assert dict(_timeline(negative_mix=("blurry:0.25",)).at(0).negative_prompt) == {"": 0.75, "blurry": 0.25}


def test_prompt_travel_and_scheduled_mix_weights():
    timeline = _timeline(prompt="0:a wooden carving | 10:a marble statue", mix=("gold:0:0, 10:0.5",))
    assert timeline.at(0).prompt == (("a wooden carving", 1.0),)
    assert dict(timeline.at(5).prompt) == pytest.approx(
        {"a wooden carving": 0.75 * 0.5, "a marble statue": 0.75 * 0.5, "gold": 0.25}
    )
    assert dict(timeline.at(10).prompt) == pytest.approx({"a marble statue": 0.5, "gold": 0.5})


def test_every_scheduled_setting_reaches_the_frame_values():
    timeline = _timeline(strength="0:0.3, 10:0.7", guidance="0:1, 10:9", blend="0:0, 10:0.5",
                         flow_blend="0s:0.2, 1s:0.6", seed="0:5, 6:7")  # fmt: skip
    first, middle, last = timeline.at(0), timeline.at(5), timeline.at(24)
    assert (first.strength, first.guidance, first.blend, first.flow_blend, first.seed) == (0.3, 1, 0, 0.2, 5)
    assert middle.strength == pytest.approx(0.5) and middle.guidance == pytest.approx(5) and middle.seed == 5
    assert middle.blend == pytest.approx(0.25) and middle.flow_blend == pytest.approx(0.2 + 0.4 * 5 / 24)
    assert (last.strength, last.flow_blend, last.seed) == (0.7, 0.6, 7)


def test_keyframes_past_the_end_are_warned_about():
    timeline = _timeline(strength="0:0.3, 100:0.7", prompt="0:a | 2s:b", seed="0:1, 10:2")
    notes = timeline.past_end(30)
    assert len(notes) == 2
    assert any("--strength keyframe 100" in note for note in notes)
    assert any("--prompt keyframe 2s" in note for note in notes)
    assert timeline.past_end(101) == []


@pytest.mark.parametrize(
    "settings, option, expected",
    [
        ({"strength": "0:0.3, 48:1.7"}, "--strength", "keyframe 2 (48): 1.7 must be a number in [0, 1]"),
        ({"guidance": "0:7, x"}, "--guidance", "keyframe 2 (character 6)"),
        ({"seed": "0:1.5"}, "--seed", "expected a whole number"),
        ({"blend": "0:0, 10:1"}, "--blend", "[0, 1)"),
        ({"mix": ("a frog:1.5",)}, "--mix", "weight 1.5 must be a number in [0, 1]"),
        ({"mix": ("a frog:0:0, 10:2",)}, "--mix", "keyframe 2 (10): 2.0 must be"),
        ({"negative_mix": ("blurry",)}, "--negative-mix", "TEXT:WEIGHT"),
        ({"prompt": "0:a | 10:"}, "--prompt", "keyframe 2 (character 10): expected a text"),
        ({"interpolation": "cubic"}, "--interpolation", "must be one of linear, step, smooth"),
        ({"strength": "0:0.02, 10:0.5", "steps": 30}, "--strength", "a strength of 0.02 gives int(steps × strength) = 0"),
    ],
)
def test_config_rejects_bad_keyframes_naming_the_setting(settings, option, expected):
    with pytest.raises(ConfigError) as caught:
        Config(**{"prompt": "x", **settings}).validate()
    message, field = str(caught.value), option[2:].replace("-", "_")
    assert message.startswith(field + " ") and expected in message, message
    # the command line names the option instead, in the same words
    assert caught.value.on_command_line() == option + message[len(field) :]


def test_a_constant_schedule_is_the_plain_value():
    assert Schedule.constant(0.4)(1000) == 0.4 and Schedule.constant(0.4).is_constant
    assert number_schedule(0.4, None, "linear")(7) == 0.4


# --- the stylizer: at a keyframe a frame equals a run with that constant value ---


def _frame(parts, index: int, fps=None, **settings) -> np.ndarray:
    config = Config(**{"prompt": "a lighthouse", "steps": 8, "strength": 0.5, "scheduler": "euler", **settings})
    with Img2ImgProcessor(parts, config.validate(), fps) as stylizer:
        return stylizer(FRAME, index).image.astype(int)


FRAME = np.random.default_rng(8).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "option, keyframes, cases",
    [
        # (frame index, the constant it must equal)
        ("strength", "0:0.25, 4:0.75", [(0, 0.25), (4, 0.75), (2, 0.5), (9, 0.75)]),
        ("guidance", "0:1, 4:7", [(0, 1), (4, 7), (2, 4)]),
        ("seed", "0:3, 2:9", [(1, 3), (2, 9)]),
    ],
)
def test_scheduled_frames_equal_constant_runs(tiny, option, keyframes, cases):
    for index, constant in cases:
        scheduled = _frame(tiny, index, **{option: keyframes})
        assert np.abs(scheduled - _frame(tiny, index, **{option: constant})).max() <= 1, (option, index)
    # and the schedule does change the frames: its ends differ
    first, last = cases[0], cases[1]
    assert np.abs(_frame(tiny, first[0], **{option: first[1]}) - _frame(tiny, first[0], **{option: last[1]})).max() > 1


def test_keyframes_in_seconds_use_the_frame_rate_given_to_the_stylizer(tiny):
    scheduled = _frame(tiny, 24, fps=24.0, strength="0s:0.25, 1s:0.75")
    assert np.abs(scheduled - _frame(tiny, 24, strength=0.75)).max() <= 1
    with pytest.raises(ScheduleError, match="frame rate"):
        _frame(tiny, 0, strength="0s:0.25, 1s:0.75")
