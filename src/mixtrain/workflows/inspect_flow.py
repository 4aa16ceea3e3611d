"""Child-process entry: ``python -m mixtrain.workflows.inspect_flow FILE [ENTRYPOINT]`` prints the spec as JSON.

Runs the user's module in a separate, time-limited process so a slow or broken file cannot hang or
crash the CLI. Exit 3 with a one-line message on a user error; the import's traceback goes to stderr.
"""

from __future__ import annotations

import json
import sys
import traceback

from mixtrain.errors import MixtrainError


def main(argv: list[str]) -> int:
    from mixtrain.workflows.loader import find_flow, load_module
    from mixtrain.workflows.spec import extract

    path, entrypoint = argv[0], (argv[1] if len(argv) > 1 and argv[1] else None)
    try:
        module = load_module(path)
    except MixtrainError as exc:
        print(json.dumps({"error": str(exc)}))
        return 3
    except BaseException as exc:  # the user's import failed: show their traceback
        traceback.print_exc()
        print(json.dumps({"error": f"importing {path} failed: {type(exc).__name__}: {exc}"}))
        return 3
    try:
        cls = find_flow(module, entrypoint)
        print(json.dumps(extract(cls)))
    except MixtrainError as exc:
        print(json.dumps({"error": str(exc)}))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
