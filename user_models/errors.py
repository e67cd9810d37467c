"""Errors that mean "the input is wrong", as opposed to a bug in recsim-env.

The CLI turns any :class:`InputError` into a one-line message and exit code 2; library users catch it
to tell bad data, bad arguments and bad files apart from programming errors.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a file, row, column, value or argument that the user can fix.

    The message names what is wrong (file, row, column, value) in one line.
    """


class DatasetError(InputError):
    """A dataset artifact or a raw log that cannot be read or fails validation."""


class CheckpointError(InputError):
    """A model checkpoint that is missing, corrupt, of another format version or of another dataset."""


class OutputError(InputError):
    """An output path that may not be written or replaced (see :mod:`user_models.outputs`)."""


class TrainingError(InputError):
    """Training cannot go on: the loss or the weights became non-finite (a learning rate too high)."""
