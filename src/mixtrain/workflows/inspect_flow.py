"""Child-process entry: ``python -m mixtrain.workflows.inspect_flow FILE [ENTRYPOINT]`` prints the spec as JSON.

Runs the user's module in a separate, time-limited process so a slow or broken file cannot hang or
crash the CLI. Exit 3 with a one-line message on a user error; the import's traceback goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from mixtrain.errors import MixtrainError


def main(argv: list[str]) -> int:
    from mixtrain.workflows.loader import find_flow, load_module
    from mixtrain.workflows.spec import extract

    path, entrypoint = argv[0], (argv[1] if len(argv) > 1 and argv[1] else None)
    try:
        module = load_module(Path(path))
    except MixtrainError as exc:
        print(json.dumps({"error": exc.what, "fix": exc.fix}))
        return 3
    except BaseException as exc:  # the user's import failed: show their traceback
        _print_user_traceback(exc, path)
        print(json.dumps({"error": f"importing {path} failed: {type(exc).__name__}: {exc}"}))
        return 3
    try:
        cls = find_flow(module, entrypoint)
        print(json.dumps(extract(cls)))
    except MixtrainError as exc:
        print(json.dumps({"error": exc.what, "fix": exc.fix}))
        return 3
    return 0


def _print_user_traceback(exc: BaseException, path: str) -> None:
    """Show the user's frames only: the loader and importlib frames above them are noise to them."""
    if isinstance(exc, SyntaxError):  # file, line and caret; no frames of ours
        sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
        return
    tb = exc.__traceback__
    user = os.path.realpath(path)
    while tb is not None and os.path.realpath(tb.tb_frame.f_code.co_filename) != user:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
