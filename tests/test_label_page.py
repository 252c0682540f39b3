"""The labeling page over HTTP: answers reach labels.csv at once, undo, validation, and nothing outside
the pending batch is ever served (the path-traversal tests of issue 11 item 4)."""

from __future__ import annotations

import csv
import http.client
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from autoal import label, label_batch, oracle, runlog
from autoal.errors import UserError

CLASSES = ["benign", "malignant", "normal"]
SECRET = b"SECRET-CHECKPOINT-BYTES"


def write_batch(run_dir: Path, round_number: int = 1, n: int = 5, classes: list[str] = CLASSES) -> Path:
    """A query batch as the human oracle writes it (RUN/queries/round-NNN/: images, labels.csv, batch.json)."""
    rng = np.random.default_rng(round_number)
    top = 0.5 + np.arange(n) / 20  # image i: the model says classes[i % C] with 0.5 + i/20
    probs = np.repeat(((1 - top) / (len(classes) - 1))[:, None], len(classes), axis=1)
    probs[np.arange(n), np.arange(n) % len(classes)] = top
    return oracle.write_query_batch(
        run_dir, round=round_number, classes=classes, images_uint8=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        pool_indices=[100 + i for i in range(n)], predictions=probs,
        contributions=[{"margin": 0.7, "kmeans": 0.3}] * n, sources=[f"slide-{i}.tif" for i in range(n)])


def save_checkpoint(run_dir: Path, next_round: int, pending_round: int | None) -> None:
    """The two entries of the run's checkpoint the page reads (loop.py writes many more)."""
    pending = None if pending_round is None else {"round": pending_round}
    runlog.save_checkpoint(run_dir, {"next_round": next_round, "human": {"pending": pending},
                                     "secret": SECRET.decode()})  # what a traversal would be after


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "outside.png").write_bytes(SECRET)
    write_batch(run)
    save_checkpoint(run, next_round=1, pending_round=1)
    return run


