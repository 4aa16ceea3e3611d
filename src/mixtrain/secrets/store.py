"""Secrets encrypted at rest with Fernet; the key file lives in the home with mode 0600.

Values are only ever decrypted into a run's environment or on explicit ``secret get --show``.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from mixtrain import health
from mixtrain.errors import AlreadyExists, InvalidInput, MixtrainError, NotFound
from mixtrain.faults import guard
from mixtrain.health import Finding
from mixtrain.metadata.db import get_engine, now
from mixtrain.metadata.schema import secrets
from mixtrain.names import check_secret_name
from mixtrain.records import SecretInfo
from mixtrain.settings import Settings


def _load_key(path: Path, stored_count=lambda: 0) -> bytes:
    """Read the key, or create it atomically on first use.

    Created as a complete temp file that is then hard-linked into place: a concurrent first user
    either wins the link or reads the winner's complete key, never an empty file. A missing key while
    secrets are stored is refused: a fresh key would silently make every stored secret unreadable.
    """
    key = _read_key(path)
    if key is not None:
        return key
    stored = stored_count()
    if stored:
        raise MixtrainError(
            f"the secret key file {path} is missing but {stored} secret(s) are stored with it",
            "restore the file from a backup; or delete the secrets (`mixtrain secret delete NAME`) and set them again",
        )
    key = Fernet.generate_key()
    with guard(path, "the secret key"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets_token()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:  # another process created it first: use theirs
                return _read_key(path) or key
        finally:
            tmp.unlink(missing_ok=True)
    return key


def secrets_token() -> str:
    import secrets as _secrets

    return _secrets.token_hex(4)


def _read_key(path: Path) -> bytes | None:
    """The key in ``path``; None when there is no file; a one-line error when it is unusable."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise MixtrainError(
            f"the secret key file {path} is a directory", "move it away; mixtrain keeps its key in that file"
        ) from None
    except OSError as exc:
        raise MixtrainError(
            f"cannot read the secret key file {path}: {exc.strerror}",
            "give the user running mixtrain read access to it (it should be mode 0600, owned by that user)",
        ) from None
    try:
        Fernet(data)
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        what = "is empty" if not data else "does not hold a valid key (corrupt or replaced)"
        raise MixtrainError(
            f"the secret key file {path} {what}",
            "restore it from a backup; without it the stored secrets cannot be decrypted (`mixtrain doctor` explains the options)",
        ) from None
    return data


