"""The one exception type that means "the user gave us something we cannot use".

Everything raised as :class:`ArchsearchError` is shown by the CLI as a single line
and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ArchsearchError(ValueError):
    """A bad input: a config field, a file, an argument. The message names it."""
