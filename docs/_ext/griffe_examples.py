"""A griffe extension for the docs build: read ``Example:`` sections as ``Examples:``.

The docstrings follow the Google style with a singular ``Example:`` heading, which griffe
would render as an admonition of plain Markdown (so ``>>>`` lines became block quotes).
Renamed here, at build time, they render as highlighted doctest code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headings to ``Examples:`` in every docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of `obj` before griffe parses it."""
        if obj.docstring is not None:
            obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
