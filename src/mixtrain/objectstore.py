"""Object storage for team mode: one configured pyarrow ``S3FileSystem`` and the few operations mixtrain needs.

Why pyarrow's S3 client: PyIceberg already writes ``s3://`` tables through it, so datasets, their images
and model artifacts share one client, one set of settings and one error vocabulary (no boto3 beside it:
installing boto3 can break s3fs through aiobotocore's botocore pin).

Settings (``settings.py``): ``MIXTRAIN_WAREHOUSE=s3://BUCKET/PREFIX``, ``MIXTRAIN_S3_ENDPOINT``,
``MIXTRAIN_S3_REGION``. Every one is passed explicitly: PyIceberg ignores ``AWS_ENDPOINT_URL``, and
without a region pyarrow asks AWS for the bucket's (a 7 s stall offline, the bucket name leaked online).

Credentials: only ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``) from the
environment, the way every S3 tool takes them. Not a mixtrain secret: the secret store's key is per home
(``secret.key``), so a second machine could not decrypt it without the very shared storage it unlocks.
Keys are handed to the client in memory only — never config.toml, logs, process arguments or output.

Errors: pyarrow's ``OSError("... AWS Error ACCESS_DENIED during PutObject ...")`` becomes one line that
says what is wrong (wrong keys, a read-only identity, no bucket, the server unreachable) and how to fix it.

Artifacts (``put_dir`` / ``get_dir``): a folder is uploaded file by file and its manifest
(``.mixtrain-manifest.json``: relative path → sha256 + size) last, so a folder without a manifest is an
unfinished upload. ``get_dir`` downloads once into ``<home>/cache/artifacts/<hash of the URI>``, checks
every file against the manifest, and renames the finished folder into place: a reader never sees half
an artifact, and a second call is a stat.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixtrain.errors import InvalidInput, MixtrainError, StorageError

if TYPE_CHECKING:
    from mixtrain.settings import Settings

KEY_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
MANIFEST = ".mixtrain-manifest.json"
CONNECT_TIMEOUT = 5.0  # seconds: a stopped server is refused at once; an unroutable one should not hang
REQUEST_TIMEOUT = 60.0
CHUNK = 1 << 20


def is_remote(uri: str | Path | None) -> bool:
    """Whether ``uri`` names object storage (``s3://``) rather than the local disk."""
    return isinstance(uri, str) and uri.startswith("s3://")


def join(base: str, *parts: str) -> str:
    """``base`` and ``parts`` joined with one ``/`` each (``Path`` would fold ``s3://`` to ``s3:/``)."""
    out = base.rstrip("/")
    for p in parts:
        out += "/" + str(p).strip("/")
    return out


def path_of(uri: str) -> str:
    """``s3://bucket/key`` → ``bucket/key`` (what pyarrow's filesystem takes)."""
    if not is_remote(uri):
        raise InvalidInput(f"not an s3:// URI: {uri!r}", "use s3://BUCKET/KEY")
    return uri[len("s3://") :].strip("/")


def credentials() -> tuple[str, str, str | None]:
    """The keys from the environment, or a one-line error naming the variables to set."""
    key, secret = (os.environ.get(v, "") for v in KEY_VARS)
    if not key or not secret:
        raise StorageError(
            "object storage needs credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set",
            "export both in the environment (they are never read from config.toml)",
        )
    return key, secret, os.environ.get("AWS_SESSION_TOKEN") or None


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from mixtrain.settings import load_settings

    return load_settings()


def iceberg_properties(settings: Settings | None = None) -> dict[str, str]:
    """What PyIceberg's FileIO needs to write ``s3://`` (endpoint, region and keys, all explicit)."""
    s = _settings(settings)
    key, secret, token = credentials()
    props = {
        "s3.region": s.s3_region,
        "s3.access-key-id": key,
        "s3.secret-access-key": secret,
        "s3.connect-timeout": str(CONNECT_TIMEOUT),
        "s3.request-timeout": str(REQUEST_TIMEOUT),
    }
    if s.s3_endpoint:
        props["s3.endpoint"] = s.s3_endpoint
    if token:
        props["s3.session-token"] = token
    return props


def filesystem(settings: Settings | None = None):
    """The configured ``pyarrow.fs.S3FileSystem`` (one per endpoint/region/keys in this process)."""
    s = _settings(settings)
    return _filesystem(s.s3_endpoint, s.s3_region, *credentials())


@functools.lru_cache(maxsize=8)
def _filesystem(endpoint: str, region: str, key: str, secret: str, token: str | None):
    from pyarrow.fs import S3FileSystem

    kwargs: dict[str, Any] = {}
    if endpoint:
        scheme, sep, rest = endpoint.partition("://")
        kwargs.update(endpoint_override=rest if sep else endpoint, scheme=scheme if sep else "https")
    return S3FileSystem(
        access_key=key,
        secret_key=secret,
        session_token=token,
        region=region,
        connect_timeout=CONNECT_TIMEOUT,
        request_timeout=REQUEST_TIMEOUT,
        **kwargs,
    )


# -- errors ------------------------------------------------------------------------------------------


def translate(exc: BaseException, uri: str, doing: str, settings: Settings | None = None) -> MixtrainError:
    """pyarrow's S3 ``OSError`` as one line: what went wrong and how to fix it (never the keys)."""
    text = str(exc)
    where = uri
    if "INVALID_ACCESS_KEY_ID" in text or "InvalidAccessKeyId" in text or "SIGNATURE_DOES_NOT_MATCH" in text:
        return StorageError(
            f"the object store refused the S3 keys while {doing} {where} (unknown access key or wrong secret)",
            "set the right AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for this store",
        )
    if "ACCESS_DENIED" in text or "AccessDenied" in text or "Access Denied" in text:
        return StorageError(
            f"access denied while {doing} {where}: the S3 keys are wrong or may not do that (a read-only identity?)",
            "use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY allowed to read and write the warehouse bucket",
        )
    if "NETWORK_CONNECTION" in text or "curlCode" in text or "Could not connect" in text:
        endpoint = _settings(settings).s3_endpoint if settings is not None else _endpoint_env()
        return StorageError(
            f"the object store {endpoint or '(AWS)'} cannot be reached while {doing} {where}",
            "start the S3 server, or fix MIXTRAIN_S3_ENDPOINT, then retry",
        )
    if "NoSuchBucket" in text or "NO_SUCH_BUCKET" in text or ("Bucket" in text and "not found" in text):
        return StorageError(f"the bucket of {where} does not exist", "create the bucket, or fix MIXTRAIN_WAREHOUSE")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return StorageError(f"object storage failed while {doing} {where}: {first}", "check the S3 server and retry")


def _endpoint_env() -> str:
    try:
        return _settings(None).s3_endpoint
    except MixtrainError:
        return os.environ.get("MIXTRAIN_S3_ENDPOINT", "")


@contextlib.contextmanager
def errors(uri: str, doing: str) -> Iterator[None]:
    """Any S3 ``OSError`` inside becomes one ``StorageError`` line."""
    try:
        yield
    except MixtrainError:
        raise
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise translate(exc, uri, doing) from None


def is_s3_error(exc: BaseException) -> bool:
    """Whether an exception is pyarrow's S3 client failing (as opposed to a local-disk ``OSError``)."""
    text = str(exc)
    return isinstance(exc, OSError) and ("AWS Error" in text or "curlCode" in text or "Bucket" in text)


# -- objects -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    uri: str
    size: int
    mtime: float  # seconds since the epoch


def put_bytes(data: bytes, uri: str, settings: Settings | None = None) -> None:
    """Write one object (S3 makes it visible whole or not at all)."""
    with errors(uri, "writing"), filesystem(settings).open_output_stream(path_of(uri)) as out:
        out.write(data)


def put_file(local: str | Path, uri: str, settings: Settings | None = None) -> None:
    """Upload one local file to ``uri``."""
    with errors(uri, "writing"), open(local, "rb") as src, filesystem(settings).open_output_stream(path_of(uri)) as out:
        while chunk := src.read(CHUNK):
            out.write(chunk)


def open_input(uri: str, settings: Settings | None = None):
    """A readable stream of one object (FileNotFoundError when it is not there)."""
    with errors(uri, "reading"):
        return filesystem(settings).open_input_stream(path_of(uri))


def read_bytes(uri: str, settings: Settings | None = None) -> bytes:
    with open_input(uri, settings) as fh, errors(uri, "reading"):
        return fh.read()


def exists(uri: str, settings: Settings | None = None) -> bool:
    from pyarrow.fs import FileType

    with errors(uri, "looking up"):
        return filesystem(settings).get_file_info(path_of(uri)).type != FileType.NotFound


def entry(uri: str, settings: Settings | None = None) -> Entry | None:
    """One object's size and modification time (None when it is not there)."""
    from pyarrow.fs import FileType

    with errors(uri, "looking up"):
        info = filesystem(settings).get_file_info(path_of(uri))
    if info.type == FileType.NotFound:
        return None
    return Entry(uri, info.size or 0, info.mtime.timestamp() if info.mtime else 0.0)


def size(uri: str, settings: Settings | None = None) -> int | None:
    """An object's size in bytes (None when it is not there)."""
    from pyarrow.fs import FileType

    with errors(uri, "looking up"):
        info = filesystem(settings).get_file_info(path_of(uri))
    return None if info.type == FileType.NotFound else info.size


def listing(prefix: str, settings: Settings | None = None) -> list[Entry]:
    """Every object under ``prefix`` (recursively), with its size and modification time."""
    from pyarrow.fs import FileSelector, FileType

    with errors(prefix, "listing"):
        infos = filesystem(settings).get_file_info(FileSelector(path_of(prefix), allow_not_found=True, recursive=True))
    return [
        Entry("s3://" + i.path, i.size or 0, i.mtime.timestamp() if i.mtime else 0.0)
        for i in infos
        if i.type == FileType.File
    ]


def delete(uris: list[str], settings: Settings | None = None) -> int:
    """Delete objects (already gone is fine); how many were deleted."""
    fs, n = filesystem(settings), 0
    for uri in uris:
        with errors(uri, "deleting"):
            try:
                fs.delete_file(path_of(uri))
                n += 1
            except FileNotFoundError:
                pass
    return n


def delete_prefix(prefix: str, settings: Settings | None = None) -> int:
    """Delete every object under ``prefix`` (a table folder of a failed create, a model version)."""
    return delete([e.uri for e in listing(prefix, settings)], settings)


# -- folders (model artifacts) -----------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def put_dir(local: str | Path, uri: str, settings: Settings | None = None, skip_dirs: str | None = None) -> str:
    """Upload a folder's files under ``uri``, then its manifest (the mark of a finished upload); ``uri``.

    ``skip_dirs``: a regex of top-level sub-folder names left out (a fine-tune's ``checkpoint-N``).
    """
    import re

    root = Path(local)
    skip = re.compile(skip_dirs) if skip_dirs else None
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name != MANIFEST
        and not (skip and len(p.relative_to(root).parts) > 1 and skip.fullmatch(p.relative_to(root).parts[0]))
    )
    manifest = {}
    for p in files:
        rel = p.relative_to(root).as_posix()
        put_file(p, join(uri, rel), settings)
        manifest[rel] = {"sha256": _sha256(p), "size": p.stat().st_size}
    put_bytes(json.dumps({"files": manifest}, sort_keys=True).encode(), join(uri, MANIFEST), settings)
    return uri


