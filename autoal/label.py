"""The labeling page: ``python -m autoal.label RUN`` serves the pending query batch on 127.0.0.1.

A person opens the printed address, sees each queried image large, what the model predicts for it and
which strategies wanted it, and presses a key per image. Every answer is written at once, atomically, to
the batch's ``labels.csv``, so closing the browser (or the server) loses nothing, and ``--resume RUN``
reads that file as it would a hand-filled one.

Built on the standard library (http.server.ThreadingHTTPServer) on purpose: one local user sends a few
requests a minute, the page is three static files plus four JSON routes, and every path is looked up in a
whitelist built from batch.json (never joined onto a folder), so a framework would add a dependency and
its own routing to audit without adding anything this needs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

from autoal import runlog
from autoal.errors import UserError
from autoal.label_batch import QUERIES, LabelBatch, find_batch_dir

log = logging.getLogger(__name__)

MAX_BODY = 4096  # bytes: a label request is ~60
LOOPBACK = ("127.0.0.1", "localhost", "::1")

#: URL path -> (package file, content type): the page and its assets, nothing else from the package.
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/label.js": ("label.js", "text/javascript; charset=utf-8"),
    "/static/label.css": ("label.css", "text/css; charset=utf-8"),
}
#: Sent with every response. The page loads nothing from elsewhere, so the policy can be strict.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


# --- HTTP ------------------------------------------------------------------------------------------

class RequestRefused(Exception):
    def __init__(self, status: HTTPStatus, message: str, allow: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.allow = allow  # the methods that path takes, for a 405


def read_no_follow(path: Path) -> bytes:
    """The file's bytes, refusing a symlink put in its place since the server started (O_NOFOLLOW)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        return f.read()


def page_file(name: str) -> bytes:
    return resources.files("autoal").joinpath("label_page", name).read_bytes()


