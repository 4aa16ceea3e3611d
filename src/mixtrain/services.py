"""Team services, checked from this machine: the PostgreSQL metadata database, the S3 bucket, the Ray cluster.

Why: in team mode a command can fail three ways before it does anything — the database server, the
object store or the cluster is unreachable, or refuses this machine's credentials. `mixtrain doctor`
asks each one with the settings and credentials a real command would use, and says in one line which
one is not reachable and what to fix. Each probe is short (a few seconds' timeout), reads almost
nothing, and leaves nothing behind (the bucket probe deletes the object it wrote).

Only what is configured is checked: a SQLite home, a local warehouse and no Ray address are the
single-machine default and need no server.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

from mixtrain.errors import MixtrainError
from mixtrain.health import Finding, ok, problem
from mixtrain.settings import Settings

TIMEOUT = 5.0  # seconds per probe: a stopped server is refused at once; a dead host must not hang the doctor


def checks(settings: Settings) -> list[tuple[str, Finding]]:
    """(service, finding) for every configured team service: "database", "catalog", "bucket", "ray"."""
    out: list[tuple[str, Finding]] = []
    if not settings.database_url.startswith("sqlite"):
        out.append(("database", database(settings.database_url, "metadata database", "MIXTRAIN_DATABASE_URL")))
    if not settings.catalog_url.startswith("sqlite") and settings.catalog_url != settings.database_url:
        out.append(("catalog", database(settings.catalog_url, "dataset catalog", "MIXTRAIN_CATALOG_URL")))
    if settings.warehouse.startswith("s3://"):
        out.append(("bucket", bucket(settings)))
    if settings.ray_address:
        out.append(("ray", ray_cluster(settings.ray_address)))
    return out


def safe_url(url: str) -> str:
    """A database URL with its password hidden (what may be printed)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


def database(url: str, what: str, setting: str) -> Finding:
    """Connect to a server database with its URL's credentials and ask its version; never migrates."""
    from sqlalchemy import create_engine, text

    shown = safe_url(url)
    args = {"connect_timeout": int(TIMEOUT)} if url.startswith("postgresql") else {}
    try:
        engine = create_engine(url, connect_args=args, pool_pre_ping=False)
    except Exception as exc:  # a bad URL, a missing driver
        return problem(f"{what} {shown}: {_first_line(exc)}", f"fix {setting} (see `mixtrain config`)")
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version()")).scalar() or ""
    except Exception as exc:
        return problem(f"{what} {shown} is not reachable: {_db_reason(exc)}", _db_fix(exc, setting))
    finally:
        engine.dispose()
    return ok(f"{what} {shown} reachable ({' '.join(str(version).split()[:2])})")


def _db_reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    for needle, reason in (
        ("password authentication failed", "the server refused the user name or password"),
        ("connection refused", "connection refused (is the server running on that host and port?)"),
        ("does not exist", "the database does not exist"),
        ("timeout expired", f"no answer within {TIMEOUT:.0f} s"),
        ("could not translate host name", "unknown host name"),
    ):
        if needle in text.lower():
            return reason
    return _first_line(text)


def _db_fix(exc: BaseException, setting: str) -> str:
    text = str(getattr(exc, "orig", None) or exc).lower()
    if "password authentication failed" in text:
        return f"put the right user and password in {setting}"
    if "does not exist" in text:
        return f"create the database on the server, or fix {setting}"
    return f"start PostgreSQL, or fix the host and port in {setting} (see `mixtrain config`)"


def bucket(settings: Settings) -> Finding:
    """Look the bucket and the warehouse prefix up, then write + delete one small object there, with the
    configured keys. Refused keys on the read say "wrong keys"; refused only on the write, "read-only"."""
    from mixtrain import objectstore

    where = settings.warehouse
    endpoint = settings.s3_endpoint or "AWS"
    try:
        bucket_uri = "s3://" + objectstore.path_of(where).split("/", 1)[0]
        if not objectstore.exists(bucket_uri, settings):
            return problem(
                f"object store {endpoint}: the bucket of {where} does not exist",
                "create the bucket, or fix MIXTRAIN_WAREHOUSE",
            )
        objectstore.exists(where, settings)
    except MixtrainError as exc:
        if _refused(exc):
            return problem(
                f"object store {endpoint}: the S3 keys were refused reading {where} (wrong key or secret, or no read access)",
                "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of an identity that may read and write the bucket",
            )
        return problem(f"object store {endpoint}: {exc.what}", exc.fix or "")
    except Exception as exc:  # the doctor reports; it must not crash on the fault it looks for
        return problem(f"object store {endpoint}: {_first_line(exc)}", "check MIXTRAIN_S3_ENDPOINT and the S3 keys")
    probe = objectstore.join(where, f".mixtrain-doctor-{uuid.uuid4().hex}")
    try:
        objectstore.put_bytes(b"mixtrain doctor write probe\n", probe, settings)
        objectstore.delete([probe], settings)
    except MixtrainError as exc:
        if _refused(exc):
            return problem(
                f"object store {endpoint}: bucket {where} is read-only for these S3 keys (a test write was refused)",
                "reads work; creating datasets and registering models need keys with Write access to the bucket",
            )
        return problem(f"object store {endpoint}: {exc.what}", exc.fix or "")
    return ok(f"object store {endpoint}: bucket {where} reachable, readable and writable with the configured keys")


def _refused(exc: MixtrainError) -> bool:
    return "access denied" in exc.what or "refused the S3 keys" in exc.what


def ray_cluster(address: str) -> Finding:
    """Ask the Ray dashboard (the Jobs API's server) for its version and the nodes that are alive."""
    base = address.rstrip("/")
    try:
        version = _get_json(f"{base}/api/version")
    except Exception as exc:
        return problem(
            f"Ray cluster {address} is not reachable: {_http_reason(exc)}",
            "start the Ray head (`ray start --head --dashboard-host ...`), or fix MIXTRAIN_RAY_ADDRESS",
        )
    nodes = _alive_nodes(base)
    alive = f", {nodes} node(s) alive" if nodes is not None else ""
    return ok(f"Ray cluster {address} reachable (Ray {version.get('ray_version', '?')}{alive})")


def _alive_nodes(base: str) -> int | None:
    try:
        data = _get_json(f"{base}/nodes?view=summary")
        summary = data.get("data", {}).get("summary", [])
        return sum(1 for n in summary if (n.get("raylet") or {}).get("state") == "ALIVE")
    except Exception:
        return None


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        body = resp.read(1 << 20)
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("not a Ray dashboard (unexpected answer)")
    return data


def _http_reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} from {exc.url} (is this the Ray dashboard address, port 8265?)"
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the Ray head running, with its dashboard on that port?)"
    if isinstance(exc, ValueError):
        return "the address answers, but not as a Ray dashboard"
    return _first_line(reason)


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
