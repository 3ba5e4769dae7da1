"""Frame rates as exact fractions; plain Python, so that the settings can check one without OpenCV."""

from __future__ import annotations

import math
from fractions import Fraction


def exact_fps(fps: float) -> Fraction:
    """The rational frame rate behind OpenCV's float: 29.97002997 -> 30000/1001, 25.0 -> 25."""
    return Fraction(fps).limit_denominator(10000)


def parse_fps(value: str | float | Fraction) -> Fraction:
    """A frame rate from a number or text ('24', '12.5', '30000/1001'); ValueError unless in (0, 1000]."""
    if isinstance(value, str):
        try:
            rate = Fraction(value.strip())
        except ZeroDivisionError:
            raise ValueError(f"not a frame rate: {value!r}") from None
    elif isinstance(value, Fraction):
        rate = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        rate = exact_fps(value) if isinstance(value, float) else Fraction(value)
    else:
        raise ValueError(f"not a frame rate: {value!r}")
    if not 0 < rate <= 1000:
        raise ValueError(f"not a frame rate: {value!r}")
    return rate
