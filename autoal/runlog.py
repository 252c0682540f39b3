"""The run folder: config.json, rounds.jsonl, summary.json, checkpoint.pt and TensorBoard events (tb/).

Every file is written atomically (temp file + rename), so a run killed at any moment leaves
either the previous or the new version, never half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

CONFIG = "config.json"
ROUNDS = "rounds.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
TENSORBOARD = "tb"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_rounds(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite rounds.jsonl from the checkpointed records: the file always matches the checkpoint."""
    atomic_write_text(run_dir / ROUNDS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def read_rounds(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / ROUNDS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    tmp = run_dir / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run_dir / CHECKPOINT)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


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
