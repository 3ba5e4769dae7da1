"""Keyframed schedules: settings that change over the video, written as Deforum-style keyframe strings.

    "0:0.3, 48:0.7"          by frame index (frame 0 is the first frame of the output)
    "0s:0.3, 2.5s:0.7"       by time in seconds from the output's start
    "0:a wooden carving | 120:a marble statue"    a prompt: texts separated by |

Between keyframes a value moves linearly (or in steps, or smoothly); before the first keyframe it
holds the first value, after the last the last. At a keyframe it is exactly that keyframe's value.
This module is pure Python: parsing, validation and interpolation, no models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Callable

from ..errors import ConfigError, VidiffError, option_name

INTERPOLATIONS = ("linear", "step", "smooth")

# What a setting's keyframes hold, as its Config field declares it (config.setting(keyframes=...)).
# Whole numbers (seeds) step from keyframe to keyframe instead of moving between them.
NUMBERS, WHOLE_NUMBERS, TEXTS = "numbers", "whole numbers", "texts"

_POSITION = re.compile(r"\s*(\d+(?:\.\d+)?)(s?)\s*:")
_NUMBER_EXAMPLE = "such as 48:0.7 (frame 48) or 2.5s:0.7 (2.5 seconds)"
_TEXT_EXAMPLE = "such as 120:a marble statue (frame 120) or 5s:a marble statue"


class ScheduleError(VidiffError, ValueError):
    """A keyframe string that can't be read; the message names the keyframe and what was expected."""


class SettingScheduleError(ConfigError, ScheduleError):
    """A setting's keyframes that can't be placed on the video: named as any other bad setting is."""


@dataclass(frozen=True)
class Keyframe:
    at: float  # a frame index, or seconds when `seconds` is true
    seconds: bool
    value: Any

    def label(self) -> str:
        return f"{self.at:g}s" if self.seconds else f"{self.at:g}"


def is_number_schedule(value: Any) -> bool:
    """Whether a setting's value is a keyframe string rather than a plain number."""
    return isinstance(value, str)


def is_text_schedule(text: Any) -> bool:
    """Whether a prompt is a keyframe string: it starts with a position and has at least two keyframes."""
    return isinstance(text, str) and "|" in text and _POSITION.match(text) is not None


def parse_numbers(text: str, integer: bool = False) -> list[Keyframe]:
    """Parse "0:0.3, 48:0.7" (or with seconds, "0s:0.3, 2.5s:0.7") into keyframes with number values."""
    reader = int if integer else float
    kind = "a whole number" if integer else "a number"

    def value_of(raw: str, number: int, column: int) -> Any:
        try:
            value = reader(raw)
        except ValueError:
            raise ScheduleError(
                f"keyframe {number} (character {column}): expected {kind} after the colon, got {raw.strip()!r}"
            ) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ScheduleError(f"keyframe {number} (character {column}): {raw.strip()!r} is not a finite number")
        return value

    return _parse(text, ",", value_of, _NUMBER_EXAMPLE)


def parse_texts(text: str) -> list[Keyframe]:
    """Parse "0:a wooden carving | 120:a marble statue" into keyframes with text values."""

    def value_of(raw: str, number: int, column: int) -> str:
        if not raw.strip():
            raise ScheduleError(f"keyframe {number} (character {column}): expected a text after the colon")
        return raw.strip()

    return _parse(text, "|", value_of, _TEXT_EXAMPLE)


def _parse(text: str, separator: str, value_of: Callable[[str, int, int], Any], example: str) -> list[Keyframe]:
    if not text.strip():
        raise ScheduleError(f"expected keyframes {example}, got an empty text")
    keyframes, column = [], 1
    for number, piece in enumerate(text.split(separator), start=1):
        match = _POSITION.match(piece)
        here = column + len(piece) - len(piece.lstrip())  # where the keyframe's first character is
        if match is None:
            where = "" if piece.strip() else " (nothing between two separators)"
            raise ScheduleError(
                f"keyframe {number} (character {here}): expected POSITION:VALUE, {example}, "
                f"got {piece.strip()!r}{where}"
            )
        position, seconds = match.group(1), match.group(2) == "s"
        if not seconds and "." in position:
            raise ScheduleError(
                f"keyframe {number} (character {here}): frame {position} must be a whole number; "
                f"write {position}s for seconds"
            )
        value = value_of(piece[match.end() :], number, column + match.end())
        keyframe = Keyframe(float(position), seconds, value)
        if keyframes and keyframes[-1].seconds == seconds and keyframe.at <= keyframes[-1].at:
            raise ScheduleError(
                f"keyframe {number} (character {here}): {keyframe.label()} comes after "
                f"{keyframes[-1].label()}; keyframes must be in increasing order"
            )
        keyframes.append(keyframe)
        column += len(piece) + len(separator)
    return keyframes


