"""The pending query batch on disk, as the labeling page sees it: find it, read batch.json, and keep its
labels.csv as the one record of a person's answers (``LabelBatch``). ``autoal.label`` serves it over
HTTP; this module knows nothing of HTTP."""

from __future__ import annotations

import csv
import io
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from autoal import oracle, runlog
from autoal.errors import UserError

BATCH_JSON = "batch.json"
LABELS_CSV = "labels.csv"
QUERIES = "queries"
UNSURE = "unsure"  # the person skipped the image: it goes back to the pool
ROUND_DIR = re.compile(r"round-(\d+)")
ITEM_FILE = re.compile(r"images/[A-Za-z0-9_-]+\.png")  # what batch.json may name; nothing else is served


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
