"""The errors a user can fix: the command line prints their message as one paragraph and exits non-zero."""


class UserError(ValueError):
    """A mistake in what the user asked for (a path, an option, an input, an output folder).

    The message says what is wrong, where (file, field, line) and what to do; no traceback is needed.
    """


class MissingExtra(UserError, ImportError):
    """An optional dependency that is not installed; the message is the install line of its extra."""
