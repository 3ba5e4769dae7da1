"""The transient 'loading the model' line: on a terminal only, erased when loading ends or fails, so
that piped stderr and every error stay one line."""

from __future__ import annotations

import io

import click.testing
import pytest
from click.testing import CliRunner

from vidiff.cli import cli
from vidiff.status import ERASE_LINE, status_line


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def shown(text: str) -> str:
    """What a terminal shows of `text`: each line as it stands after its last carriage return and erase."""
    return "\n".join(line.split("\r")[-1].replace("\033[K", "") for line in text.split("\n"))


def test_the_line_shows_on_a_terminal_and_is_erased_when_done():
    terminal = FakeTerminal()
    with status_line("loading the model …", stream=terminal):
        assert terminal.getvalue() == "vidiff: loading the model …"
    assert terminal.getvalue().endswith(ERASE_LINE) and shown(terminal.getvalue()) == ""


def test_the_line_is_erased_before_an_error_goes_on():
    terminal = FakeTerminal()
    with pytest.raises(ValueError):
        with status_line("loading the model …", stream=terminal):
            raise ValueError("no such model")
    assert shown(terminal.getvalue()) == ""


@pytest.mark.parametrize("enabled, stream", [(True, io.StringIO()), (False, FakeTerminal())], ids=["piped", "quiet"])
def test_nothing_is_written_when_piped_or_quiet(enabled, stream):
    with status_line("loading the model …", enabled=enabled, stream=stream):
        pass
    assert stream.getvalue() == ""


@pytest.fixture
def terminal_stderr(monkeypatch):
    """CliRunner's stderr, made to say it is a terminal."""
    monkeypatch.setattr(click.testing._NamedTextIOWrapper, "isatty", lambda self: True, raising=False)


def stylize(clip, out, model, *extra):
    return CliRunner().invoke(cli, ["stylize", str(clip), str(out), "--model", str(model), "--prompt", "x",
                                    "--steps", "2", "--max-frames", "2", "--max-side", "64", *extra])  # fmt: skip


def test_on_a_terminal_a_failed_load_shows_only_the_error(clips, tmp_path, terminal_stderr):
    (tmp_path / "not-a-model").mkdir()
    result = stylize(clips["plain"], tmp_path / "out.mp4", tmp_path / "not-a-model")
    assert result.exit_code == 2
    assert result.stderr.startswith("vidiff: loading the model")  # it was shown while loading
    assert shown(result.stderr).splitlines() == [result.stderr.split(ERASE_LINE)[-1].rstrip("\n")]
    assert shown(result.stderr).startswith("vidiff: error: model folder")


def test_on_a_terminal_the_line_is_gone_once_the_run_is_done(clips, tmp_path, terminal_stderr):
    result = stylize(clips["plain"], tmp_path / "out.mp4", "tiny")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "vidiff: loading the model" in result.stderr
    assert "loading the model" not in shown(result.stderr)
    quiet = stylize(clips["plain"], tmp_path / "quiet.mp4", "tiny", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""
