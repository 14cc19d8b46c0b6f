"""The errors of ``llmfbn.io``: each names the file or folder it is about."""

__all__ = [
    "FolderKindError",
    "FormatError",
    "OutputExistsError",
    "OutputLockedError",
    "ResumeMismatchError",
]


class FormatError(ValueError):
    """A file llmfbn should read is damaged, incomplete or of an unknown format version."""


class FolderKindError(ValueError):
    """A folder is of another kind than the one asked for (or not llmfbn's at all)."""


class OutputExistsError(FileExistsError):
    """The output exists and replacing it was not asked for.

    Attributes
    ----------
    path : Path
        The existing output.
    """

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path

    def __str__(self):
        return self.args[0]


class OutputLockedError(BlockingIOError):
    """Another process is writing the same output right now."""

    def __str__(self):
        return self.args[0]


class ResumeMismatchError(ValueError):
    """Resuming would mix results made with other settings or inputs."""