class LabelHandler(BaseHTTPRequestHandler):
    """Routes: GET the page, its two assets, the batch's images and /api/state; POST /api/label and
    /api/undo. Anything else is refused before a file is touched."""

    server: LabelServer
    # HTTP/1.0: one request per connection. A few requests a minute need no keep-alive, and no idle
    # connection outlives a stopped server (the page then says its answers are not saved).
    protocol_version = "HTTP/1.0"
    timeout = 30  # seconds: a connection that sends nothing does not hold its thread for ever
    server_version = "autoal-label"
    sys_version = ""

    # -- plumbing --
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, head_only: bool = False,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _send_json(self, data: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _refuse(self, exc: RequestRefused) -> None:
        log.warning("refused %s %s: %s", self.command, self.path[:200], exc)
        headers = {"Allow": exc.allow} if exc.allow else None
        if self.path.startswith("/api/"):
            self._send(exc.status, json.dumps({"error": str(exc)}).encode(), "application/json", headers=headers)
        else:
            self._send(exc.status, f"{exc}\n".encode(), "text/plain; charset=utf-8", headers=headers)

    def _route(self) -> str:
        """The request's path, decoded, after the checks every request gets."""
        self._check_host()
        if len(self.path) > 512:
            raise RequestRefused(HTTPStatus.REQUEST_URI_TOO_LONG, "address too long")
        parts = urlsplit(self.path)
        if parts.scheme or parts.netloc:
            raise RequestRefused(HTTPStatus.BAD_REQUEST, "absolute addresses are not served")
        try:
            path = unquote(parts.path, errors="strict")
        except UnicodeDecodeError:
            raise RequestRefused(HTTPStatus.BAD_REQUEST, "the address is not UTF-8") from None
        if ".." in path or "\\" in path or "\0" in path or "//" in path:
            raise RequestRefused(HTTPStatus.NOT_FOUND, "not part of this batch")
        return path

    def _check_host(self) -> None:
        """On a loopback address, only requests naming that address (and, when sent, coming from it):
        this keeps other web sites out, by DNS rebinding or by a form posted from another tab."""
        allowed = self.server.allowed_hosts
        if allowed is None:
            return
        host = self.headers.get("Host", "")
        if host not in allowed:
            raise RequestRefused(HTTPStatus.FORBIDDEN, f"host {host!r} is not this server")
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc not in allowed:
            raise RequestRefused(HTTPStatus.FORBIDDEN, f"requests from {origin!r} are not accepted")

    def _read_json_body(self, keys: set[str]) -> dict[str, Any]:
        if self.headers.get("Transfer-Encoding"):
            raise RequestRefused(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not a chunked body")
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise RequestRefused(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
        length = int(length_text)
        if length > MAX_BODY:
            raise RequestRefused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestRefused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RequestRefused(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(body, dict) or set(body) != keys or not all(isinstance(body[k], str) for k in keys):
            wanted = ", ".join(sorted(keys)) or "nothing"
            raise RequestRefused(HTTPStatus.BAD_REQUEST, f"the body must be an object of text fields: {wanted}")
        return body

    # -- methods --
    def do_GET(self, head_only: bool = False) -> None:
        try:
            path = self._route()
            if path in PAGE_FILES:
                name, content_type = PAGE_FILES[path]
                self._send(HTTPStatus.OK, page_file(name), content_type, head_only)
            elif path in self.server.batch.image_paths:
                self._send(HTTPStatus.OK, read_no_follow(self.server.batch.image_paths[path]), "image/png", head_only)
            elif path == "/api/state":
                self._send(HTTPStatus.OK, json.dumps(self.server.batch.state()).encode(), "application/json",
                           head_only)
            elif path in ("/api/label", "/api/undo"):
                raise RequestRefused(HTTPStatus.METHOD_NOT_ALLOWED, "use POST", allow="POST")
            elif path == "/favicon.ico":  # every browser asks; not worth a warning
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon", head_only=True)
            else:
                raise RequestRefused(HTTPStatus.NOT_FOUND, "not part of this batch")
        except RequestRefused as exc:
            self._refuse(exc)
        except ConnectionError:
            raise  # the browser went away: nothing to answer (the server logs it quietly)
        except (UserError, OSError) as exc:  # labels.csv edited badly by hand, an image deleted meanwhile
            self._refuse(RequestRefused(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc)))

    def do_HEAD(self) -> None:
        self.do_GET(head_only=True)

    def do_POST(self) -> None:
        batch = self.server.batch
        try:
            path = self._route()
            if path == "/api/label":
                body = self._read_json_body({"file", "label"})
                try:
                    batch.set_label(body["file"], body["label"])
                except ValueError as exc:
                    raise RequestRefused(HTTPStatus.BAD_REQUEST, str(exc)) from None
                self._send_json(batch.state())
            elif path == "/api/undo":
                self._read_json_body(set())
                undone = batch.undo()
                self._send_json({**batch.state(), "undone": undone})
            elif path in PAGE_FILES or path in batch.image_paths or path == "/api/state":
                raise RequestRefused(HTTPStatus.METHOD_NOT_ALLOWED, "use GET", allow="GET, HEAD")
            else:
                raise RequestRefused(HTTPStatus.NOT_FOUND, "not part of this batch")
        except RequestRefused as exc:
            self._refuse(exc)
        except ConnectionError:
            raise
        except (UserError, OSError) as exc:  # a full disk, labels.csv open in another program
            self._refuse(RequestRefused(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc)))

    def _method_not_allowed(self) -> None:
        self._refuse(RequestRefused(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not accepted",
                                    allow="POST" if self.path in ("/api/label", "/api/undo") else "GET, HEAD"))

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed


class LabelServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung browser connection must not keep the process alive on Ctrl+C

    def __init__(self, batch: LabelBatch, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.batch = batch
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET  # --host ::1
        super().__init__((host, port), LabelHandler)
        bound_port = self.server_address[1]
        # Host header check on loopback only: someone who binds to a network address chose to be reached
        # by other names.
        self.allowed_hosts = ({f"{h}:{bound_port}" for h in ("127.0.0.1", "localhost", "[::1]")}
                              if host in LOOPBACK else None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):  # a closed tab mid-reply: not the person's problem
            log.debug("connection from %s closed early: %s", client_address, exc)
        else:
            log.exception("request from %s failed", client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


# --- command line ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autoal.label",
        description="Serve a run's pending query batch as a labeling page in the browser. "
                    "Answers are saved to the batch's labels.csv as you go; then stop the page and "
                    "continue the run with python -m autoal.train --resume RUN.")
    parser.add_argument("run", type=Path, help="the run folder that --oracle human wrote a batch into")
    parser.add_argument("--port", type=int, default=8765, help="port to serve on (default 8765; 0 = any free)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this computer only; anything else lets "
                             "others on the network see the images)")
    parser.add_argument("--round", type=int, default=None, dest="round_number", metavar="N",
                        help="label this round's batch instead of the pending one")
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def open_server(run_dir: Path, host: str, port: int, round_number: int | None = None) -> LabelServer:
    batch_dir, already_read = find_batch_dir(run_dir, round_number)
    batch = LabelBatch(batch_dir, run_dir, already_read)
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a port; give 1-65535, or 0 for any free one")
    try:
        return LabelServer(batch, host, port)
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); "
                        f"pass another --port, or stop the program using it") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        # The run lock: a --resume cannot read labels.csv while the page may still change it, and two
        # pages cannot write the same file.
        with _hold_run(args.run):
            server = open_server(args.run, args.host, args.port, args.round_number)
            with server:
                batch = server.batch
                print(f"Labeling round {batch.round}: {len(batch.files)} images, answers saved to "
                      f"{batch.labels_path}")
                if batch.already_read:
                    print(f"note: the run has already read round {batch.round}'s labels; changes made now are "
                          f"saved to the file but not used", file=sys.stderr)
                if (batch.dir / "export.json").is_file():
                    print(f"note: {batch.dir / 'export.json'} (a Label Studio export) is read with labels.csv on "
                          f"--resume; where both give a label they must agree", file=sys.stderr)
                if args.host not in LOOPBACK:
                    print(f"warning: serving on {args.host}: anyone who can reach this computer can see "
                          f"the images and change the labels", file=sys.stderr)
                print(f"Open {server.url} in a browser. When done, stop this with Ctrl+C and run:\n"
                      f"  python -m autoal.train --resume {args.run}", flush=True)
                if args.open:
                    import webbrowser
                    webbrowser.open(server.url)
                server.serve_forever()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nstopped; every answer is saved in {args.run}/{QUERIES}. Continue the run with "
              f"python -m autoal.train --resume {args.run}", file=sys.stderr)
        return 0
    return 0


@contextlib.contextmanager
def _hold_run(run_dir: Path) -> Iterator[None]:
    """runlog.hold_lock on the run folder, with a message that fits the labeling page."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():  # hold_lock would create it
        raise UserError(f"{run_dir} is not a folder; give the run folder that --oracle human wrote")
    lock = runlog.hold_lock(run_dir, runlog.LABELING_PAGE)
    try:
        lock.__enter__()
    except UserError as exc:
        pid = re.search(r"PID \w+", str(exc))
        raise UserError(f"{run_dir} is in use by another process ({pid.group(0) if pid else 'PID unknown'}): "
                        f"a run still working, or a labeling page already open; stop it first") from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
