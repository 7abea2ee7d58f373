"""Every ```python block in docs/ runs, unless marked ``<!-- norun: reason -->``.

A block is executed in a fresh namespace, in this process, against whatever it starts
itself (the snippets are written to bring their own `FakeVinciServer`). A block that
cannot run here carries, on the line right above its fence, an HTML comment
``<!-- norun: why -->``; such blocks are still compiled, and `NORUN` lists them, so a
new one is a visible change to this file.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"

_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_NORUN = re.compile(r"<!--\s*norun:\s*(.*?)\s*-->\s*$")

# Every block that does not run, by page: the reasons given in its marker.
NORUN = {
    "guides/concurrency.md": ["needs a Redis server at localhost:6379"],
    "many-processes.md": [
        "needs a Redis server at localhost:6379",
        "needs a Redis server at localhost:6379",
    ],
    "testing.md": ["a pytest test module, run by pytest rather than by itself"],
}


@dataclass(frozen=True)
class Block:
    """One ```python block of a page."""

    page: str
    line: int
    code: str
    norun: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks() -> list[Block]:
    """The python blocks of every page under docs/, in page and line order."""
    found: list[Block] = []
    for path in sorted(DOCS.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = _NORUN.search(before)
            found.append(
                Block(
                    page=path.relative_to(DOCS).as_posix(),
                    line=text.count("\n", 0, match.start()) + 1,
                    code=match.group(1),
                    norun=marker.group(1) if marker else None,
                )
            )
    return found


BLOCKS = blocks()


def test_docs_have_snippets() -> None:
    """The extraction finds the snippets (a broken regex would make every test pass)."""
    assert len([b for b in BLOCKS if b.norun is None]) >= 20


def test_norun_blocks_are_listed() -> None:
    """Every block that is not run is listed in NORUN, with the reason its marker gives."""
    marked: dict[str, list[str]] = {}
    for block in BLOCKS:
        if block.norun is not None:
            marked.setdefault(block.page, []).append(block.norun)
    assert marked == NORUN


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.norun is not None], ids=lambda b: b.id)
def test_norun_block_compiles(block: Block) -> None:
    """A block that is not run is at least valid Python."""
    compile(block.code, block.id, "exec")


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.norun is None], ids=lambda b: b.id)
def test_block_runs(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block runs to the end without raising, with no key in the environment."""
    monkeypatch.delenv("VINCI_API_KEY", raising=False)
    code = compile(block.code, block.id, "exec")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, {"__name__": f"docs_{block.page}"})


_MERMAID = re.compile(r"^```mermaid\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_DIAGRAM_TYPES = ("flowchart ", "sequenceDiagram", "stateDiagram-v2")


def _mermaid_blocks() -> list[tuple[str, str]]:
    return [
        (path.relative_to(DOCS).as_posix(), match.group(1))
        for path in sorted(DOCS.rglob("*.md"))
        for match in _MERMAID.finditer(path.read_text(encoding="utf-8"))
    ]


def test_the_diagrams_are_there() -> None:
    """The pipeline's path and order, the retry decisions and the breaker's states."""
    pages = [page for page, _ in _mermaid_blocks()]
    assert pages.count("concepts.md") >= 3
    assert "guides/breaker.md" in pages


@pytest.mark.parametrize(("page", "diagram"), _mermaid_blocks(), ids=lambda v: v[:40])
def test_diagram_is_well_formed(page: str, diagram: str) -> None:
    """A known diagram type, and no ';' in its text: Mermaid ends a statement there,
    and the page then shows the diagram's source instead of the diagram."""
    assert diagram.startswith(_DIAGRAM_TYPES), page
    assert ";" not in diagram, page
