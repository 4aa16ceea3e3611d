"""A CLI fork server: one process that imported the CLI once, forking a fresh child per `mixtrain` call.

Run as a script (``python forkserver.py SOCKET``) by ``harness.cli``. Each request (one JSON line on a
Unix socket: argv, env, cwd and the files for stdin/stdout/stderr) gets a forked child that is a real
process of its own: its environment replaced wholesale, its cwd, fds 0/1/2 on those files, then
``mixtrain.cli.main.main()`` exactly as the entry point runs it, and its exit status read by waitpid.
What a child changes (engines keyed by URL, settings, env, cwd, logging) dies with it: the next call
starts again from the clean pre-imported state, as a new `mixtrain` process would.

The server answers ``{"pid": N}`` when it forks, then ``{"rc": CODE}`` (a negative signal number when a
signal ended the child), as ``subprocess`` reports it. Several requests may be in flight at once.
The server runs no Python thread (forking a threaded process is unsafe) and checks that it stays so.
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import socket
import sys
import threading

# What every CLI call pays for at start-up (measured with -X importtime): the CLI and its nouns, the
# stores and their libraries. Nothing that loads models (torch/transformers) and nothing that starts threads.
PRELOAD = (
    "mixtrain.cli.main",
    "mixtrain.cli.dataset",
    "mixtrain.cli.workflow",
    "mixtrain.cli.model",
    "mixtrain.cli.secret",
    "mixtrain.cli.eval",
    "mixtrain.client",
    "mixtrain.records",
    "mixtrain.metadata.db",
    "mixtrain.metadata.schema",
    "mixtrain.datasets.store",
    "pyiceberg.catalog.sql",
    "pyiceberg.table",
    "alembic.command",
    "alembic.config",
    "alembic.runtime.migration",
    "alembic.operations",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "pandas",
    "pyiceberg.io.pyarrow",
    "mixtrain.datasets.files",
    "mixtrain.datasets.fileio",
    "mixtrain.datasets.arrowio",
    "mixtrain.images",
    "mixtrain.images.store",
    "sqlite3",
    "cryptography.fernet",
    "mixtrain.secrets.store",
    "mixtrain.models.registry",
    "mixtrain.evals.store",
    "mixtrain.evals.create",
    "mixtrain.evals.spec",
    "mixtrain.workflows.registry",
    "mixtrain.workflows.runner",
    "mixtrain.workflows.supervisor",
    "mixtrain.workflows.worker",
    "mixtrain.workflows.loader",
    "mixtrain.workflows.spec",
    "mixtrain.cli.live",
    "mixtrain.doctor",
)
NEVER = ("torch", "transformers", "axolotl", "peft", "accelerate")  # a CLI process never imports these


def _preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # a module that fails to import fails the same way in the child, loudly
            pass
    loaded = [m for m in NEVER if m in sys.modules]
    assert not loaded, f"the fork server imported {loaded}: the CLI process must not"


def _child(req: dict, conn: socket.socket, listener: socket.socket, wake: int) -> None:
    """In the forked child: become the CLI process the request describes, run it, exit with its code."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        listener.close()
        conn.close()
        os.close(wake)
        for fd, path, mode in (
            (0, req["stdin"], os.O_RDONLY),
            (1, req["stdout"], os.O_WRONLY),
            (2, req["stderr"], os.O_WRONLY),
        ):
            f = os.open(path, mode)
            os.dup2(f, fd)
            os.close(f)
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["cwd"])
        sys.argv = list(req["argv"])
        if "numpy.random" in sys.modules:  # a new process seeds from the OS; a forked one would share the seed
            sys.modules["numpy.random"].seed()
        from mixtrain.cli.main import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                sys.stderr.write(f"{exc.code}\n")
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()  # as a real interpreter does at exit (os._exit below would skip them)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(path: str) -> None:
    _preload()
    # No Python thread may run at a fork. (pyarrow starts native threads at import: jemalloc's background
    # thread and one more; Arrow and jemalloc register at-fork handlers and are fork-safe.)
    assert threading.active_count() == 1, "the fork server must stay single-threaded"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(rfd, selectors.EVENT_READ, "child")
    waiting: dict[int, socket.socket] = {}  # child pid -> the connection that asked for it
    parent = os.getppid()
    print("ready", flush=True)
    while True:
        events = sel.select(timeout=2.0)
        if not events and os.getppid() != parent:  # the test session died without stopping us
            return
        for key, _ in events:
            if key.data == "accept":
                conn, _ = listener.accept()
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        break
                    data += chunk
                if not data:
                    conn.close()
                    continue
                req = json.loads(data)
                pid = os.fork()
                if pid == 0:
                    _child(req, conn, listener, rfd)
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                waiting[pid] = conn
            else:
                try:
                    while os.read(rfd, 512):
                        pass
                except BlockingIOError:
                    pass
            while waiting:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                conn = waiting.pop(pid, None)
                if conn is None:
                    continue
                rc = os.waitstatus_to_exitcode(status)
                try:
                    conn.sendall(json.dumps({"rc": rc}).encode() + b"\n")
                except OSError:
                    pass
                conn.close()


if __name__ == "__main__":
    # Run as a script, its folder (tests/harness: cli.py, models.py, ui.py…) heads sys.path; a `mixtrain`
    # process has no such folder, so no module of the harness may shadow a top-level one in the children.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    serve(sys.argv[1])
