"""`vidiff ui` on the command line: without gradio it says what to install, in one line."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from vidiff.cli import cli


def test_without_gradio_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    result = CliRunner().invoke(cli, ["ui"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["vidiff: error: the web UI needs Gradio: pip install vidiff[ui]"]


def test_it_serves_on_localhost_unless_told(monkeypatch):
    pytest.importorskip("gradio", reason="the UI needs gradio: pip install vidiff[ui]")
    served = {}
    monkeypatch.setattr("vidiff.ui.app.serve", lambda host, port, root=None: served.update(host=host, port=port))
    assert CliRunner().invoke(cli, ["ui"]).exit_code == 0
    assert served == {"host": "127.0.0.1", "port": 7860}
    assert CliRunner().invoke(cli, ["ui", "--host", "0.0.0.0", "--port", "8000"]).exit_code == 0
    assert served == {"host": "0.0.0.0", "port": 8000}
