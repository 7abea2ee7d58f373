"""The redactor that keeps credentials out of text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from requests_resilience._secrets import Redactor

KEY = "sk-live-0123456789abcdefXYZ"


def test_whole_secret_and_pieces_are_removed() -> None:
    """The secret and any 8-character piece of it are replaced."""
    r = Redactor([KEY])
    assert r.redact(f"key={KEY}") == "key=[REDACTED]"
    assert KEY[3:11] not in r.redact(f"partial {KEY[3:14]} here")


def test_no_secrets_is_identity() -> None:
    """Without secrets text is returned as is, and the redactor is falsy."""
    r = Redactor()
    assert not r
    assert r.redact("hello") == "hello"
    assert repr(Redactor([KEY])) == "Redactor(<1 secret(s)>)"


@given(
    st.text(max_size=40),
    st.text(max_size=40),
    st.integers(0, len(KEY) - 8),
    st.integers(8, len(KEY)),
)
def test_no_8_char_piece_survives(prefix: str, suffix: str, start: int, length: int) -> None:
    """Whatever surrounds it, no 8-character piece of the key is left."""
    piece = KEY[start : start + length]
    out = Redactor([KEY]).redact(prefix + piece + suffix)
    leftover = [KEY[i : i + 8] for i in range(len(KEY) - 7) if KEY[i : i + 8] in out]
    # only pieces the random prefix/suffix themselves contain may remain
    assert all(p in prefix or p in suffix for p in leftover)
