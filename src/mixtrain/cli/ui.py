"""`mixtrain ui` — the local web dashboard (datasets, runs, models, evaluations, playground, secrets).

FastAPI and uvicorn are imported inside the command, so `mixtrain --help` stays fast.
"""

from __future__ import annotations

import typer

from mixtrain.cli.common import client, err_console
from mixtrain.netaddr import is_loopback


def ui(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind. Anything but loopback needs --token-secret."
    ),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="Port to listen on."),
    token_secret: str | None = typer.Option(
        None, "--token-secret", help="Name of a mixtrain secret whose value is the login token (required off loopback)."
    ),
):
    """Start the web dashboard over this home's datasets, runs, models, evaluations and secrets."""
    from mixtrain.errors import InvalidInput

    if not is_loopback(host) and not token_secret:
        raise InvalidInput(
            f"--host {host} is reachable from other machines and the dashboard can start runs and read data",
            "create a token with `mixtrain secret create UI_TOKEN` and pass --token-secret UI_TOKEN (or bind 127.0.0.1)",
        )
    c = client()
    token = c.get_secret(token_secret) if token_secret else None
    if token is not None and len(token) < 16:
        raise InvalidInput(f"the token in secret {token_secret!r} is under 16 characters", "set a longer, random value")
    import uvicorn

    from mixtrain.ui.app import create_app

    app = create_app(c, token)
    shown = f"[{host}]" if ":" in host else host
    err_console.print(
        f"mixtrain dashboard on http://{shown}:{port}/"
        + ("  (sign in with the token)" if token else "")
        + " — Ctrl-C stops it"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
