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
import csv
import io
import json
import logging
import os
import re
import socket
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, unquote, urlsplit

from autoal import oracle, runlog
from autoal.errors import UserError

log = logging.getLogger(__name__)

BATCH_JSON = "batch.json"
LABELS_CSV = "labels.csv"
QUERIES = "queries"
UNSURE = "unsure"  # the person skipped the image: it goes back to the pool
ROUND_DIR = re.compile(r"round-(\d+)")
ITEM_FILE = re.compile(r"images/[A-Za-z0-9_-]+\.png")  # what batch.json may name; nothing else is served
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


# --- the batch -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchItem:
    """One queried image as batch.json describes it."""
    file: str  # "images/0000.png", relative to the batch folder; also the labels.csv key
    pool_index: int
    source: str | None  # the original file name, for data that came from a folder
    prediction: dict[str, Any] | None  # {"label": class name, "prob": float}
    contributions: dict[str, float]  # strategy -> share of the choice


def find_batch_dir(run_dir: Path, round_number: int | None = None) -> tuple[Path, bool]:
    """(the folder of the batch to label, whether the run has already read its labels).

    Without ``round_number``, the batch the run waits for: the checkpoint's pending round, else a batch
    written after the checkpoint's last finished round (a run killed between writing its batch and
    saving the round redoes it with the same images and keeps labels.csv, so answers given now count).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder; give the run folder that --oracle human wrote")
    rounds = _round_dirs(run_dir / QUERIES)
    waiting = _waiting_round(run_dir, rounds)
    if round_number is not None:
        if round_number not in rounds:
            known = ", ".join(str(r) for r in sorted(rounds)) or "none"
            raise UserError(f"{run_dir} has no query batch for round {round_number} (batches: {known}); "
                            f"drop --round to label the pending one")
        return rounds[round_number], round_number != waiting
    if not rounds:
        raise UserError(f"{run_dir} has no pending query batch (no {QUERIES}/round-NNN/{BATCH_JSON}); "
                        f"start the run with --oracle human, which writes one and stops")
    if waiting is None:
        raise UserError(f"{run_dir} has no pending query batch: the run has read every batch it wrote (the "
                        f"last: {rounds[max(rounds)].name}); continue it with python -m autoal.train --resume "
                        f"{run_dir}, or look at an earlier batch with --round N")
    if waiting not in rounds:
        raise UserError(f"the run waits for the labels of round {waiting}, but {QUERIES}/round-{waiting:03d}/"
                        f"{BATCH_JSON} is missing; restore that folder from a backup")
    return rounds[waiting], False


def _waiting_round(run_dir: Path, rounds: dict[int, Path]) -> int | None:
    state = runlog.load_checkpoint(run_dir)
    if state is None:  # killed before the first round was saved: every batch is unread
        unread = list(rounds)
    else:
        pending = (state.get("human") or {}).get("pending")
        if pending is not None:
            return int(pending["round"])
        unread = [r for r in rounds if r >= int(state["next_round"])]
    return max(unread) if unread else None


def _round_dirs(queries: Path) -> dict[int, Path]:
    if not queries.is_dir():
        return {}
    found = {}
    for path in queries.iterdir():
        match = ROUND_DIR.fullmatch(path.name)
        if match and (path / BATCH_JSON).is_file():
            found[int(match.group(1))] = path
    return found


def parse_batch(raw: Any, where: Path) -> tuple[int, list[str], list[BatchItem]]:
    """(round, classes, items) from batch.json's content; anything off is a UserError naming it."""
    def bad(problem: str) -> UserError:
        return UserError(f"{where}: {problem}; write the batch again with the run (--resume RUN) "
                         f"or restore the file")

    if not isinstance(raw, dict):
        raise bad(f"holds a {type(raw).__name__}, not an object")
    round_number, classes, items = raw.get("round"), raw.get("classes"), raw.get("items")
    if not isinstance(round_number, int) or isinstance(round_number, bool):
        raise bad("'round' is not a whole number")
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, str) and c.strip() == c and c for c in classes)):
        raise bad("'classes' is not a list of class names")
    if len(set(classes)) != len(classes):
        raise bad("'classes' names a class twice")
    if UNSURE in classes:
        raise bad(f"a class is named '{UNSURE}', which is the answer for a skipped image")
    if not isinstance(items, list) or not items:
        raise bad("'items' is not a non-empty list")
    parsed = [_parse_item(item, i, classes, bad) for i, item in enumerate(items)]
    if len({item.file for item in parsed}) != len(parsed):
        raise bad("two items name the same file")
    return round_number, classes, parsed


