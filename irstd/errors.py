"""The one exception type that reaches users as a message instead of a traceback."""


class IRSTDError(Exception):
    """A problem with the user's input (files, arguments, data), worded for the user.

    The CLI prints ``error: <message>`` and exits with status 2. Library callers catch it like any
    exception. Messages name the offending file and the problem.
    """
