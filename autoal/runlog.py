"""The run folder: config.json, rounds.jsonl, summary.json, checkpoint.pt and TensorBoard events (tb/).

A run folder is a small database with one writer: ``hold_lock`` takes an exclusive lock on it
for as long as a process works in it. Every file is written atomically (temp file + rename), so a
run killed at any moment leaves either the previous or the new version, never half a file; a
write that fails (a full disk) removes its temp file and names the disk. JSON files hold no NaN:
strict parsers (jq, JavaScript's JSON.parse) refuse it, so an undefined number is written as
null and the record says why.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import math
import os
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch

from autoal.errors import UserError

CONFIG = "config.json"
ROUNDS = "rounds.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
TENSORBOARD = "tb"
LOCK = ".lock"
#: The key of a record that says why some of its values are null.
WHY_NULL = "why_null"


# --- the lock ---------------------------------------------------------------------------------

_held: dict[Path, tuple[int, int]] = {}  # folder -> (fd, depth): re-entrant within one process


@contextlib.contextmanager
def hold_lock(folder: Path, what: str = "run") -> Iterator[None]:
    """Exclusive lock on ``folder`` (created if needed) while the block runs.

    flock on ``folder/.lock``: the kernel drops it when the process exits in any way (kill -9
    included), so a stale lock cannot block anyone. A second process gets a UserError naming the
    holder's PID. Re-entrant within a process (the CLI holds it around the loop, which may take it
    again). Stale ``*.tmp`` files (a write killed before its rename) are removed once the lock is held.
    """
    folder = Path(folder).resolve()
    if folder in _held:
        fd, depth = _held[folder]
        _held[folder] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[folder]
            _held[folder] = (fd, depth - 1)
        return
    fd = _acquire(folder, what)
    _held[folder] = (fd, 1)
    try:
        remove_stale_tmp(folder)
        yield
    finally:
        del _held[folder]
        os.close(fd)  # releases the flock


def _acquire(folder: Path, what: str) -> int:
    make_folder(folder)
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot create the lock file {path} ({exc.strerror}); "
                        f"choose a writable folder with --out") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder, holder_what = _read_holder(fd)
        os.close(fd)
        if holder_what == LABELING_PAGE:  # the person, not another job, has the folder: say how to free it
            raise UserError(f"{folder} is open in a labeling page ({holder}); stop it (Ctrl+C in its "
                            f"terminal) when the batch is labeled, then run this again") from None
        raise UserError(f"{folder} is in use by another {holder_what or what} ({holder}); wait for it to finish, "
                        f"or choose another folder with --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {what}\n".encode())  # for the message the next process prints
    return fd


#: The ``what`` of the labeling page's lock (autoal.label): a held folder then gets its own message.
LABELING_PAGE = "labeling page"


def _read_holder(fd: int) -> tuple[str, str]:
    """("PID n", what) from the lock file: the holder writes its PID and what it is."""
    pid, _, what = os.pread(fd, 128, 0).decode(errors="replace").strip().partition(" ")
    return (f"PID {pid}" if pid.isdigit() else "PID unknown"), what


def make_folder(folder: Path) -> None:
    """mkdir -p with one-line errors: an existing file in the way, a read-only filesystem."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{folder} exists and is not a folder; choose another --out") from None
    except NotADirectoryError:
        raise UserError(f"a part of {folder} is a file, not a folder; choose another --out") from None
    except OSError as exc:
        raise UserError(f"cannot create the folder {folder} ({exc.strerror}); choose a writable --out") from None
    if not folder.is_dir():
        raise UserError(f"{folder} exists and is not a folder; choose another --out")


def remove_stale_tmp(folder: Path) -> None:
    for tmp in Path(folder).glob("*.tmp"):
        tmp.unlink(missing_ok=True)


# --- atomic writes ----------------------------------------------------------------------------

def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via ``path.tmp`` + rename; a failed write leaves no temp file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(_write_error(path, exc)) from None


