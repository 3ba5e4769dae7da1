"""Fixtures of the training tests: folders of small pictures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

RED = (220, 60, 40)  # RGB


def write_flat(folder: Path, sizes, colour=RED) -> Path:
    """Pictures of one flat colour, one per (width, height), named p0.png, p1.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (width, height) in enumerate(sizes):
        picture = np.empty((height, width, 3), np.uint8)
        picture[:] = colour
        assert cv2.imwrite(str(folder / f"p{index}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture
def red_pictures(tmp_path) -> Path:
    return write_flat(tmp_path / "red", [(64, 64), (64, 64), (80, 64), (64, 96)])
