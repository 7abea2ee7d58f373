"""The public surface of requests_resilience.vinci."""

from __future__ import annotations

import requests_resilience.vinci as vinci


def _isort_key(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_importable() -> None:
    """Every name in __all__ exists, and the list is sorted like ruff's RUF022."""
    assert vinci.__all__ == sorted(vinci.__all__, key=_isort_key)
    for name in vinci.__all__:
        assert getattr(vinci, name) is not None


def test_public_names_are_defined_in_private_modules() -> None:
    """Classes and functions live in _private modules and are re-exported."""
    for name in vinci.__all__:
        module = getattr(getattr(vinci, name), "__module__", None)
        if module is not None and module not in ("typing", "builtins"):
            assert module.startswith("requests_resilience.vinci._"), (name, module)


def test_importing_loads_no_optional_dependency() -> None:
    """Importing the package adds no rich or werkzeug module (checked in a fresh process)."""
    import subprocess
    import sys

    code = (
        "import sys, requests_resilience\n"
        "before = set(sys.modules)\n"
        "import requests_resilience.vinci\n"
        "added = set(sys.modules) - before\n"
        "print(sorted(m for m in added if m.split('.')[0] in ('rich', 'werkzeug')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