@pytest.fixture
def server(run_dir: Path) -> Iterator[label.LabelServer]:
    srv = label.open_server(run_dir, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def call(srv: label.LabelServer, method: str, path: str, body: Any = None, *,
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, bytes, Any]:
    """(status, body, headers) for one request, the path sent exactly as given (no client-side cleanup)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    sent = {"Content-Type": "application/json"} if data is not None else {}
    sent.update(headers or {})
    try:
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        return response.status, response.read(), response.headers
    finally:
        conn.close()


def saved_labels(run_dir: Path, round_number: int = 1) -> dict[str, str]:
    with open(run_dir / "queries" / f"round-{round_number:03d}" / "labels.csv", newline="") as f:
        return {row["file"]: row["label"] for row in csv.DictReader(f)}


def state(srv: label.LabelServer) -> dict[str, Any]:
    status, body, _ = call(srv, "GET", "/api/state")
    assert status == 200
    return json.loads(body)


# --- answers ---------------------------------------------------------------------------------------

def test_state_shows_the_batch_with_predictions_and_reasons(server: label.LabelServer) -> None:
    got = state(server)
    assert got["round"] == 1 and got["classes"] == CLASSES and (got["done"], got["total"]) == (0, 5)
    first = got["items"][0]
    assert first["file"] == "images/0000.png" and first["url"] == "/images/0000.png" and first["label"] == ""
    assert first["prediction"] == {"label": "benign", "prob": 0.5}
    assert first["contributions"] == {"margin": 0.7, "kmeans": 0.3} and first["source"] == "slide-0.tif"


def test_each_answer_is_in_labels_csv_at_once_and_survives_a_restart(server: label.LabelServer,
                                                                     run_dir: Path) -> None:
    status, body, _ = call(server, "POST", "/api/label", {"file": "images/0002.png", "label": "malignant"})
    assert status == 200 and json.loads(body)["done"] == 1
    assert saved_labels(run_dir)["images/0002.png"] == "malignant"  # on disk before the reply
    call(server, "POST", "/api/label", {"file": "images/0003.png", "label": "unsure"})
    assert saved_labels(run_dir) == {"images/0000.png": "", "images/0001.png": "", "images/0002.png": "malignant",
                                     "images/0003.png": "unsure", "images/0004.png": ""}
    # A reload, or a new server on the same batch, shows what was saved.
    fresh = label_batch.LabelBatch(server.batch.dir).state()
    assert [it["label"] for it in fresh["items"]] == ["", "", "malignant", "unsure", ""]
    assert fresh["done"] == 2
    assert not list(server.batch.dir.glob("*.tmp"))  # written via a temp file that was renamed


def test_what_the_page_saves_is_what_resume_reads(server: label.LabelServer) -> None:
    """The contract with autoal.oracle: the page's labels.csv gives the run its labels and its skips."""
    answers = ["normal", "unsure", "benign", "malignant", "benign"]
    for i, answer in enumerate(answers):
        call(server, "POST", "/api/label", {"file": f"images/{i:04d}.png", "label": answer})
    labels, skipped = oracle.read_labels(server.batch.dir, CLASSES)
    assert labels == {100: 2, 102: 0, 103: 1, 104: 0} and skipped == [101]


def test_undo_takes_back_changes_in_reverse_order(server: label.LabelServer, run_dir: Path) -> None:
    f = "images/0001.png"
    call(server, "POST", "/api/label", {"file": f, "label": "benign"})
    call(server, "POST", "/api/label", {"file": f, "label": "normal"})
    call(server, "POST", "/api/label", {"file": "images/0004.png", "label": "unsure"})
    status, body, _ = call(server, "POST", "/api/undo", {})
    assert status == 200 and json.loads(body)["undone"] == "images/0004.png"
    assert saved_labels(run_dir)["images/0004.png"] == "" and saved_labels(run_dir)[f] == "normal"
    call(server, "POST", "/api/undo", {})
    assert saved_labels(run_dir)[f] == "benign"
    call(server, "POST", "/api/undo", {})
    assert saved_labels(run_dir)[f] == ""
    status, body, _ = call(server, "POST", "/api/undo", {})
    assert status == 200 and json.loads(body)["undone"] is None and not json.loads(body)["can_undo"]


def test_a_hand_edit_made_while_the_page_is_open_is_kept(server: label.LabelServer, run_dir: Path) -> None:
    """labels.csv is re-read before each change: the page never writes back a stale copy."""
    csv_path = server.batch.labels_path
    csv_path.write_text(csv_path.read_text().replace("images/0000.png,", "images/0000.png,normal"))
    call(server, "POST", "/api/label", {"file": "images/0001.png", "label": "benign"})
    assert saved_labels(run_dir)["images/0000.png"] == "normal"
    assert saved_labels(run_dir)["images/0001.png"] == "benign"


@pytest.mark.parametrize("body", [
    {"file": "images/0000.png", "label": "cat"},  # not a class
    {"file": "images/0000.png", "label": "Benign"},  # classes are exact
    {"file": "images/0099.png", "label": "benign"},  # not in the batch
    {"file": "../checkpoint.pt", "label": "benign"},
    {"file": "images/0000.png"},  # a field missing
    {"file": "images/0000.png", "label": "benign", "extra": "x"},
    {"file": "images/0000.png", "label": 1},
    ["images/0000.png", "benign"],
])
def test_invalid_answers_are_refused_and_change_nothing(server: label.LabelServer, run_dir: Path,
                                                        body: Any) -> None:
    before = server.batch.labels_path.read_bytes()
    status, reply, _ = call(server, "POST", "/api/label", body)
    assert status == 400 and "error" in json.loads(reply)
    assert server.batch.labels_path.read_bytes() == before


@pytest.mark.parametrize("method,path,headers,raw,status", [
    ("POST", "/api/label", {}, b"x" * (label.MAX_BODY + 1), 413),
    ("POST", "/api/label", {"Content-Type": "text/plain"}, b'{"file":"images/0000.png","label":"benign"}', 415),
    ("POST", "/api/label", {}, b"{not json", 400),
    ("POST", "/api/label", {}, b'\xff\xfe', 400),
    ("GET", "/api/label", {}, None, 405),
    ("POST", "/api/state", {}, b"{}", 405),
    ("POST", "/images/0000.png", {}, b"{}", 405),
    ("PUT", "/api/label", {}, b"{}", 405),
    ("DELETE", "/images/0000.png", {}, None, 405),
    ("POST", "/api/nothing", {}, b"{}", 404),
])
def test_requests_are_validated(server: label.LabelServer, method: str, path: str, headers: dict[str, str],
                                raw: bytes | None, status: int) -> None:
    before = server.batch.labels_path.read_bytes()
    got, _, reply_headers = call(server, method, path, headers=headers, raw=raw)
    assert got == status
    if status == 405:
        assert reply_headers["Allow"]
    assert server.batch.labels_path.read_bytes() == before


def test_a_post_without_content_length_is_refused(server: label.LabelServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.putrequest("POST", "/api/label")
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()


def test_other_sites_cannot_reach_the_page(server: label.LabelServer, run_dir: Path) -> None:
    """DNS rebinding sends another Host; a form in another tab sends another Origin."""
    status, _, _ = call(server, "GET", "/images/0000.png", headers={"Host": "evil.example:80"})
    assert status == 403
    status, _, _ = call(server, "POST", "/api/label", {"file": "images/0000.png", "label": "benign"},
                        headers={"Origin": "http://evil.example"})
    assert status == 403 and saved_labels(run_dir)["images/0000.png"] == ""
    port = server.server_address[1]
    status, _, _ = call(server, "POST", "/api/label", {"file": "images/0000.png", "label": "benign"},
                        headers={"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"})
    assert status == 200


def test_concurrent_answers_do_not_lose_each_other(tmp_path: Path) -> None:
    """Each change is read-modify-write of the whole file; without the lock, two at once lose one."""
    batch = label_batch.LabelBatch(write_batch(tmp_path, n=24))
    files = [f"images/{i:04d}.png" for i in range(24)]
    wanted = {f: CLASSES[i % 3] for i, f in enumerate(files)}
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch every few bytecodes: any unguarded window shows
    try:
        threads = [threading.Thread(target=batch.set_label, args=(f, c)) for f, c in wanted.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert saved_labels(tmp_path) == wanted


def test_concurrent_requests_are_all_answered(server: label.LabelServer, run_dir: Path) -> None:
    files = [f"images/{i:04d}.png" for i in range(5)]
    threads = [threading.Thread(target=call, args=(server, "POST", "/api/label", {"file": f, "label": c}))
               for _ in range(4) for f, c in zip(files, CLASSES * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert saved_labels(run_dir) == dict(zip(files, CLASSES * 2))


# --- only the batch's own files --------------------------------------------------------------------

def test_the_page_its_assets_and_the_images_are_served(server: label.LabelServer) -> None:
    status, body, headers = call(server, "GET", "/")
    assert status == 200 and b"/static/label.js" in body and "default-src 'none'" in headers["Content-Security-Policy"]
    for asset in ("/static/label.js", "/static/label.css"):
        assert call(server, "GET", asset)[0] == 200
    status, body, headers = call(server, "GET", "/images/0003.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body == (server.batch.dir / "images" / "0003.png").read_bytes()


def traversal_paths(run_dir: Path) -> list[str]:
    secret = str((run_dir / "checkpoint.pt").resolve())
    return [
        "/images/../../checkpoint.pt",
        "/images/../../../checkpoint.pt",
        "/images/%2e%2e/%2e%2e/checkpoint.pt",
        "/images/%2E%2E%2F%2E%2E%2Fcheckpoint.pt",
        "/images/..%2f..%2f..%2fcheckpoint.pt",
        "/%2e%2e/%2e%2e/%2e%2e/checkpoint.pt",
        "/images/0000.png/../../../checkpoint.pt",
        "/images/..\\..\\..\\checkpoint.pt",
        "/images/%252e%252e/checkpoint.pt",  # double-encoded
        "/images/0000.png%00",
        "/static/../label.py",
        "/static/label.py",  # a package file that is not the page
        "/labels.csv",
        "/batch.json",
        "/tasks.json",
        "/queries/round-001/images/0000.png",
        "/../outside.png",
        secret,  # an absolute path on the disk
        "/" + secret,
        "/%2F" + secret.lstrip("/"),
        "file://" + secret,
        f"http://127.0.0.1/{secret}",
        "/etc/passwd",
    ]


def test_requests_outside_the_batch_are_refused(server: label.LabelServer, run_dir: Path) -> None:
    for path in traversal_paths(run_dir):
        status, body, _ = call(server, "GET", path)
        assert status in (400, 403, 404), (path, status)
        assert SECRET not in body and b"import" not in body, path


def test_an_image_linked_out_of_the_batch_stops_the_server(run_dir: Path) -> None:
    image = run_dir / "queries" / "round-001" / "images" / "0001.png"
    image.unlink()
    image.symlink_to(run_dir / "checkpoint.pt")
    with pytest.raises(UserError, match="link out of the batch"):
        label.open_server(run_dir, "127.0.0.1", 0)


def test_an_image_swapped_for_a_link_while_serving_is_refused(server: label.LabelServer, run_dir: Path) -> None:
    image = server.batch.dir / "images" / "0001.png"
    image.unlink()
    image.symlink_to(run_dir / "checkpoint.pt")
    status, body, _ = call(server, "GET", "/images/0001.png")
    assert status == 500 and SECRET not in body


def test_an_images_folder_linked_elsewhere_stops_the_server(run_dir: Path, tmp_path: Path) -> None:
    images = run_dir / "queries" / "round-001" / "images"
    elsewhere = tmp_path / "elsewhere"
    images.rename(elsewhere)
    images.symlink_to(elsewhere)
    with pytest.raises(UserError, match="link out of the batch"):
        label.open_server(run_dir, "127.0.0.1", 0)


def test_batch_json_naming_a_file_outside_images_is_refused(run_dir: Path) -> None:
    batch_json = run_dir / "queries" / "round-001" / "batch.json"
    raw = json.loads(batch_json.read_text())
    raw["items"][0]["file"] = "images/../../../checkpoint.pt"
    batch_json.write_text(json.dumps(raw))
    with pytest.raises(UserError, match="not images/NAME.png"):
        label.open_server(run_dir, "127.0.0.1", 0)


# --- which batch, and bad folders ------------------------------------------------------------------

def test_the_batch_served_is_the_one_the_run_waits_for(run_dir: Path) -> None:
    write_batch(run_dir, round_number=2, n=3)  # newer, but the checkpoint waits for round 1
    assert label_batch.find_batch_dir(run_dir) == (run_dir / "queries" / "round-001", False)
    save_checkpoint(run_dir, next_round=2, pending_round=None)  # round 1 read; killed before round 2 was saved
    assert label_batch.find_batch_dir(run_dir) == (run_dir / "queries" / "round-002", False)
    save_checkpoint(run_dir, next_round=2, pending_round=2)
    assert label_batch.find_batch_dir(run_dir) == (run_dir / "queries" / "round-002", False)
    (run_dir / "checkpoint.pt").unlink()  # killed before the first round was saved: the newest batch
    assert label_batch.find_batch_dir(run_dir) == (run_dir / "queries" / "round-002", False)


def test_a_run_that_read_every_batch_has_none_pending_but_round_shows_one(run_dir: Path) -> None:
    save_checkpoint(run_dir, next_round=2, pending_round=None)
    with pytest.raises(UserError, match="read every batch it wrote"):
        label_batch.find_batch_dir(run_dir)
    assert label_batch.find_batch_dir(run_dir, 1) == (run_dir / "queries" / "round-001", True)
    assert label.open_server(run_dir, "127.0.0.1", 0, 1).batch.state()["already_read"] is True
    with pytest.raises(UserError, match="no query batch for round 7"):
        label_batch.find_batch_dir(run_dir, 7)


def test_a_missing_pending_batch_is_named(run_dir: Path) -> None:
    save_checkpoint(run_dir, next_round=3, pending_round=3)
    with pytest.raises(UserError, match="waits for the labels of round 3.*round-003"):
        label_batch.find_batch_dir(run_dir)


@pytest.mark.parametrize("csv_text,problem", [
    ("name,label\nimages/0000.png,\n", "header"),
    ("file,label\nimages/0000.png,cat\n", "'cat' is not a class"),
    ("file,label\nimages/0000.png,\n,benign\n", "'' is not an image"),
    ("file,label\nimages/0000.png,\nimages/0000.png,benign\n", "listed twice"),
    ("file,label\nimages/0999.png,benign\n", "not an image of this batch"),
    ("file,label\nimages/0000.png,benign,extra\n", "2 columns file,label, got 3"),
])
def test_a_malformed_labels_csv_is_one_clear_error(run_dir: Path, csv_text: str, problem: str) -> None:
    (run_dir / "queries" / "round-001" / "labels.csv").write_text(csv_text)
    with pytest.raises(UserError, match=problem):
        label.open_server(run_dir, "127.0.0.1", 0)


def test_a_spreadsheet_saved_csv_is_read_as_resume_reads_it(run_dir: Path) -> None:
    """Excel writes a byte-order mark, CRLF line ends and blank lines; rows it dropped count as unanswered;
    class names in another case are the class (as --resume reads them), shown as batch.json spells them."""
    path = run_dir / "queries" / "round-001" / "labels.csv"
    path.write_bytes("\ufeffFile,Label\r\nimages/0001.png,Normal\r\nimages/0003.png,UNSURE\r\n,\r\n".encode())
    got = label_batch.LabelBatch(path.parent).state()
    assert [it["label"] for it in got["items"]] == ["", "normal", "", "unsure", ""]


def test_the_cli_refuses_a_run_without_a_batch_in_one_line(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert label.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no pending query batch" in err and err.count("\n") == 1
    assert label.main([str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "missing").exists()  # the lock did not create it


def test_the_cli_serves_until_stopped_and_holds_the_run(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "autoal.label", str(run_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = next(line.split()[1] for line in proc.stdout if line.startswith("Open http://127.0.0.1:"))
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/api/state")
        assert json.loads(conn.getresponse().read())["total"] == 5
        conn.close()
        # A second page (or a --resume) on the same run is refused while this one may write.
        assert label.main([str(run_dir), "--port", "0"]) == 2
        assert "in use by another process" in capsys.readouterr().err
        # --resume while the page is open is told what holds the folder and how to free it
        with pytest.raises(UserError, match="open in a labeling page .*stop it"):
            with runlog.hold_lock(run_dir):
                pass
    finally:
        proc.terminate()
        proc.wait(10)
