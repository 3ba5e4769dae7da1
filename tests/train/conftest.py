"""Fixtures of the training tests: folders of small pictures."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_flat_pictures

RED = (220, 60, 40)  # RGB


@pytest.fixture
def red_pictures(tmp_path) -> Path:
    """Four flat red pictures, two square and two of other shapes (three buckets at 64 px)."""
    return write_flat_pictures(tmp_path / "red", [(64, 64), (64, 64), (80, 64), (64, 96)], RED)
