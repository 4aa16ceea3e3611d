"""What `mixtrain model serve` runs: resolve the models, check the security options, then serve.

Order matters for a good failure: every user mistake (unknown model, exposed host without a key,
missing secret, port in use, vLLM on a CPU machine) is reported before any model is loaded. The port
is bound before loading too, and handed to uvicorn, so `--port 0` works and the printed URL is exact.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys

from mixtrain.errors import InvalidInput
from mixtrain.serving.app import Limits


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    name, sep, version = ref.partition(":")
    if not sep:
        return name, None
    if not version.isdigit():
        raise InvalidInput(f"bad model reference {ref!r}", "use NAME or NAME:VERSION, e.g. my-model:2")
    return name, int(version)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, api_key_secret: str | None, insecure: bool) -> None:
    if not is_loopback(host) and api_key_secret is None and not insecure:
        raise InvalidInput(
            f"refusing to serve on {host} without an API key",
            "pass --api-key-secret NAME (see `mixtrain secret create`), or --insecure to serve openly",
        )


def serve(
    refs: list[str],
    *,
    host: str,
    port: int,
    engine: str,
    max_batch_size: int,
    max_wait_ms: float,
    api_key_secret: str | None,
    insecure: bool,
    allow_local_files: bool,
    limits: Limits,
) -> None:
    from mixtrain.client import MixClient

    if not refs:
        raise InvalidInput("no model given", "mixtrain model serve MODEL[:VERSION] [MODEL...]")
    if engine not in ("auto", "transformers", "vllm"):
        raise InvalidInput(f"unknown engine {engine!r}", "use auto, transformers or vllm")
    if max_batch_size < 1 or max_wait_ms < 0:
        raise InvalidInput("--max-batch-size must be ≥ 1 and --max-wait-ms ≥ 0", "fix the option")
    check_exposure(host, api_key_secret, insecure)
    client = MixClient()
    infos = [client.get_model_info(*parse_model_ref(r)) for r in refs]
    api_key = client.get_secret(api_key_secret) if api_key_secret else None
    if api_key is not None and not api_key.strip():
        raise InvalidInput(f"secret {api_key_secret!r} is empty", "store a non-empty key")
    from mixtrain.serving import pool, vllm

    bases = pool.plan(infos)
    # auto: vLLM only where it can serve everything asked for (one base per vLLM server)
    use_vllm = engine == "vllm" or (engine == "auto" and len(bases) == 1 and vllm.vllm_available())
    if use_vllm:
        if not vllm.vllm_available():
            raise InvalidInput(
                "--engine vllm needs a CUDA GPU and the vllm package", "use --engine transformers on this machine"
            )
        cmd = vllm.vllm_command(bases, host, port, max_batch_size=max_batch_size, allow_local_files=allow_local_files)
        _say(f"Starting vLLM for {', '.join(s.name for b in bases for s in b.served)}: {' '.join(cmd)}")
        sys.exit(vllm.run_vllm(cmd, api_key))
    sock = _bind(host, port)
    _serve_transformers(
        sock, bases, client.settings.image_cache, max_batch_size, max_wait_ms, api_key, allow_local_files, limits
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY. Without it a response written in two pieces (headers,
    # body) waits for the client's delayed ACK: measured +40 ms on every keep-alive request here.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InvalidInput(
            f"cannot listen on {host}:{port}: {err.strerror}", "pick another --port (0 = any free port)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _serve_transformers(
    sock, bases, image_cache, max_batch_size, max_wait_ms, api_key, allow_local_files, limits
) -> None:
    import uvicorn

    from mixtrain.serving import pool
    from mixtrain.serving.app import ServeOptions, create_app
    from mixtrain.serving.batcher import Batcher

    names = [s.name for b in bases for s in b.served]
    _say(f"Loading {', '.join(names)} ({len(bases)} base model{'s' if len(bases) > 1 else ''}) ...")
    pool.load(bases)
    batcher = Batcher(bases, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
    app = create_app(bases, batcher, ServeOptions(limits, image_cache, api_key, allow_local_files))
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(app, log_level="info", access_log=True, timeout_graceful_shutdown=60)
    server = uvicorn.Server(config)
    _say(f"Serving {', '.join(names)} at http://{shown}:{port}/v1  (OpenAI API; Ctrl-C to stop)")
    # uvicorn finishes in-flight requests on SIGINT/SIGTERM, then re-raises the signal with the handler
    # that was there before it; a recording handler makes a requested stop a clean exit 0.
    stops: list[int] = []
    saved = {
        sig: signal.signal(sig, lambda signum, _frame: stops.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        batcher.close()
    _say("Stopped" + (f" ({signal.Signals(stops[0]).name})" if stops else ""))


def _say(text: str) -> None:
    print(text, flush=True)
