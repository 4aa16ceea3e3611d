"""Resource names: one rule for datasets, workflows and models, so none can smuggle in a path."""

from __future__ import annotations

import re

from mixtrain.errors import InvalidInput

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SECRET_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Secrets are injected into every run's environment; these would break or redirect the run.
RESERVED_ENV = {"PATH", "HOME", "USER", "SHELL", "PWD", "TMPDIR", "LANG"}
RESERVED_ENV_PREFIXES = ("MIXTRAIN_", "LD_", "PYTHON")


def check_name(name: str, kind: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid {kind} name {name!r}",
            "use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit",
        )
    return name


def check_secret_name(name: str) -> str:
    if not isinstance(name, str) or not SECRET_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid secret name {name!r}",
            "secrets are environment variables: use letters, digits and '_', not starting with a digit",
        )
    if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
        raise InvalidInput(
            f"secret name {name!r} would replace a variable runs depend on",
            "secrets become environment variables of a run: pick another name",
        )
    return name
