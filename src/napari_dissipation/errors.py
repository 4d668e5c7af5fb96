"""Exceptions that carry a message meant for the user."""


class InputError(ValueError):
    """Bad input from the user: a file, an array or an option that cannot be used.

    The message is one line that names the file (or argument) and the problem; the
    command line prints it without a traceback and exits with status 2.
    """
