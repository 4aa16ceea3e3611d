"""What a store's ``check()`` returns: findings that `mixtrain doctor` prints.

Why here: every store (metadata DB, dataset catalog, secrets, models, workflows) checks itself and
the doctor only asks and prints; the finding type sits below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Finding:
    ok: bool
    what: str
    fix: str = ""
    fixed: bool = False


def ok(what: str) -> Finding:
    return Finding(True, what)


def problem(what: str, fix: str = "", fixed: bool = False) -> Finding:
    return Finding(False, what, fix, fixed)
