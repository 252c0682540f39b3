"""The human oracle: a query batch written to the run folder, labels read back from it.

With ``--oracle human`` the loop stops after a round's selection, writes the batch and exits; the
person labels it (in the browser page ``python -m autoal.label RUN``, by editing ``labels.csv``,
or in Label Studio) and ``--resume RUN`` reads the labels back. The batch folder contract
(``RUN/queries/round-NNN/``, NNN the round whose selection made the batch)::

    images/0000.png ...  one PNG per queried image, in batch order
    labels.csv           header ``file,label``; ``file`` is images/NNNN.png, ``label`` a class name or
                         ``unsure`` (skip: the image returns to the pool); written with empty labels
    batch.json           {"round", "classes", "items": [{"file", "pool_index", "source", "prediction":
                         {"label", "prob"} or null (no model yet), "contributions": {strategy: share}}]}
    tasks.json           Label Studio tasks [{"data": {"image", "pool_index"}, "predictions": [...]}]
    label_config.xml     a Label Studio labeling interface with the classes and ``unsure``
    export.json          (optional, written by the person) Label Studio's JSON export of the tasks

Every file is written atomically (temp file + rename): the labeling page saves ``labels.csv``
while a person works, and a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from autoal.errors import UserError
from autoal.runlog import atomic_write_bytes, atomic_write_text, to_json

QUERIES = "queries"
LABELS_CSV = "labels.csv"
BATCH_JSON = "batch.json"
TASKS_JSON = "tasks.json"
LABEL_CONFIG = "label_config.xml"
EXPORT_JSON = "export.json"
IMAGES = "images"
#: The label that skips an image: it returns to the pool and is left out of the very next query.
SKIP = "unsure"
#: Originals larger than this (longest side, pixels) are shown scaled down: a page stays quick.
MAX_SHOWN_SIDE = 2048


def batch_folder(run_dir: Path, round_: int) -> Path:
    return Path(run_dir) / QUERIES / f"round-{round_:03d}"


def item_file(position: int) -> str:
    return f"{IMAGES}/{position:04d}.png"


def write_query_batch(folder: Path, round: int, classes: Sequence[str], images_uint8: np.ndarray,
                      pool_indices: Sequence[int], predictions: np.ndarray | None,
                      contributions: Sequence[dict[str, float]] | None, sources: Sequence[str | None] | None = None,
                      *, source_root: Path | None = None) -> Path:
    """Write the batch of ``round`` into ``folder`` (the run folder) and return its batch folder.

    ``images_uint8`` (N, H, W, C) or (N, H, W): the images as the model sees them. ``predictions``
    (N, C) class probabilities of the current model, or None before the first model. ``contributions``
    one {strategy: share} dict per image ({} when the selector has none). ``sources`` the original
    file names (relative to ``source_root``) for folder datasets: then the PNG is the original image
    at its own resolution (at most ``MAX_SHOWN_SIDE``), else the model-size image.

    A rewrite of the same batch (a run killed after writing it and before its checkpoint, then
    resumed) keeps the existing ``labels.csv``: a person may have started on it.
    """
    images = np.asarray(images_uint8)
    n = len(pool_indices)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != n:
        raise ValueError(f"images must be uint8 (N,H,W[,C]) with N = {n}, got {images.dtype} {images.shape}")
    classes = [str(c) for c in classes]
    if predictions is not None and np.asarray(predictions).shape != (n, len(classes)):
        raise ValueError(f"predictions must be (N, C) = ({n}, {len(classes)}), got {np.asarray(predictions).shape}")
    contributions = list(contributions) if contributions is not None else [{} for _ in range(n)]
    sources = list(sources) if sources is not None else [None] * n
    if len(contributions) != n or len(sources) != n:
        raise ValueError("contributions and sources need one entry per image")

    out = batch_folder(folder, round)
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    items = []
    for i, pool_index in enumerate(pool_indices):
        png = _original_png(source_root / sources[i]) if source_root is not None and sources[i] else None
        atomic_write_bytes(out / item_file(i), png if png is not None else _png(images[i]))
        items.append({"file": item_file(i), "pool_index": int(pool_index), "source": sources[i],
                      "prediction": _prediction(predictions, i, classes),
                      "contributions": {str(k): float(v) for k, v in contributions[i].items()}})
    previous = _read_json_or_none(out / BATCH_JSON)
    same_batch = isinstance(previous, dict) and [it.get("pool_index") for it in previous.get("items", [])] == \
        [it["pool_index"] for it in items]
    atomic_write_text(out / TASKS_JSON, to_json(_label_studio_tasks(items, round), indent=1) + "\n")
    atomic_write_text(out / LABEL_CONFIG, label_studio_config(classes))
    atomic_write_text(out / BATCH_JSON, to_json({"round": int(round), "classes": classes, "items": items},
                                                indent=1) + "\n")
    if not (same_batch and (out / LABELS_CSV).is_file()):
        write_labels_csv(out, [it["file"] for it in items], [""] * n)
    return out


def write_labels_csv(batch: Path, files: Sequence[str], labels: Sequence[str]) -> None:
    """``labels.csv`` (header ``file,label``), atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "label"])
    writer.writerows(zip(files, labels))
    atomic_write_text(Path(batch) / LABELS_CSV, buffer.getvalue())


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def _original_png(path: Path) -> bytes | None:
    """The original file as a PNG at its own resolution (capped), or None when it cannot be read now."""
    from autoal.folder_data import open_as_8bit

    try:
        image = open_as_8bit(path)
    except (OSError, ValueError):
        return None  # moved or damaged since it was cached: the model-size image stands in
    image.thumbnail((MAX_SHOWN_SIDE, MAX_SHOWN_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _prediction(predictions: np.ndarray | None, i: int, classes: list[str]) -> dict[str, Any] | None:
    if predictions is None:
        return None
    row = np.asarray(predictions[i], dtype=np.float64)
    top = int(row.argmax())
    return {"label": classes[top], "prob": float(row[top])}


def _label_studio_tasks(items: list[dict[str, Any]], round_: int) -> list[dict[str, Any]]:
    tasks = []
    for item in items:
        task: dict[str, Any] = {"data": {"image": item["file"], "pool_index": item["pool_index"]}}
        if item["prediction"] is not None:  # pre-annotations: Label Studio shows the model's guess
            task["predictions"] = [{"model_version": f"autoal-round-{round_:03d}", "score": item["prediction"]["prob"],
                                    "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                                "value": {"choices": [item["prediction"]["label"]]}}]}]
        tasks.append(task)
    return tasks


def label_studio_config(classes: Sequence[str]) -> str:
    """The labeling interface to paste into a Label Studio project: one choice per class, and unsure."""
    from xml.sax.saxutils import quoteattr

    choices = "".join(f"    <Choice value={quoteattr(c)}/>\n" for c in [*classes, SKIP])
    return ('<View>\n  <Image name="image" value="$image"/>\n  <Choices name="label" toName="image" '
            f'choice="single" showInLine="true">\n{choices}  </Choices>\n</View>\n')


def _read_json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- reading the labels back ------------------------------------------------------------------

def read_batch(batch: Path) -> dict[str, Any]:
    """batch.json, checked enough that the items can be trusted."""
    path = Path(batch) / BATCH_JSON
    raw = _read_json_or_none(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), list) or not all(
            isinstance(it, dict) and isinstance(it.get("file"), str) and isinstance(it.get("pool_index"), int)
            for it in raw["items"]):
        raise UserError(f"{path} is missing or not a batch this program wrote; it is rewritten on --resume if "
                        f"you delete the whole folder {batch}")
    return raw


def read_labels(folder: Path, classes: Sequence[str]) -> tuple[dict[int, int], list[int]]:
    """The labels of the batch in ``folder``: ({pool_index: class index}, skipped pool indices).

    Reads ``labels.csv`` and, when present, Label Studio's ``export.json``; a label given in both
    must agree. Every image needs a label (a class name, case-insensitive, or ``unsure``). Raises a
    one-line UserError naming the file, the row and the fix; nothing is changed on disk.
    """
    folder = Path(folder)
    items = read_batch(folder)["items"]
    by_file = {it["file"]: it["pool_index"] for it in items}
    given = _read_csv_labels(folder / LABELS_CSV, by_file)
    if (folder / EXPORT_JSON).is_file():
        for file, label in _read_label_studio_export(folder / EXPORT_JSON, items).items():
            if given.get(file) and given[file].casefold() != label.casefold():
                raise UserError(f"{folder}: {file} is {given[file]!r} in {LABELS_CSV} but {label!r} in "
                                f"{EXPORT_JSON}; make them agree (or empty the {LABELS_CSV} cell)")
            given[file] = label
    lookup = {c.casefold(): k for k, c in enumerate(classes)}
    unlabeled = [f for f in by_file if not given.get(f)]
    if unlabeled:
        raise UserError(f"{folder}: {len(unlabeled)} of {len(by_file)} images have no label yet (first: "
                        f"{unlabeled[0]}); give each a class ({', '.join(classes)}) or {SKIP}, e.g. with "
                        f"python -m autoal.label {folder.parent.parent}")
    labels: dict[int, int] = {}
    skipped: list[int] = []
    for file, pool_index in by_file.items():
        name = given[file].strip().casefold()
        if name == SKIP:
            skipped.append(pool_index)
        elif name in lookup:
            labels[pool_index] = lookup[name]
        else:
            raise UserError(f"{folder}: {file} has label {given[file]!r}, which is not a class; use one of "
                            f"{', '.join(classes)}, or {SKIP} to skip the image")
    return labels, sorted(skipped)


def _read_csv_labels(path: Path, by_file: dict[str, int]) -> dict[str, str]:
    """{file: label text} from labels.csv: every batch file exactly once, no other file."""
    try:
        given = csv_label_rows(path, list(by_file))
    except FileNotFoundError:
        raise UserError(f"{path} is missing; it lists the batch's images ({IMAGES}/0000.png, ...) with a label "
                        f"each: restore it, or delete the folder {path.parent} and --resume to rewrite it") from None
    missing = [f for f in by_file if f not in given]
    if missing:
        raise UserError(f"{path}: {len(missing)} images have no row (first: {missing[0]}); add a row "
                        f"{missing[0]},LABEL for each (restore the deleted rows)")
    return given


def csv_label_rows(path: Path, files: Sequence[str]) -> dict[str, str]:
    """{file: label text as written} from a labels.csv listing some of ``files``; a malformed file is a
    UserError naming the line (a missing file raises FileNotFoundError: the caller decides what it means).

    Read leniently where a spreadsheet differs from us (a byte-order mark, blank lines, spaces around
    cells) and strictly where a mistake would attach a label to the wrong image (an unknown or doubled
    file name). The labeling page reads its saved answers with the same function.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet may add a byte-order mark
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path} ({exc}); save it as UTF-8 text with the header file,label") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip().lower() for c in rows[0]] != ["file", "label"]:
        raise UserError(f"{path}: the first line must be the header file,label (got {','.join(rows[0]) if rows else 'nothing'})")
    known = set(files)
    given: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line a spreadsheet left at the end
        if len(row) != 2:
            raise UserError(f"{path} line {line}: expected 2 columns file,label, got {len(row)}")
        file, label = row[0].strip(), row[1].strip()
        if file not in known:
            raise UserError(f"{path} line {line}: {file!r} is not an image of this batch; keep the file names as "
                            f"written ({IMAGES}/0000.png ... {item_file(len(files) - 1)}) and change only the labels")
        if file in given:
            raise UserError(f"{path} line {line}: {file} is listed twice; keep one row per image")
        given[file] = label
    return given


def _read_label_studio_export(path: Path, items: list[dict[str, Any]]) -> dict[str, str]:
    """{file: label} from a Label Studio JSON export (a list of tasks; the first annotation's first choice).

    Tasks are matched by ``data.pool_index`` (written into tasks.json; Label Studio keeps it), or by
    the image name's last part when only ``data.image`` survived (an upload renames it ``xxxx-0003.png``).
    Unannotated or cancelled tasks give no label.
    """
    raw = _read_json_or_none(path)
    if not isinstance(raw, list):
        raise UserError(f"{path} is not a Label Studio JSON export (a list of tasks); export the project as JSON "
                        f"again, or delete {path.name} and label in {LABELS_CSV}")
    by_index = {it["pool_index"]: it["file"] for it in items}
    by_name = {Path(it["file"]).name: it["file"] for it in items}
    labels: dict[str, str] = {}
    for n, task in enumerate(raw):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise UserError(f"{path}: task {n} has no data object; export the project as JSON (not JSON-MIN or CSV)")
        file = by_index.get(data.get("pool_index")) if isinstance(data.get("pool_index"), int) else None
        if file is None and isinstance(data.get("image"), str):
            name = data["image"].rsplit("/", 1)[-1]
            file = by_name.get(name) or next((f for n_, f in by_name.items() if name.endswith("-" + n_)), None)
        if file is None:
            raise UserError(f"{path}: task {n} ({data.get('image')!r}) is not an image of this batch; import "
                            f"{TASKS_JSON} of this folder into the project and export again")
        choice = _first_choice(task)
        if choice is None:
            continue
        if file in labels and labels[file] != choice:
            raise UserError(f"{path}: {file} appears in two tasks with different labels ({labels[file]!r}, {choice!r})")
        labels[file] = choice
    return labels


def _first_choice(task: dict[str, Any]) -> str | None:
    """annotations[0].result[0].value.choices[0], or None for a task nobody (validly) annotated."""
    annotations = task.get("annotations") or []
    if not annotations or not isinstance(annotations[0], dict) or annotations[0].get("was_cancelled"):
        return None
    try:
        choice = annotations[0]["result"][0]["value"]["choices"][0]
    except (KeyError, IndexError, TypeError):
        return None
    return str(choice) if str(choice).strip() else None


def next_steps(run_dir: Path, batch: Path, n_images: int) -> str:
    """What the person does now: the lines the CLI prints when a batch is waiting."""
    return (f"{n_images} images wait for labels in {batch}\n"
            f"label them in the browser:    python -m autoal.label {run_dir}\n"
            f"or fill the label column of  {batch / LABELS_CSV}  (a class name, or {SKIP} to skip an image)\n"
            f"or label {batch / TASKS_JSON} in Label Studio (interface: {batch / LABEL_CONFIG}) and save its "
            f"JSON export as {batch / EXPORT_JSON}\n"
            f"then continue:                python -m autoal.train --resume {run_dir}")


# --- what the loop calls ----------------------------------------------------------------------

def class_names(data: Any) -> list[str]:
    """The dataset's class names (a folder's), else the class indices as text."""
    return list(data.classes or [str(k) for k in range(data.n_classes)])


def write_round_batch(run_dir: Path, round_: int, data: Any, picks: Sequence[int], probs: Any,
                      contributions: Sequence[dict[str, float]] | None) -> Path:
    """The batch of pool indices ``picks`` of ``data`` (an ImageDataset; a FolderDataset's originals shown)."""
    picks = [int(p) for p in picks]
    images = data.train.images[picks].numpy().transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    files = getattr(data, "pool_files", None)
    sources = [files[p] for p in picks] if files else None
    return write_query_batch(run_dir, round_, class_names(data), images, picks,
                             None if probs is None else np.asarray(probs, dtype=np.float64), contributions,
                             sources, source_root=Path(data.root) if files else None)


def collect_labels(run_dir: Path, round_: int, picks: Sequence[int],
                   classes: Sequence[str]) -> tuple[dict[int, int], list[int]]:
    """The person's labels of the pending batch of ``round_``, checked against the picks it was made of."""
    batch = batch_folder(run_dir, round_)
    if not (batch / BATCH_JSON).is_file():
        raise UserError(f"the batch of round {round_} is missing ({batch / BATCH_JSON}); restore the folder "
                        f"{batch} from a backup: the run waits for the labels of its images")
    labels, skipped = read_labels(batch, classes)
    if sorted([*labels, *skipped]) != sorted(int(p) for p in picks):
        raise UserError(f"{batch / BATCH_JSON} lists other images than round {round_} queried (pool_index edited?); "
                        f"restore the file: only {LABELS_CSV} is yours to edit")
    return labels, skipped
