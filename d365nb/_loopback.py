"""A one-shot loopback listener that receives the authorization code from the browser.

Used when the browser and the kernel share a machine.  It binds 127.0.0.1 on a free port
(Entra ignores the port when matching loopback redirect URIs), accepts the form the
identity service posts (`response_mode=form_post`) or a query-mode GET, answers with a
small "you can close this tab" page and hands the parameters to the waiting sign-in.
"""

from __future__ import annotations

import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LoopbackReceiver"]

_DONE_PAGE = (
    b"<!doctype html><html><head><title>d365nb</title></head><body style='font-family:"
    b"sans-serif'><h2>Signed in.</h2><p>You can close this tab and return to the "
    b"notebook.</p></body></html>"
)


class LoopbackReceiver:
    """Listens on `http://127.0.0.1:<port>` for exactly one redirect.

    `wait(timeout)` returns the parameters (`code`, `state`, or `error`...) or `None` on
    timeout; `close()` stops listening.  Usable as a context manager.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._params: dict[str, str] | None = None
        self._event = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _finish(self, params: dict[str, str]) -> None:
                if not params.get("code") and not params.get("error"):
                    # Browsers ask for /favicon.ico and the like: not the redirect.
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver._params = params
                receiver._event.set()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(_DONE_PAGE)))
                self.end_headers()
                self.wfile.write(_DONE_PAGE)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                query = urllib.parse.urlsplit(self.path).query
                self._finish({k: v[0] for k, v in urllib.parse.parse_qs(query).items()})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace")
                self._finish({k: v[0] for k, v in urllib.parse.parse_qs(body).items()})

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                # The request line carries the code: never log it.
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="d365nb-loopback", daemon=True
        )
        self._thread.start()

    @property
    def redirect_uri(self) -> str:
        """The address to register as the redirect (no path: Entra adds a trailing `/`)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def wait(self, timeout: float | None = None) -> dict[str, str] | None:
        """Block until the redirect arrives (or `timeout` seconds pass)."""
        if not self._event.wait(timeout):
            return None
        return self._params

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
