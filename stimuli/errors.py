"""Errors every part of smart-study raises for bad input.

A ``SmartStudyError`` is a user-facing problem (a bad file, a bad argument): the
command-line tools print its message on one line and exit non-zero, never a traceback.
Messages name the file, line, frame or field and say what was expected.
"""

from __future__ import annotations

__all__ = ["SmartStudyError", "DataError", "MotionFormatError"]


class SmartStudyError(Exception):
    """Base class of every error meant for the user rather than the developer."""


class DataError(SmartStudyError, ValueError):
    """A data file (motion, dataset, checkpoint, batch) is missing, corrupt or unexpected."""


class MotionFormatError(DataError):
    """An in-memory motion array does not follow the canonical layout."""
