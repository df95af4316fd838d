"""Exceptions for user mistakes: the CLI prints them as one line and exits non-zero."""
import sys
from typing import Optional


class EDTalkError(Exception):
    """Base class for errors caused by bad input or configuration (not bugs).

    `field` names the input a mistake concerns (an argument of `EDTalkPipeline`: "source", "audio",
    "lip", "pose", "exp", "exp_text", "checkpoint", "out", ...; None when no one input is at fault);
    `plain` is the message without command-line flags, to show beside that input in a form.
    The message itself (`str(error)`) is what the command line prints.
    """

    def __init__(self, *args, field: Optional[str] = None, plain: Optional[str] = None):
        super().__init__(*args)
        self.field = field
        self._plain = plain

    @property
    def plain(self) -> str:
        return self._plain if self._plain is not None else str(self)


class InputError(EDTalkError):
    """An input file is missing, unreadable, empty, or has no usable content."""


class FaceNotFoundError(InputError):
    """No face (or not exactly the face we need) was found in an image or video."""


class CheckpointError(EDTalkError):
    """A checkpoint is missing, of the wrong kind, or unsafe to load."""


def exit_code_of(command, *args) -> int:
    """Run an entry point's command: a user mistake is one `edtalk: error:` line and exit code 2,
    Ctrl-C is exit code 130 (never a traceback for either)."""
    try:
        return command(*args)
    except EDTalkError as exc:
        print(f"edtalk: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edtalk: interrupted", file=sys.stderr)
        return 130