def _parse_item(item: Any, i: int, classes: list[str], bad: Any) -> BatchItem:
    if not isinstance(item, dict):
        raise bad(f"item {i} is not an object")
    file = item.get("file")
    if not isinstance(file, str) or not ITEM_FILE.fullmatch(file):
        raise bad(f"item {i} names the file {file!r}, not images/NAME.png")
    pool_index = item.get("pool_index")
    if not isinstance(pool_index, int) or isinstance(pool_index, bool):
        raise bad(f"item {i} ({file}) has no whole-number pool_index")
    source = item.get("source")
    if source is not None and not isinstance(source, str):
        raise bad(f"item {i} ({file}) has a source that is not text")
    prediction = item.get("prediction")
    if prediction is not None:
        if (not isinstance(prediction, dict) or prediction.get("label") not in classes
                or not _is_number(prediction.get("prob"))):
            raise bad(f"item {i} ({file}) has a prediction that is not {{label: a class, prob: a number}}")
        prediction = {"label": prediction["label"], "prob": float(prediction["prob"])}
    contributions = item.get("contributions") or {}
    if not isinstance(contributions, dict) or not all(
            isinstance(k, str) and _is_number(v) for k, v in contributions.items()):
        raise bad(f"item {i} ({file}) has contributions that are not {{strategy: share}}")
    return BatchItem(file, pool_index, source, prediction, {k: float(v) for k, v in contributions.items()})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def read_labels(path: Path, files: list[str], classes: list[str]) -> dict[str, str]:
    """file -> label ('' = not answered yet) from labels.csv; a malformed file is a UserError.

    Read as ``--resume`` reads it (``oracle.csv_label_rows``), with class names matched
    case-insensitively (and returned as batch.json spells them). A missing file, or a missing row,
    means not answered yet.
    """
    try:
        given = oracle.csv_label_rows(path, files)
    except FileNotFoundError:
        return {f: "" for f in files}
    canonical = {c.casefold(): c for c in [*classes, UNSURE]}
    for file, label in given.items():
        if label and label.casefold() not in canonical:
            raise UserError(f"{path}: the label of {file}, {label!r} is not a class of this batch "
                            f"({', '.join(classes)}, or {UNSURE}); correct it or empty the cell")
    return {f: canonical[given[f].casefold()] if given.get(f) else "" for f in files}


def labels_csv_bytes(files: list[str], labels: dict[str, str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "label"])
    writer.writerows([f, labels.get(f, "")] for f in files)
    return out.getvalue().encode()


class LabelBatch:
    """The pending batch: its items, and its labels.csv as the one record of the person's answers.

    labels.csv is read before every change and rewritten whole (temp file + rename) under a lock, so
    concurrent requests cannot interleave and a hand edit made while the page is open is not overwritten
    by a stale copy. Undo is a history of (file, previous label) kept for the life of the server.
    """

    def __init__(self, batch_dir: Path, run_dir: Path | None = None, already_read: bool = False) -> None:
        self.dir = Path(batch_dir)
        self.already_read = already_read  # the run has used these labels: changes are kept, not read
        self.run_dir = Path(run_dir) if run_dir is not None else self.dir.parent.parent
        self.round, self.classes, self.items = parse_batch(runlog.read_json(self.dir / BATCH_JSON),
                                                           self.dir / BATCH_JSON)
        self.files = [item.file for item in self.items]
        self.allowed = set(self.classes) | {UNSURE}
        self.labels_path = self.dir / LABELS_CSV
        self.image_paths = self._image_paths()
        self._lock = threading.Lock()
        self._history: list[tuple[str, str]] = []
        read_labels(self.labels_path, self.files, self.classes)  # a malformed file fails at start, not per click

    def _image_paths(self) -> dict[str, Path]:
        """URL path -> image file, for each item; an image that is missing or leads out of the batch
        folder (a symlink, say) stops the server at start."""
        root = self.dir.resolve()
        paths = {}
        for file in self.files:
            path = self.dir / file
            real = path.resolve()
            if path.is_symlink() or (self.dir / "images").is_symlink() or real.parent != root / "images":
                raise UserError(f"{path} is a link out of the batch folder; the page serves only the batch's "
                                f"own files: copy the image there instead")
            if not real.is_file():
                raise UserError(f"{path} is missing; write the batch again with the run or restore the image")
            paths["/" + file] = real
        return paths

    def labels(self) -> dict[str, str]:
        with self._lock:
            return read_labels(self.labels_path, self.files, self.classes)

    def set_label(self, file: str, label: str) -> None:
        """Record ``label`` ('' clears it) for ``file``; unknown files and labels are a ValueError."""
        if file not in self.files:
            raise ValueError(f"{file!r} is not an image of this batch")
        if label and label not in self.allowed:
            raise ValueError(f"{label!r} is not a class of this batch, nor '{UNSURE}'")
        with self._lock:
            labels = read_labels(self.labels_path, self.files, self.classes)
            if labels[file] == label:
                return
            self._history.append((file, labels[file]))
            labels[file] = label
            runlog.atomic_write_bytes(self.labels_path, labels_csv_bytes(self.files, labels))

    def undo(self) -> str | None:
        """Take back the last change; returns its file, or None when there is nothing to undo."""
        with self._lock:
            if not self._history:
                return None
            file, previous = self._history.pop()
            labels = read_labels(self.labels_path, self.files, self.classes)
            labels[file] = previous
            runlog.atomic_write_bytes(self.labels_path, labels_csv_bytes(self.files, labels))
            return file

    def state(self) -> dict[str, Any]:
        """What the page shows: the batch, every saved label, and progress."""
        labels = self.labels()
        with self._lock:
            can_undo = bool(self._history)
        done = sum(1 for f in self.files if labels[f])
        return {
            "round": self.round,
            "classes": self.classes,
            "unsure": UNSURE,
            "labels_csv": str(self.labels_path),
            "resume_command": f"python -m autoal.train --resume {self.run_dir}",
            "done": done,
            "total": len(self.files),
            "can_undo": can_undo,
            "already_read": self.already_read,
            "items": [{"file": item.file, "url": "/" + quote(item.file), "label": labels[item.file],
                       "source": item.source, "pool_index": item.pool_index, "prediction": item.prediction,
                       "contributions": item.contributions} for item in self.items],
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
