"""Keeping credentials out of messages, logs and spans.

A policy that holds a credential exposes it through a `secrets` attribute (a tuple of
strings). The pipeline gathers them into one `Redactor` when it is built, and every
place that turns server input or request data into text (exception messages, log
events, span attributes) passes that text through `call.redactor`.

Redaction removes the whole secret and also every 8-character piece of it, so a server
that echoes a truncated key ("sk-abc123...") in an error body does not leak it either.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[REDACTED]"
_PIECE = 8


class Redactor:
    """Replaces known secrets, and any 8-character piece of them, in text.

    Example:
        >>> Redactor(["sk-0123456789abcdef"]).redact("bad key sk-01234567...")
        'bad key [REDACTED]...'
    """

    __slots__ = ("_pieces", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        unique = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._secrets: tuple[str, ...] = tuple(unique)
        pieces: list[str] = []
        for secret in unique:
            if len(secret) > _PIECE:
                pieces.extend(secret[i : i + _PIECE] for i in range(len(secret) - _PIECE + 1))
        self._pieces: tuple[str, ...] = tuple(dict.fromkeys(pieces))

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def redact(self, text: str) -> str:
        """Return `text` with every secret and every 8-character piece of one replaced."""
        if not self._secrets or not text:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for piece in self._pieces:
            if piece in text:
                text = text.replace(piece, REDACTED)
        return text

    def __repr__(self) -> str:
        return f"Redactor(<{len(self._secrets)} secret(s)>)"


NO_SECRETS = Redactor()