def split_weighted(spec: str) -> tuple[str, Any]:
    """'NAME[:WEIGHT]' -> (name, weight): split at the first colon after which a weight (a number or a
    keyframe string) follows; with none, the whole text is the name and the weight 1.0."""
    for match in re.finditer(":", spec):
        name, weight = spec[: match.start()].strip(), spec[match.end() :].strip()
        if not name:
            continue
        try:
            return name, float(weight)
        except ValueError:
            pass
        try:
            parse_numbers(weight)
        except ScheduleError:
            continue
        return name, weight
    return spec.strip(), 1.0


def parse_mix(text: str) -> tuple[str, Any]:
    """Split "TEXT:WEIGHT"; the weight is required."""
    name, weight = split_weighted(text)
    if name == text.strip():
        raise ScheduleError(f"expected TEXT:WEIGHT, such as 'a frog:0.5' or 'a frog:0:0, 48:1', got {text!r}")
    return name, weight


class Schedule:
    """A setting's keyframes placed on the video's frames: ask it for the value at any frame."""

    def __init__(self, keyframes: list[Keyframe], fps: float | None, interpolation: str = "linear"):
        if any(k.seconds for k in keyframes) and not fps:
            raise ScheduleError("keyframes in seconds need the video's frame rate")
        self.keyframes = keyframes
        self.positions = [k.at * fps if k.seconds else k.at for k in keyframes]
        self.interpolation = interpolation
        for earlier, later, keyframe in zip(self.positions, self.positions[1:], keyframes[1:]):
            if later <= earlier:
                raise ScheduleError(
                    f"keyframe {keyframe.label()} falls at frame {later:g}, not after the keyframe before it "
                    f"(frame {earlier:g}); keyframes must be in increasing order"
                )

    @classmethod
    def constant(cls, value: Any) -> "Schedule":
        return cls([Keyframe(0.0, False, value)], None)

    @property
    def is_constant(self) -> bool:
        return len(self.keyframes) == 1

    def weights(self, frame: int) -> list[tuple[Any, float]]:
        """The keyframe values that make up this frame's value, with their weights (summing to 1)."""
        positions, values = self.positions, [k.value for k in self.keyframes]
        if frame <= positions[0]:
            return [(values[0], 1.0)]
        if frame >= positions[-1]:
            return [(values[-1], 1.0)]
        after = next(i for i, position in enumerate(positions) if position > frame)
        before = after - 1
        if frame == positions[before]:
            return [(values[before], 1.0)]
        alpha = (frame - positions[before]) / (positions[after] - positions[before])
        if self.interpolation == "step":
            return [(values[before], 1.0)]
        if self.interpolation == "smooth":
            alpha = alpha * alpha * (3.0 - 2.0 * alpha)  # smoothstep: eases out of one keyframe into the next
        return [(values[before], 1.0 - alpha), (values[after], alpha)]

    def __call__(self, frame: int) -> float:
        """The value at `frame`, for number keyframes."""
        terms = self.weights(frame)
        if len(terms) == 1:
            return terms[0][0]
        return sum(value * weight for value, weight in terms)

    def past(self, frames: int) -> list[Keyframe]:
        """The keyframes that fall after the last of `frames` frames."""
        return [k for k, position in zip(self.keyframes, self.positions) if position > frames - 1]


def number_schedule(value: float | int | str, fps: float | None, interpolation: str, integer: bool = False) -> Schedule:
    """A setting's value (a number or a keyframe string) as a Schedule; whole numbers (seeds) step."""
    if not is_number_schedule(value):
        return Schedule.constant(value)
    return Schedule(parse_numbers(value, integer), fps, "step" if integer else interpolation)


def text_schedule(text: str, fps: float | None, interpolation: str) -> Schedule:
    """A prompt (plain or a keyframe string) as a Schedule; between keyframes its embeddings are mixed."""
    if not is_text_schedule(text):
        return Schedule.constant(text)
    return Schedule(parse_texts(text), fps, interpolation)


