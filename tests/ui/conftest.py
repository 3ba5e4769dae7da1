"""The UI's fixtures: a served app on a free port, and short clips to upload."""

from __future__ import annotations

import os
import socket

import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no calls home

from helpers import make_clip  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The UI served on 127.0.0.1 at a free port: (app, url); closed after the module."""
    pytest.importorskip("gradio", reason="the UI needs gradio: pip install vidiff[ui]")
    from vidiff.ui.app import serve

    app, url = serve("127.0.0.1", free_port(), root=tmp_path_factory.mktemp("ui"), block=False)
    yield app, url
    app.close()


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """8 frames of 64x48."""
    return make_clip(tmp_path_factory.mktemp("ui-clips") / "short.mp4", size="64x48", rate="24", seconds=8 / 24)
