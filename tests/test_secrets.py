"""The redactor that keeps credentials out of text."""

from __future__ import annotations

import gc

from hypothesis import given
from hypothesis import strategies as st

from requests_resilience._secrets import Redactor, redact_known

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


LONG = "sk-registry-Wd3Fg8Hj2Kl5Zx7Cv"


def test_redact_known_uses_every_live_redactor() -> None:
    """A live redactor's secrets are removed by redact_known; a dropped one's are not."""
    redactor = Redactor([LONG])
    assert redact_known(f"url /k/{LONG}/x") == "url /k/[REDACTED]/x"
    del redactor
    gc.collect()
    assert redact_known(f"url /k/{LONG}/x") == f"url /k/{LONG}/x"


def test_short_secrets_stay_with_their_own_redactor() -> None:
    """A secret under 8 characters is not removed from the rest of the process's text."""
    redactor = Redactor(["abc"])
    assert redactor.redact("xabcx") == "x[REDACTED]x"
    assert redact_known("xabcx") == "xabcx"


def test_redact_bytes_removes_secrets_from_a_body() -> None:
    """A body echoing the key (or a piece of it) loses it."""
    redactor = Redactor([LONG])
    assert redactor.redact_bytes(f"got {LONG} and {LONG[:10]}".encode()) == (
        b"got [REDACTED] and [REDACTED]" + LONG[8:10].encode()
    )
