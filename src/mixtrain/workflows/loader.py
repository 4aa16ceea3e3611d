"""Import a workflow's files and find its one MixFlow class.

Only ever called in a child process (spec extraction, a run): user code never runs in the CLI.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

from mixtrain.errors import InvalidInput
from mixtrain.workflows.flow import MixFlow


def load_module(main_file: Path):
    """Import ``main_file`` as a module, with its folder on sys.path so sibling files import."""
    main_file = Path(main_file).resolve()
    sys.path.insert(0, str(main_file.parent))
    name = f"mixtrain_user_{main_file.stem}"
    spec = importlib.util.spec_from_file_location(name, main_file)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"cannot import {main_file}", "pass a Python (.py) file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def find_flow(module, entrypoint: str | None = None) -> type[MixFlow]:
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, MixFlow)
        and obj is not MixFlow
        and obj.__module__ == module.__name__
    ]
    if entrypoint:
        match = [c for c in found if c.__name__ == entrypoint]
        if not match:
            raise InvalidInput(
                f"no MixFlow class named {entrypoint!r} in {Path(module.__file__).name}",
                f"found: {', '.join(c.__name__ for c in found) or 'none'}",
            )
        return match[0]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise InvalidInput(
            f"expected exactly one MixFlow subclass in {Path(module.__file__).name}, found {len(found)} ({names})",
            "define one class deriving from mixtrain.MixFlow, or pass --entrypoint CLASS",
        )
    return found[0]
