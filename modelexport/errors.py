"""Errors the exporter reports to its user as a message, without a traceback."""


class ExportError(Exception):
    """An export that cannot go ahead; the message says what to do instead."""


class SourceUnavailable(ExportError):
    """The weights could not be fetched or read from the chosen source."""


class VersionExists(ExportError):
    """The requested version folder is already there and --force was not given."""


class VerificationFailed(ExportError):
    """The written SavedModel does not honour the model contract."""


class CheckpointUnreadable(SourceUnavailable):
    """A weights file is damaged, in a format the reader does not know, or asks to run code."""
