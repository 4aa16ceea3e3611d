"""Where state lives. Precedence: environment (MIXTRAIN_*) > ``config.toml`` in the home > default.

``MIXTRAIN_HOME`` is the single root of all state. Its default is ``/data`` when that directory exists
and is writable (the spec's shared workspace), else ``~/.mixtrain``.

Team mode (object storage): ``MIXTRAIN_WAREHOUSE=s3://BUCKET/PREFIX`` puts datasets, their images and
model artifacts in an S3-compatible store at ``MIXTRAIN_S3_ENDPOINT`` (``http://HOST:PORT``; empty = AWS)
in ``MIXTRAIN_S3_REGION`` (default ``us-east-1``: without a region pyarrow asks AWS for the bucket's, a 7 s
stall offline). Credentials are never settings: they come only from ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``) in the environment, like every S3 tool — never from
config.toml, logs or process arguments (see ``objectstore``).
"""

from __future__ import annotations

import getpass
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

KEYS = ("database_url", "catalog_url", "warehouse", "user", "ray_address", "s3_endpoint", "s3_region")
# Who did what in a shared (team) home: a login, or an e-mail address; recorded on runs, datasets, models.
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
DEFAULT_S3_REGION = "us-east-1"
WORKSPACE_DIR = "axolotl_workspace"  # training outputs, inside the home


def default_home() -> Path:
    data = Path("/data")
    if data.is_dir() and os.access(data, os.W_OK):
        return data
    return Path.home() / ".mixtrain"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    catalog_url: str
    warehouse: str
    sources: dict[str, str]
    user: str = ""  # MIXTRAIN_USER, default the OS user: recorded on the runs, datasets and models it creates
    # Team mode: the Ray cluster's dashboard / Jobs API (``http://HEAD:8265``); "" runs workflows here.
    ray_address: str = ""
    s3_endpoint: str = ""  # "" = AWS's own endpoint
    s3_region: str = DEFAULT_S3_REGION

    @property
    def remote_warehouse(self) -> bool:
        """Whether datasets, images and model artifacts live in object storage (team mode)."""
        return self.warehouse.startswith("s3://")

    @property
    def artifact_cache(self) -> Path:
        """Where artifacts downloaded from object storage are kept (content-checked, fetched once)."""
        return self.home / "cache" / "artifacts"

    @property
    def workflows_dir(self) -> Path:
        return self.home / "workflows"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def image_cache(self) -> Path:
        return self.home / "cache" / "images"

    @property
    def workspace(self) -> Path:
        """Training outputs: the spec's ``/data/axolotl_workspace`` when home is /data."""
        return self.home / WORKSPACE_DIR

    @property
    def secret_key_file(self) -> Path:
        return self.home / "secret.key"

    @property
    def config_file(self) -> Path:
        return self.home / "config.toml"

    # A home is relocatable (`mv`, `cp -a`, a restored backup): paths inside it are stored relative to it.
    def store_path(self, path: str | Path) -> str:
        """How the metadata DB stores a path: relative to the home when inside it, else absolute."""
        if "://" in str(path):  # an artifact in object storage: a URI, stored as it is
            return str(path)
        p = Path(path)
        if not p.is_absolute():
            return str(p)
        try:
            return str(p.relative_to(self.home))
        except ValueError:
            return str(p)

    def home_path(self, stored: str) -> str:
        """A stored path as found from this home ("" stays "": e.g. a base model's missing adapter)."""
        if not stored or "://" in stored or Path(stored).is_absolute():
            return stored
        return str(self.home / stored)


def load_settings() -> Settings:
    env_home = os.environ.get("MIXTRAIN_HOME")
    home = Path(env_home).expanduser() if env_home else default_home()
    home = home.resolve()
    if home.exists() and not home.is_dir():
        from mixtrain.errors import InvalidInput

        where = "MIXTRAIN_HOME" if env_home else "the default home"
        raise InvalidInput(
            f"{where} {home} is a file, not a folder", "point MIXTRAIN_HOME at a folder (it is created if missing)"
        )
    file_values: dict[str, str] = {}
    cfg = home / "config.toml"
    if cfg.is_file():
        file_values = _read_config(cfg)
    defaults = {
        "database_url": f"sqlite:///{home / 'mixtrain.db'}",
        "catalog_url": f"sqlite:///{home / 'catalog.db'}",
        "warehouse": (home / "warehouse").as_uri(),
        "user": os_user(),
        "ray_address": "",
        "s3_endpoint": "",
        "s3_region": DEFAULT_S3_REGION,
    }
    values, sources = {}, {"home": "env" if env_home else "default"}
    for key in KEYS:
        env = os.environ.get(f"MIXTRAIN_{key.upper()}")
        if env:
            values[key], sources[key] = env, "env"
        elif key in file_values:
            values[key], sources[key] = file_values[key], "config file"
        else:
            values[key], sources[key] = defaults[key], "default"
    _check_user(values["user"], sources["user"])
    _check_warehouse(values["warehouse"])
    return Settings(home=home, sources=sources, **values)


def os_user() -> str:
    """The login of this process (``getpass`` reads LOGNAME/USER, then the password database)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry and no USER variable
        name = f"uid{os.getuid()}"
    return name if USER_RE.match(name) else f"uid{os.getuid()}"


def _check_user(user: str, source: str) -> None:
    if not USER_RE.match(user):
        from mixtrain.errors import InvalidInput

        where = "MIXTRAIN_USER" if source == "env" else "user in config.toml"
        raise InvalidInput(
            f"{where} {user!r} is not a user name",
            "use 1-64 letters, digits or . _ @ + - (a login or an e-mail address), starting with a letter or digit",
        )


def _check_warehouse(warehouse: str) -> None:
    """A warehouse is a local folder (``file://`` or a path, as always) or ``s3://BUCKET[/PREFIX]``."""
    if "://" not in warehouse or warehouse.startswith("file://"):
        return
    from mixtrain.errors import InvalidInput

    scheme, _, rest = warehouse.partition("://")
    if scheme != "s3":
        raise InvalidInput(
            f"MIXTRAIN_WAREHOUSE {warehouse!r} has an unsupported scheme {scheme!r}",
            "use a local folder (file:///PATH) or s3://BUCKET/PREFIX",
        )
    if not rest.split("/", 1)[0] or "@" in rest.split("/", 1)[0]:
        raise InvalidInput(
            f"MIXTRAIN_WAREHOUSE {warehouse!r} names no bucket (or embeds credentials)",
            "use s3://BUCKET/PREFIX; keys go in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
        )


def _read_config(path: Path) -> dict[str, str]:
    """config.toml is strict like every user config: a typo is an error, not a silently ignored key."""
    from mixtrain.errors import InvalidInput

    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path} is not valid TOML: {exc}", "fix or remove the file") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise InvalidInput(f"{path} has unknown setting(s): {', '.join(unknown)}", f"known settings: {', '.join(KEYS)}")
    return {k: str(v) for k, v in data.items()}
