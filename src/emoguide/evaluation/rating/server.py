"""`emoguide rate serve`: run the rating app with uvicorn, on loopback unless told otherwise.

Invite tokens travel in URL paths (/r/<token>), so the access log redacts them; uvicorn's
proxy-header handling is off, so a client cannot pick its own address (the failed-login
slowdown counts per address).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
from pathlib import Path

from emoguide.errors import require

_TOKEN_PATH = re.compile(r"^(/r/|/admin/login/)[^/?\s]+")


def is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class RedactTokens(logging.Filter):
    """Replace invite tokens in uvicorn's access-log lines with <token>."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], _TOKEN_PATH.sub(r"\1<token>", args[2]), *args[3:])
        return True


def loopback_warning(host: str, port: int) -> str:
    return (
        f"WARNING: binding {host}:{port}, which is NOT loopback: anyone who can reach this machine on "
        "the network can reach the rating study (the invite tokens are its only protection, and plain "
        "HTTP sends them unencrypted). Serve on 127.0.0.1 and put an HTTPS reverse proxy in front if "
        "raters connect from other machines."
    )


def serve(corpus_root: Path, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the study in `corpus_root` until interrupted.

    Raises FileNotFoundError when there is no study or htmx was not fetched (the message says
    what to run).
    """
    uvicorn = require("uvicorn", "rating")
    from emoguide.evaluation.rating.app import check_vendor, create_app

    check_vendor()
    if not is_loopback(host):
        bar = "!" * 78
        print(f"{bar}\n{loopback_warning(host, port)}\n{bar}", file=sys.stderr, flush=True)
    app = create_app(Path(corpus_root))
    shown = f"[{host}]" if ":" in host else host
    print(
        f"emoguide rating study {Path(corpus_root)} on http://{shown}:{port}/ (Ctrl+C stops). "
        f"Invite links: emoguide rate invite --corpus {corpus_root} --base-url http://{shown}:{port}",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app, host=host, port=int(port), log_level="info", access_log=True,
        proxy_headers=False, server_header=False,
    )
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())  # after Config set up logging
    uvicorn.Server(config).run()