class SecretStore:
    def __init__(self, settings: Settings):
        self.engine = get_engine(settings.database_url)
        self.key_file = settings.secret_key_file
        self._fernet: Fernet | None = None

    @property
    def fernet(self) -> Fernet:
        """Loaded on first use: list and delete work even when the key file is lost or broken."""
        if self._fernet is None:
            self._fernet = Fernet(_load_key(self.key_file, self._count))
        return self._fernet

    def _count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count(secrets.c.id))).scalar() or 0

    def check(self, fix: bool = False) -> list[Finding]:
        """The key file against the stored secrets, and temp files of interrupted key writes."""
        import time

        out: list[Finding] = []
        stored = self._count()
        try:
            key = _read_key(self.key_file)
        except MixtrainError as exc:  # its own advice sends the user to doctor: say here what to do
            out.append(
                health.problem(
                    exc.what,
                    "restore it from a backup; without one, move it away, then delete the stored secrets "
                    f"({stored}: `mixtrain secret delete NAME -y`) and set them again"
                    if stored
                    else "move it away; a new key is created with the next secret",
                )
            )
            key = b""
        if key is None:
            if stored:
                out.append(
                    health.problem(
                        f"the secret key file {self.key_file} is missing but {stored} secret(s) are stored",
                        "restore the file from a backup; or delete the secrets (`mixtrain secret delete NAME -y`) and set them again",
                    )
                )
            else:
                out.append(health.ok("no secret key yet (created with the first secret)"))
        elif key:
            mode = self.key_file.stat().st_mode & 0o777
            if mode & 0o077:
                if fix:
                    self.key_file.chmod(0o600)
                out.append(
                    health.problem(
                        f"the secret key file {self.key_file} is readable by other users (mode {mode:04o})",
                        f"chmod 600 {self.key_file} (or `mixtrain doctor --fix`)",
                        fixed=fix,
                    )
                )
            bad = []
            for row in self.list():
                try:
                    self.get(row["name"])
                except MixtrainError:
                    bad.append(row["name"])
            if bad:
                out.append(
                    health.problem(
                        f"{len(bad)} secret(s) cannot be decrypted with the key: {', '.join(bad)}",
                        "set them again with `mixtrain secret set NAME --update`",
                    )
                )
            else:
                out.append(health.ok(f"secret key valid ({stored} secret(s) decrypt)"))
        tmp = [
            p for p in self.key_file.parent.glob(f".{self.key_file.name}.*.tmp") if time.time() - p.stat().st_mtime > 60
        ]
        if tmp:
            if fix:
                for p in tmp:
                    p.unlink(missing_ok=True)
            out.append(
                health.problem(
                    f"{len(tmp)} temp file(s) of interrupted secret key writes: {', '.join(str(p) for p in tmp[:3])}",
                    "run `mixtrain doctor --fix`",
                    fixed=fix,
                )
            )
        return out

    def set(self, name: str, value: str, *, update_existing: bool = False) -> bool:
        """Store a secret; returns True when it replaced an existing one."""
        check_secret_name(name)
        if value is None or len(value) < 4:
            # Run logs redact secret values; a 1-3 character value cannot be redacted without mangling them.
            raise InvalidInput(
                f"the value of secret {name!r} is shorter than 4 characters", "pass the real secret value"
            )
        token = self.fernet.encrypt(value.encode())
        with self.engine.begin() as conn:
            exists = conn.execute(select(secrets.c.id).where(secrets.c.name == name)).first()
            if exists and not update_existing:
                raise AlreadyExists(f"secret {name!r} already exists", "use `mixtrain secret set NAME --update`")
            if exists:
                conn.execute(update(secrets).where(secrets.c.name == name).values(value=token, updated_at=now()))
                return True
            try:
                conn.execute(insert(secrets).values(name=name, value=token, created_at=now(), updated_at=now()))
            except IntegrityError as exc:
                raise AlreadyExists(
                    f"secret {name!r} already exists", "use `mixtrain secret set NAME --update`"
                ) from exc
        return False

    def require(self, name: str) -> None:
        """NotFound unless the secret exists (no decryption: works even when the key is lost)."""
        with self.engine.connect() as conn:
            if conn.execute(select(secrets.c.id).where(secrets.c.name == name)).first() is None:
                raise NotFound(f"secret {name!r} not found", "see `mixtrain secret list`")

    def get(self, name: str) -> str:
        with self.engine.connect() as conn:
            row = conn.execute(select(secrets.c.value).where(secrets.c.name == name)).first()
        if row is None:
            raise NotFound(f"secret {name!r} not found", "see `mixtrain secret list`")
        try:
            return self.fernet.decrypt(row.value).decode()
        except InvalidToken as exc:
            raise MixtrainError(
                f"secret {name!r} cannot be decrypted with the key in the home",
                "the key file was replaced; set the secret again",
            ) from exc

    def list(self) -> list[SecretInfo]:
        """Names and dates, never values."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(secrets.c.name, secrets.c.created_at, secrets.c.updated_at).order_by(secrets.c.name)
            )
            return [SecretInfo(**r._mapping) for r in rows]

    def delete(self, name: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(delete(secrets).where(secrets.c.name == name)).rowcount == 0:
                raise NotFound(f"secret {name!r} not found", "see `mixtrain secret list`")

    def environment(self) -> dict[str, str]:
        """All secrets as environment variables, for a run's child process."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(secrets.c.name, secrets.c.value)).all()
        env = {}
        for row in rows:
            try:
                env[row.name] = self.fernet.decrypt(row.value).decode()
            except InvalidToken:
                continue
        return env
