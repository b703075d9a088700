"""The one exception type that means "the user gave us something we cannot use".

Everything raised as :class:`ArchsearchError` is shown by the CLI as a single line
and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

_SHORT = 160  # characters of a bad value or a library's message quoted in an error


class ArchsearchError(ValueError):
    """A bad input: a config field, a file, an argument. The message names it."""


def short(value: Any) -> str:
    """A value or message as at most one short line, for quoting in an error: a hostile value may be
    megabytes long or hold line breaks."""
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."
