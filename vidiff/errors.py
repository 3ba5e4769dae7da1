"""The one error type vidiff raises for problems the user can fix, and its kind for a bad setting."""

from __future__ import annotations

import re
from typing import Any


class VidiffError(Exception):
    """A bad input, option or environment, with a message that says what to do.

    The command line prints the message as one line and exits with code 2; anything else that
    escapes is a bug in vidiff and keeps its traceback. A message is written as the command line
    names settings (`--max-side`); str() names them as the Python API does (`max_side`), and
    on_command_line() gives the text as written.
    """

    def __str__(self) -> str:
        return _as_fields(super().__str__())

    def on_command_line(self) -> str:
        return super().__str__()


def _as_fields(text: str) -> str:
    """`--max-side` -> `max_side`, for every option in `text` that is a setting."""
    from .settings.config import SETTINGS  # here: the settings import this module

    def field(match: re.Match) -> str:
        name = match.group(1).replace("-", "_")
        return name if name in SETTINGS else match.group(0)

    return re.sub(r"(?<![\w-])--([a-z][a-z-]*)", field, text)


class Interrupted(Exception):
    """The user stopped a run (Ctrl-C); its work is saved and the same command resumes it."""


def option_name(setting: str) -> str:
    """A setting's command-line option: `max_side` is `--max-side`."""
    return "--" + setting.replace("_", "-")


class ConfigError(VidiffError):
    """A setting with a bad value. It knows the setting, so that each caller names it the way its user
    wrote it: the API by field (`strength 1.5: ...`), the command line by option (`--strength 1.5: ...`,
    see on_command_line), a preset by its file and key.

    `mentions` are the other settings the words name (by field name), which the command line names
    as options too.
    """

    def __init__(self, field: str, value: Any, allowed: str, where: str | None = None, mentions: tuple[str, ...] = ()):
        self.field, self.value, self.allowed, self.where, self.mentions = field, value, allowed, where, mentions
        super().__init__(self._message(as_options=False))

    def _message(self, as_options: bool) -> str:
        if self.where:  # a preset file: name the file and the key
            return f"{self.where}: {self.field} = {self.value!r}: {self.allowed}"
        name, allowed = self.field, self.allowed
        if as_options:
            name = option_name(name)
            for other in self.mentions:
                allowed = allowed.replace(other, option_name(other))
        return f"{name} {self.value!r}: {allowed}"

    def on_command_line(self) -> str:
        """The message with the settings named as the command line's options."""
        return self._message(as_options=True)

    def located(self, where: str) -> "ConfigError":
        return ConfigError(self.field, self.value, self.allowed, where, self.mentions)
