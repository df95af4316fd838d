"""Exceptions for user mistakes: the CLI prints them as one line and exits non-zero."""


class EDTalkError(Exception):
    """Base class for errors caused by bad input or configuration (not bugs)."""


class InputError(EDTalkError):
    """An input file is missing, unreadable, empty, or has no usable content."""


class FaceNotFoundError(InputError):
    """No face (or not exactly the face we need) was found in an image or video."""


class CheckpointError(EDTalkError):
    """A checkpoint is missing, of the wrong kind, or unsafe to load."""
