"""The one exception type users see.

Anything the user can fix (a missing file, a wrong column, an unknown model) raises
`SentituneError` with a message that says what is wrong and what to do. The CLI prints
it as one line and exits non-zero; everything else is a bug and keeps its traceback.
"""


class SentituneError(Exception):
    """A problem with the user's input or environment, explained in one line."""
