"""Exceptions that carry a message meant for the user."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: a file, an array or an option that cannot be used.

    The message is one line that names the file (or argument) and says what is wrong in
    words; it never names a command-line flag, because the same message reaches Python
    and widget users.  The face that shows it adds how to change the thing: the command
    line prints the message with the flag of :attr:`option` appended, without a
    traceback, and exits with status 2; the widget can point at its control.

    Parameters
    ----------
    message : str
        One line: the file or argument, then the problem.
    option : str or tuple of str, optional
        Name of the option or selection the user should change: an estimator option's
        name (see :mod:`napari_dissipation.options`) or one of ``"channel"``, ``"z"``,
        ``"series"``, ``"roi"``, ``"dt"``.  A tuple when several must be chosen together
        (e.g. ``("channel", "z")`` for a file with several of each).  None when no single
        option fixes the problem (a missing or corrupt file).

    Attributes
    ----------
    option : str, tuple of str or None
        As given.  It lives in the instance's ``__dict__``, which exceptions pickle along
        with their message, so it survives the trip to and from worker processes.
    """

    def __init__(self, message: str = "", *, option: str | tuple[str, ...] | None = None):
        super().__init__(message)
        self.option = option

    @property
    def options(self) -> tuple[str, ...]:
        """:attr:`option` as a tuple: empty when None, one name for a single option."""
        if self.option is None:
            return ()
        return (self.option,) if isinstance(self.option, str) else tuple(self.option)
