"""The one error type vidiff raises for problems the user can fix."""


class VidiffError(Exception):
    """A bad input, option or environment, with a message that says what to do.

    The command line prints the message as one line and exits with code 2; anything else that
    escapes is a bug in vidiff and keeps its traceback.
    """


class Interrupted(Exception):
    """The user stopped a run (Ctrl-C); its work is saved and the same command resumes it."""


def option_name(setting: str) -> str:
    """A setting's command-line option: `max_side` is `--max-side`."""
    return "--" + setting.replace("_", "-")
