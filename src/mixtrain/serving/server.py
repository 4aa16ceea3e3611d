"""What `mixtrain model serve` runs: resolve the models, check the security options, then serve.

Order matters for a good failure: every user mistake (unknown model, exposed host without a key,
missing secret, port in use, vLLM on a CPU machine) is reported before any model is loaded. The port
is bound before loading too, and handed to uvicorn, so `--port 0` works and the printed URL is exact.
"""

from __future__ import annotations

import signal
import socket
import sys

from mixtrain.errors import InvalidInput
from mixtrain.netaddr import is_loopback
from mixtrain.serving.spec import ServeSpec, parse_model_ref

__all__ = ["is_loopback", "serve"]


def serve(spec: ServeSpec) -> None:
    """Serve ``spec`` (already validated: flags, bounds, exposure) — every remaining refusal before loading."""
    from mixtrain.client import MixClient

    client = MixClient()
    infos = [client.get_model_info(*parse_model_ref(r)) for r in spec.models]
    api_key = client.get_secret(spec.api_key_secret) if spec.api_key_secret else None
    if api_key is not None and not api_key.strip():
        raise InvalidInput(f"secret {spec.api_key_secret!r} is empty", "store a non-empty key")
    from mixtrain.serving import pool, vllm

    bases = pool.plan(infos)
    # auto: vLLM only where it can serve everything asked for (one base per vLLM server)
    use_vllm = spec.engine == "vllm" or (spec.engine == "auto" and len(bases) == 1 and vllm.vllm_available())
    if use_vllm:
        if not vllm.vllm_available():
            raise InvalidInput(
                "--engine vllm needs a CUDA GPU and the vllm package", "use --engine transformers on this machine"
            )
        cmd = vllm.vllm_command(
            bases, spec.host, spec.port, max_batch_size=spec.max_batch_size, allow_local_files=spec.allow_local_files
        )
        _say(f"Starting vLLM for {', '.join(s.name for b in bases for s in b.served)}: {' '.join(cmd)}")
        sys.exit(vllm.run_vllm(cmd, api_key))
    sock = _bind(spec.host, spec.port)
    _serve_transformers(sock, bases, spec, client.settings.image_cache, api_key, client.settings.home / "cache")


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


def _serve_transformers(sock, bases, spec: ServeSpec, image_cache, api_key, cache_dir=None) -> None:
    import uvicorn

    from mixtrain.serving import pool
    from mixtrain.serving.app import ServeOptions, create_app
    from mixtrain.serving.batcher import Batcher

    names = [s.name for b in bases for s in b.served]
    _say(f"Loading {', '.join(names)} ({len(bases)} base model{'s' if len(bases) > 1 else ''}) ...")
    from mixtrain.models import _fastimport

    _fastimport.enable()  # this process is ours: the models load without the integrations serving never uses
    pool.load(bases, cache_dir)
    batcher = Batcher(bases, max_batch_size=spec.max_batch_size, max_wait_ms=spec.max_wait_ms)
    opts = ServeOptions(
        spec.limits(),
        image_cache,
        api_key,
        allow_local_files=spec.allow_local_files,
        allow_private_urls=spec.allow_private_urls,
        bound_host=spec.host,
    )
    app = create_app(bases, batcher, opts)
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
