"""``python -m archsearch`` is the ``archsearch`` command."""

from archsearch.cli import entry_point

entry_point()
