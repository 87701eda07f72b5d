"""``tracer web``: the cockpit on 127.0.0.1 (never another interface), port ``TB_WEB_PORT``. Without a token
(``TB_WEB_TOKEN``), one is generated, written into ``.env`` (user-only) and printed once; it is never logged."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def add_parser(sub: Any) -> None:
    w = sub.add_parser("web", help="serve the local web cockpit on 127.0.0.1 (token: TB_WEB_TOKEN in .env)")
    w.add_argument("--port", type=int, help="port (default TB_WEB_PORT, 8787)")
    w.add_argument("--refresh-s", type=float, default=5.0, help="seconds between live refreshes of a page (0 = off)")
    w.add_argument("--init-token", action="store_true",
                   help="only make sure .env has a TB_WEB_TOKEN (generated and printed once if missing), then exit")


def run(args: argparse.Namespace, settings: Any, env_file: str) -> int:
    import uvicorn

    from tracer.web.app import create_app
    from tracer.web.auth import ensure_token

    token, generated = ensure_token(Path(env_file), settings.web_token)
    port = args.port or settings.web_port
    if generated:
        # the one time the token is shown: on the terminal that started the server, never into a log or a pipe
        shown = f": {token}" if sys.stdout.isatty() else f"; read it with: grep ^TB_WEB_TOKEN= {env_file}"
        print(f"tracer web: a new access token was written to {env_file} (TB_WEB_TOKEN){shown}", flush=True)
    if args.init_token:
        if not generated:
            print(f"tracer web: the access token is TB_WEB_TOKEN (set in {env_file} or the environment)")
        return 0
    if not Path(settings.db_path).is_file():
        print(f"tracer web: no database at {Path(settings.db_path).resolve()} yet: the pages stay empty until an "
              f"agent writes it", file=sys.stderr)
    addr = [f"{HOST}:{port}", f"localhost:{port}"]
    app = create_app(settings, token, hosts=addr, origins=[f"http://{a}" for a in addr],
                     refresh_ms=int(args.refresh_s * 1000))
    print(f"tracer web: http://{HOST}:{port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False, server_header=False)
    return 0
