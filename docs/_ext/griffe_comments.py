"""A griffe extension for the docs build: ``#:`` comments document module attributes.

The code documents its constants and type aliases (``Next``, ``PolicyLike``,
``ImageInput``, ``DEFAULT_BASE_URL`` ...) with a ``#:`` comment on the lines right above
the assignment, as Sphinx reads them::

    #: The rest of the pipeline, as a policy sees it.
    Next: TypeAlias = "Callable[[Call], Response]"

griffe only reads a string literal *below* an assignment, so without this extension
such names have no docstring and the reference leaves them out. Here, an attribute
without a docstring gets the ``#:`` lines above it as one.
"""

from __future__ import annotations

import ast
from typing import Any

import griffe

_MARK = "#:"


def comment_above(lines: list[str], lineno: int) -> str | None:
    """The ``#:`` comment block that ends right above line `lineno` (1-based), if any.

    Example:
        >>> comment_above(["#: The answer.", "ANSWER = 42"], 2)
        'The answer.'
    """
    found: list[str] = []
    index = lineno - 2
    while index >= 0 and lines[index].strip().startswith(_MARK):
        found.append(lines[index].strip()[len(_MARK) :].strip())
        index -= 1
    if not found:
        return None
    return "\n".join(reversed(found))


class CommentDocstrings(griffe.Extension):
    """Give module attributes without a docstring the ``#:`` comment above them."""

    def on_attribute_instance(
        self,
        *,
        node: ast.AST | griffe.ObjectNode,
        attr: griffe.Attribute,
        agent: griffe.Visitor | griffe.Inspector,
        **kwargs: Any,
    ) -> None:
        """Attach the comment above `attr` as its docstring, when it has none."""
        filepath = attr.filepath
        if attr.docstring is not None or attr.lineno is None or isinstance(filepath, list):
            return
        if not isinstance(attr.parent, griffe.Module):
            return
        try:
            lines = attr.lines_collection[filepath]
        except KeyError:
            return
        text = comment_above(lines, attr.lineno)
        if text is not None:
            attr.docstring = griffe.Docstring(text, lineno=attr.lineno, parent=attr)
