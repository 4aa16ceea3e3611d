"""Fault-suite checks: the real CLI and real processes under kills, full disks, corrupt state, races and
odd files. Every case asserts the three things a user cares about: one clean error line (no traceback),
nothing half-written left behind, and no work lost."""

from __future__ import annotations

from pathlib import Path


def clean_error(proc, *needles: str) -> str:
    """Exit 1, one `Error:` line, no traceback; the line contains every needle. Returns the line."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == 1, f"exit {proc.returncode}\n{out}"
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in Path(path).rglob("*") if p.is_file()} if Path(path).exists() else set()


def fill(directory: Path, leave: int = 0) -> None:
    """Fill the file system holding ``directory`` until at most ``leave`` bytes are free."""
    import shutil

    filler = directory / ".filler"
    with open(filler, "ab") as fh:
        while True:
            free = shutil.disk_usage(directory).free
            if free <= leave:
                break
            try:
                fh.write(b"\0" * min(1 << 20, max(4096, free - leave)))
                fh.flush()
            except OSError:
                break
