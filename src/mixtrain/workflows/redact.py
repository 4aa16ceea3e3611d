"""The one secret redactor: run logs (bytes, relayed in chunks) and stored errors/outputs (text).

Why one: the log relay and the worker used to carry two implementations that could drift (one of
them missed multi-line values). A value shorter than ``MIN_LEN`` cannot be redacted without mangling
ordinary text, so secrets that short are refused when stored (see ``SecretStore.set``). A multi-line
secret (a PEM key, a JSON credential) is also redacted line by line: a program that prints it one line
at a time, or one line of it in an error, must not leak it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

MIN_LEN = 4
MASK = "***"
NAMES_VAR = "MIXTRAIN_SECRET_NAMES"  # the run's secret *names* (values are in the environment)


def _needles(values: Iterable[str]) -> list[str]:
    found: set[str] = set()
    for value in values:
        if not value:
            continue
        if len(value) >= MIN_LEN:
            found.add(value)
        for line in value.splitlines():
            for part in (line, line.strip()):
                if len(part) >= MIN_LEN:
                    found.add(part)
    return sorted(found, key=len, reverse=True)  # longest first: a whole value before its lines


class Redactor:
    """Replaces every secret value (and every redactable line of one) with ``***``."""

    def __init__(self, values: Iterable[str]):
        self._text = _needles(values)
        self._bytes = [v.encode() for v in self._text]
        # A chunked stream must hold back this many bytes at a cut so a value split there is still caught.
        self.keep = max((len(b) for b in self._bytes), default=1) - 1

    @classmethod
    def from_env(cls, environ=None) -> Redactor:
        """The run's secrets, by the names the supervisor put in the environment."""
        env = os.environ if environ is None else environ
        names = [n for n in env.get(NAMES_VAR, "").split(",") if n]
        return cls(env.get(n, "") for n in names)

    def __bool__(self) -> bool:
        return bool(self._text)

    def text(self, data: str) -> str:
        for s in self._text:
            data = data.replace(s, MASK)
        return data

    def bytes(self, data: bytes) -> bytes:
        mask = MASK.encode()
        for s in self._bytes:
            data = data.replace(s, mask)
        return data


class StreamRedactor:
    """Redacts a byte stream that arrives in arbitrary chunks (a value may straddle two reads)."""

    def __init__(self, redactor: Redactor):
        self.redactor = redactor
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """Return what can be written now; hold back a tail that could be the start of a secret."""
        self.pending += chunk
        cut = max(self.pending.rfind(b"\n"), self.pending.rfind(b"\r"))
        if cut >= 0:
            end = cut + 1
        elif len(self.pending) > 8192:
            end = len(self.pending) - self.redactor.keep
        else:
            return b""
        out, self.pending = self.pending[:end], self.pending[end:]
        return self.redactor.bytes(out)

    def flush(self) -> bytes:
        out, self.pending = self.pending, b""
        return self.redactor.bytes(out)