@dataclass(frozen=True)
class FrameValues:
    """Every per-frame setting's value at one frame."""

    strength: float
    guidance: float
    blend: float
    flow_blend: float
    fusion: float
    seed: int
    prompt: tuple[tuple[str, float], ...]  # texts and the weights of their embeddings in the conditioning
    negative_prompt: tuple[tuple[str, float], ...]
    control_scales: tuple[float, ...]  # each ControlNet's conditioning scale
    style_scale: float = 1.0  # how strongly the style image (IP-Adapter) acts


class Timeline:
    """A config's settings placed on a video's frames: prepared once, then asked for each frame's values."""

    def __init__(self, config, fps: float | None):
        interpolation = config.interpolation
        keyframed = {f.name: f.metadata["setting"].keyframes for f in fields(config) if f.metadata["setting"].keyframes}
        self.numbers = {
            name: _located(
                name, getattr(config, name), lambda v: number_schedule(v, fps, interpolation, kind == WHOLE_NUMBERS)
            )
            for name, kind in keyframed.items()
            if kind != TEXTS
        }
        self.texts = {
            name: _located(name, getattr(config, name), lambda v: text_schedule(v, fps, interpolation))
            for name, kind in keyframed.items()
            if kind == TEXTS
        }
        self.controls = [
            (name, _located("controlnet", spec, lambda _: number_schedule(weight, fps, interpolation)))
            for spec in config.controlnet
            for name, weight in [split_weighted(spec)]
        ]
        self.style = None
        if config.style_image is not None:
            _path, weight = split_weighted(config.style_image)
            self.style = _located("style_image", config.style_image, lambda _: number_schedule(weight, fps, interpolation))
        self.mixes = {}
        for name, option in (("prompt", "mix"), ("negative_prompt", "negative_mix")):
            mixes = [parse_mix(entry) for entry in getattr(config, option)]
            self.mixes[name] = [
                (text, _located(option, weight, lambda v: number_schedule(v, fps, interpolation)))
                for text, weight in mixes
            ]

    def at(self, frame: int) -> FrameValues:
        numbers = {name: schedule(frame) for name, schedule in self.numbers.items()}
        return FrameValues(
            **numbers,
            prompt=self._conditioning("prompt", frame),
            negative_prompt=self._conditioning("negative_prompt", frame),
            control_scales=tuple(schedule(frame) for _name, schedule in self.controls),
            style_scale=1.0 if self.style is None else self.style(frame),
        )

    def _conditioning(self, name: str, frame: int) -> tuple[tuple[str, float], ...]:
        """(1 − Σw)·E(prompt) + Σ wᵢ·E(textᵢ), as texts and weights; the prompt itself may travel."""
        mixes = [(text, schedule(frame)) for text, schedule in self.mixes[name]]
        rest = 1.0 - sum(weight for _, weight in mixes)
        terms = [(text, weight * rest) for text, weight in self.texts[name].weights(frame)] + mixes
        # a zero weight adds nothing; leaving it out keeps weight 0 bit-exact and saves an encoding
        return tuple((text, weight) for text, weight in terms if weight != 0)

    def scheduled(self) -> dict[str, Schedule]:
        """The settings that change over the video, by option name."""
        found = {option_name(name): s for name, s in {**self.numbers, **self.texts}.items() if not s.is_constant}
        for name, mixes in self.mixes.items():
            option = "--mix" if name == "prompt" else "--negative-mix"
            for text, schedule in mixes:
                if not schedule.is_constant:
                    found[f"{option} {text!r}"] = schedule
        for name, schedule in self.controls:
            if not schedule.is_constant:
                found[f"--controlnet {name!r}"] = schedule
        return found

    def past_end(self, frames: int) -> list[str]:
        """A warning for each keyframe that falls after the video's last frame."""
        notes = []
        for name, schedule in self.scheduled().items():
            for keyframe in schedule.past(frames):
                notes.append(
                    f"warning: {name} keyframe {keyframe.label()} falls after the last frame ({frames - 1}); "
                    "it is approached but never reached"
                )
        return notes


def _located(name: str, value: Any, build: Callable[[Any], Schedule]) -> Schedule:
    try:
        return build(value)
    except ScheduleError as err:
        raise SettingScheduleError(name, value, str(err)) from None