def read_manifest(uri: str, settings: Settings | None = None) -> dict[str, dict]:
    """The manifest of an uploaded folder; a one-line error when the upload is missing or unfinished."""
    try:
        raw = read_bytes(join(uri, MANIFEST), settings)
    except FileNotFoundError:
        raise StorageError(
            f"artifact {uri} is missing or its upload never finished (no {MANIFEST})",
            "register the model again from a machine that has it",
        ) from None
    try:
        files = json.loads(raw)["files"]
        assert isinstance(files, dict)
    except (ValueError, KeyError, AssertionError):
        raise StorageError(f"artifact {uri} has a damaged manifest", "register the model again") from None
    return files


def cache_dir_for(uri: str, settings: Settings | None = None) -> Path:
    s = _settings(settings)
    tail = uri.rstrip("/").rsplit("/", 1)[-1]
    return s.artifact_cache / f"{hashlib.sha256(uri.encode()).hexdigest()[:20]}-{tail}"[:120]


def get_dir(uri: str, settings: Settings | None = None) -> Path:
    """A local copy of the folder uploaded at ``uri``: downloaded once, every file checked against the
    manifest's sha256, moved into place whole (a concurrent caller's finished copy is taken as is)."""
    target = cache_dir_for(uri, settings)
    if (target / MANIFEST).is_file():
        return target
    files = read_manifest(uri, settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".part-"))
    try:
        fs = filesystem(settings)
        for rel, meta in files.items():
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise StorageError(f"artifact {uri} lists an unsafe path {rel!r}", "register the model again")
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            src_uri = join(uri, rel)
            try:
                with (
                    errors(src_uri, "downloading"),
                    fs.open_input_stream(path_of(src_uri)) as src,
                    open(dest, "wb") as out,
                ):
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
            except FileNotFoundError:
                raise StorageError(
                    f"artifact {uri} is incomplete: {rel} is missing", "register the model again"
                ) from None
            if h.hexdigest() != meta.get("sha256"):
                raise StorageError(
                    f"artifact {uri} is damaged: {rel} does not match its recorded sha256",
                    "register the model again",
                )
        (tmp / MANIFEST).write_text(json.dumps({"files": files}, sort_keys=True))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / MANIFEST).is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def local_path(path: str, settings: Settings | None = None) -> str:
    """What every consumer of an artifact calls: a local path as is, an ``s3://`` folder downloaded once."""
    return str(get_dir(path, settings)) if is_remote(path) else path


def get_file(uri: str, dest_dir: Path, settings: Settings | None = None) -> tuple[Path, str]:
    """Download one object into ``dest_dir`` (temp name, caller renames); (path, sha256)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".", suffix=".part")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, open_input(uri, settings) as src, errors(uri, "downloading"):
            while chunk := src.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), h.hexdigest()
