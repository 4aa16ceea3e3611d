"""Secrets encrypted at rest with Fernet; the key file lives in the home with mode 0600.

Values are only ever decrypted into a run's environment or on explicit ``secret get --show``.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from mixtrain.errors import AlreadyExists, InvalidInput, MixtrainError, NotFound
from mixtrain.metadata.db import get_engine, now
from mixtrain.metadata.schema import secrets
from mixtrain.names import check_secret_name
from mixtrain.settings import Settings


def _load_key(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


class SecretStore:
    def __init__(self, settings: Settings):
        self.engine = get_engine(settings.database_url)
        self.fernet = Fernet(_load_key(settings.secret_key_file))

    def set(self, name: str, value: str, *, update_existing: bool = False) -> bool:
        """Store a secret; returns True when it replaced an existing one."""
        check_secret_name(name)
        if value is None or len(value) < 4:
            # Run logs redact secret values; a 1-3 character value cannot be redacted without mangling them.
            raise InvalidInput(f"the value of secret {name!r} is shorter than 4 characters", "pass the real secret value")
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
                raise AlreadyExists(f"secret {name!r} already exists", "use `mixtrain secret set NAME --update`") from exc
        return False

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

    def list(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(secrets.c.name, secrets.c.created_at, secrets.c.updated_at).order_by(secrets.c.name))
            return [dict(r._mapping) for r in rows]

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