def _write_error(path: Path, exc: OSError) -> str:
    folder = path.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
        except OSError:
            free = "free space unknown"
        return (f"the disk holding {folder} is full ({free}) while writing {path.name}; "
                f"free some space, then run again (a run with a checkpoint continues with --resume {folder})")
    return f"cannot write {path} ({exc.strerror or exc}); check the folder's permissions and disk"


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def json_safe(value: Any) -> tuple[Any, list[str]]:
    """``value`` with every NaN/inf float replaced by None, and the dotted paths it replaced."""
    nulled: list[str] = []

    def clean(v: Any, where: str) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            nulled.append(where)
            return None
        if isinstance(v, dict):
            return {k: clean(x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x, f"{where}[{i}]") for i, x in enumerate(v)]
        return v

    return clean(value, ""), nulled


def to_json(data: Any, **kwargs: Any) -> str:
    """Strict JSON: NaN/inf become null, with the reason under ``why_null`` when ``data`` is a dict."""
    clean, nulled = json_safe(data)
    if isinstance(clean, dict) and nulled:
        why = dict(clean.get(WHY_NULL) or {})
        for where in nulled:  # the writer's own reason (e.g. the loop's for auc) wins
            why.setdefault(where, "not a number (undefined this round)")
        clean[WHY_NULL] = why
    return json.dumps(clean, sort_keys=True, allow_nan=False, **kwargs)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, to_json(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file of the run folder; a missing, unreadable or corrupt one is a UserError."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({str(exc).splitlines()[0]}); "
                        f"restore it or start a new run in another folder") from None


def read_config_json(path: Path) -> dict[str, Any]:
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path} holds a {type(raw).__name__}, not a settings object; "
                        f"restore it or start a new run in another folder")
    return raw


def write_rounds(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite rounds.jsonl from the checkpointed records: the file always matches the checkpoint."""
    atomic_write_text(run_dir / ROUNDS, "".join(to_json(r) + "\n" for r in records))


def read_rounds(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / ROUNDS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- the checkpoint ---------------------------------------------------------------------------

def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    # serialised in memory first, so a full disk fails in Python's write (a clear errno) and
    # not inside torch's zip writer (its "unexpected pos" says nothing about the disk)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(Path(run_dir) / CHECKPOINT, buffer.getbuffer())


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The run's checkpoint, or None when there is none.

    Loaded with ``weights_only=True``: a checkpoint holds only tensors and plain containers, so a
    file that needs any other class to unpickle is refused instead of running its code.
    """
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    fix = "delete it to start the run over, or restore it from a backup"
    try:
        with warnings.catch_warnings():  # a foreign file's pickle protocol warns before it is refused
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path} is not a checkpoint this program wrote: loading it needs more than tensors "
                        f"and plain containers ({_unpickler_reason(exc)}), so it was refused "
                        f"(unpickling it could run code); {fix}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is truncated or corrupt ({_first_sentence(exc)}); "
                        f"{fix}") from None
    if not isinstance(state, dict) or "next_round" not in state:
        raise UserError(f"{path} is not a checkpoint of this program (no round counter); {fix}")
    return state


def _unpickler_reason(exc: Exception) -> str:
    """torch's weights-only refusal is a page of advice around one informative line: keep that line."""
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation", "WeightsUnpickler error")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    informative = [line for line in lines if not line.startswith(advice)]
    return informative[0] if informative else type(exc).__name__


def _first_sentence(exc: Exception) -> str:
    text = str(exc).strip()
    return text.split(". ")[0].splitlines()[0] if text else type(exc).__name__


def aubc(labels: list[int], accuracies: list[float]) -> float:
    """Area under the accuracy vs number-of-labels curve (trapezoid), divided by the labels added: [0, 1].

    With a single point (no query round) it is that point's accuracy.
    """
    if not labels:
        return float("nan")
    if len(labels) == 1 or labels[-1] == labels[0]:
        return float(accuracies[-1])
    area = sum((labels[i + 1] - labels[i]) * (accuracies[i] + accuracies[i + 1]) / 2 for i in range(len(labels) - 1))
    return float(area / (labels[-1] - labels[0]))
