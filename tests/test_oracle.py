"""The human oracle: the batch folder contract, reading labels back (CSV and Label Studio), and the whole
loop with a scripted person: several rounds, a kill, a resume, bad labels, skipped images."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoal import loop, oracle, runlog, train
from autoal.errors import UserError
from autoal.loop import run
from conftest import synthetic_arrays, tiny_config

CLASSES = ["zero", "one", "two", "three"]


# --- the batch folder -------------------------------------------------------------------------

def _batch(tmp_path: Path, n: int = 3, channels: int = 3, probs: bool = True) -> Path:
    images = np.random.default_rng(0).integers(0, 256, (n, 6, 5, channels) if channels == 3 else (n, 6, 5),
                                               dtype=np.uint8)
    predictions = np.eye(4)[[1, 2, 3][:n]] * 0.7 + 0.075 if probs else None
    shares = [{"margin": 0.75, "kmeans": 0.25}, {}, {"entropy": 1.0}][:n]
    return oracle.write_query_batch(tmp_path, 7, CLASSES, images, [11, 5, 30][:n], predictions, shares,
                                    sources=["a.png", None, "c/d.tif"][:n])


def test_the_batch_folder_holds_what_the_contract_names(tmp_path):
    batch = _batch(tmp_path)
    assert batch == tmp_path / "queries" / "round-007"
    assert sorted(p.name for p in (batch / "images").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert not list(batch.rglob("*.tmp"))
    assert Image.open(batch / "images" / "0001.png").size == (5, 6)
    meta = json.loads((batch / "batch.json").read_text())
    assert meta["round"] == 7 and meta["classes"] == CLASSES
    assert meta["items"][0] == {"file": "images/0000.png", "pool_index": 11, "source": "a.png",
                                "prediction": {"label": "one", "prob": pytest.approx(0.775)},
                                "contributions": {"margin": 0.75, "kmeans": 0.25}}
    assert meta["items"][1]["contributions"] == {} and meta["items"][1]["source"] is None
    tasks = json.loads((batch / "tasks.json").read_text())
    assert [t["data"] for t in tasks] == [{"image": f"images/000{i}.png", "pool_index": p}
                                          for i, p in enumerate([11, 5, 30])]
    assert tasks[2]["predictions"][0]["result"][0]["value"]["choices"] == ["three"]
    assert (batch / "labels.csv").read_text() == "file,label\nimages/0000.png,\nimages/0001.png,\nimages/0002.png,\n"
    assert 'value="unsure"' in (batch / "label_config.xml").read_text()


def test_grey_images_and_no_model_yet(tmp_path):
    batch = _batch(tmp_path, n=2, channels=1, probs=False)
    assert Image.open(batch / "images" / "0000.png").mode == "L"
    meta = json.loads((batch / "batch.json").read_text())
    assert [it["prediction"] for it in meta["items"]] == [None, None]
    assert "predictions" not in json.loads((batch / "tasks.json").read_text())[0]


def test_rewriting_the_same_batch_keeps_a_started_labels_csv(tmp_path):
    batch = _batch(tmp_path)
    oracle.write_labels_csv(batch, [f"images/000{i}.png" for i in range(3)], ["one", "", ""])
    _batch(tmp_path)  # a run killed after writing its batch redoes the round: the same picks
    assert "images/0000.png,one" in (batch / "labels.csv").read_text()
    oracle.write_query_batch(tmp_path, 7, CLASSES, np.zeros((1, 4, 4), np.uint8), [99], None, None)
    assert (batch / "labels.csv").read_text() == "file,label\nimages/0000.png,\n"  # another batch: fresh


def _label(batch: Path, labels: list[str]) -> None:
    oracle.write_labels_csv(batch, [f"images/{i:04d}.png" for i in range(len(labels))], labels)


def test_read_labels_gives_class_indices_and_skips(tmp_path):
    batch = _batch(tmp_path)
    _label(batch, ["Two", " unsure ", "zero"])  # case and spaces forgiven
    assert oracle.read_labels(batch, CLASSES) == ({11: 2, 30: 0}, [5])
    assert oracle.read_labels(batch, [c.upper() for c in CLASSES]) == ({11: 2, 30: 0}, [5])


@pytest.mark.parametrize("text, match", [
    ("file,label\nimages/0000.png,two\nimages/0001.png,dog\nimages/0002.png,one\n", r"images/0001\.png has label 'dog'"),
    ("file,label\nimages/0000.png,two\nimages/0002.png,one\n", r"1 images have no row \(first: images/0001\.png\)"),
    ("file,label\nimages/0000.png,two\nimages/1.png,one\nimages/0002.png,one\n",
     r"line 3: 'images/1\.png' is not an image of this batch"),
    ("file,label\nimages/0000.png,two\nimages/0000.png,one\nimages/0001.png,one\nimages/0002.png,one\n",
     r"line 3: images/0000\.png is listed twice"),
    ("file,label\nimages/0000.png,two\nimages/0001.png,\nimages/0002.png,one\n",
     r"1 of 3 images have no label yet \(first: images/0001\.png\)"),
    ("image,class\nimages/0000.png,two\n", r"header file,label"),
    ("file,label\nimages/0000.png,two,extra\n", r"line 2: expected 2 columns"),
])
def test_bad_labels_are_one_line_errors(tmp_path, text, match):
    batch = _batch(tmp_path)
    (batch / "labels.csv").write_text(text)
    with pytest.raises(UserError, match=match) as err:
        oracle.read_labels(batch, CLASSES)
    assert "\n" not in str(err.value)
    assert (batch / "labels.csv").read_text() == text  # nothing changed


def _export(batch: Path, tasks: list[dict]) -> None:
    (batch / "export.json").write_text(json.dumps(tasks))


def _ls_task(image: str, choice: str | None, pool_index: int | None = None, **extra) -> dict:
    data = {"image": image} if pool_index is None else {"image": image, "pool_index": pool_index}
    result = [] if choice is None else [{"value": {"choices": [choice]}, "from_name": "label", "to_name": "image",
                                          "type": "choices"}]
    return {"id": 1, "data": data, "annotations": [{"id": 3, "result": result, **extra}]}


def test_a_label_studio_export_is_imported(tmp_path):
    batch = _batch(tmp_path)
    _export(batch, [_ls_task("/data/upload/1/8f2a-0000.png", "three"),  # renamed by an upload: matched by name
                    _ls_task("images/0001.png", "unsure", pool_index=5),
                    _ls_task("s3://bucket/x.png", "one", pool_index=30)])  # matched by pool_index
    assert oracle.read_labels(batch, CLASSES) == ({11: 3, 30: 1}, [5])


def test_export_and_csv_are_merged_and_must_agree(tmp_path):
    batch = _batch(tmp_path)
    _label(batch, ["", "one", "two"])
    _export(batch, [_ls_task("images/0000.png", "zero", pool_index=11),
                    _ls_task("images/0001.png", None, pool_index=5),  # not annotated there: the CSV's label stands
                    _ls_task("images/0002.png", "two", pool_index=30, was_cancelled=False)])
    assert oracle.read_labels(batch, CLASSES) == ({11: 0, 5: 1, 30: 2}, [])
    _export(batch, [_ls_task("images/0002.png", "three", pool_index=30)])
    with pytest.raises(UserError, match=r"images/0002\.png is 'two' in labels\.csv but 'three' in export\.json"):
        oracle.read_labels(batch, CLASSES)
    _export(batch, [_ls_task("images/0000.png", "zero", pool_index=11, was_cancelled=True)])
    with pytest.raises(UserError, match=r"1 of 3 images have no label yet"):  # a cancelled annotation is none
        oracle.read_labels(batch, CLASSES)
    _export(batch, [_ls_task("elsewhere.png", "zero", pool_index=1234)])
    with pytest.raises(UserError, match=r"task 0 \('elsewhere\.png'\) is not an image of this batch"):
        oracle.read_labels(batch, CLASSES)
    (batch / "export.json").write_text('{"not": "a list"}')
    with pytest.raises(UserError, match=r"not a Label Studio JSON export"):
        oracle.read_labels(batch, CLASSES)


# --- the loop with a scripted person ----------------------------------------------------------

def _image_folder(root: Path, n_pool: int = 48, n_test: int = 16, labeled: int = 8, test: bool = True) -> dict[str, int]:
    """Tiny grey PNGs (class c lights quadrant c) with a labels.csv for the first ``labeled``; returns the truth."""
    images, labels = synthetic_arrays(n_pool + n_test, n_classes=4, size=8, seed=3)
    truth = {}
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    rows, test_rows = [], []
    for i in range(n_pool + n_test):
        is_test = i >= n_pool
        if is_test and not test:
            continue
        name = f"t{i:03d}.png" if is_test else f"img{i:03d}.png"
        if is_test:
            (root / "test").mkdir(exist_ok=True)
        Image.fromarray(images[i]).save(root / "test" / name if is_test else root / name)
        (test_rows if is_test else rows).append((name, CLASSES[int(labels[i, 0])]))
        if not is_test:
            truth[name] = int(labels[i, 0])
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file", "label"), *rows[:labeled]])
    if test:
        with open(root / "test" / "labels.csv", "w", newline="") as f:
            csv.writer(f).writerows([("file", "label"), *test_rows])
    return truth


class Person:
    """Labels each batch from the truth by its source file; skips the first image of chosen rounds."""

    def __init__(self, truth: dict[str, int], skip_rounds: tuple[int, ...] = ()):
        self.truth, self.skip_rounds = truth, skip_rounds

    def label(self, batch: Path) -> list[int]:
        meta = json.loads((batch / "batch.json").read_text())
        labels, skipped = [], []
        for k, item in enumerate(meta["items"]):
            if k == 0 and meta["round"] in self.skip_rounds:
                labels.append("unsure")
                skipped.append(item["pool_index"])
            else:
                labels.append(CLASSES[self.truth[item["source"]]])
        oracle.write_labels_csv(batch, [it["file"] for it in meta["items"]], labels)
        return skipped


def _human_config(root: Path, **overrides):
    settings = dict(dataset=f"folder:{root}", size=8, oracle="human", init_size=8, budget=4, rounds=3)
    settings.update(overrides)
    return tiny_config(**settings)


def _until_done(cfg, run_dir: Path, person: Person, **kwargs) -> tuple[dict, list[Path]]:
    batches = []
    for _ in range(cfg.rounds + 3):
        out = run(cfg, run_dir, **kwargs)
        if "pending" not in out:
            return out, batches
        batches.append(Path(out["pending"]))
        person.label(batches[-1])
    raise AssertionError("the run never finished")


def _tb_steps(run_dir: Path, tag: str = "test/acc") -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / runlog.TENSORBOARD), purge_orphaned_data=True)
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def _records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runlog.read_rounds(run_dir)]


@pytest.fixture
def folder(tmp_path) -> tuple[Path, dict[str, int]]:
    root = tmp_path / "slides"
    return root, _image_folder(root)


def test_a_person_labels_every_round_and_the_run_finishes(tmp_path, folder):
    root, truth = folder
    cfg = _human_config(root)
    run_dir = tmp_path / "run"
    out = run(cfg, run_dir)
    assert out["pending"] == str(run_dir / "queries" / "round-000") and out["n_images"] == 4
    state = runlog.load_checkpoint(run_dir)
    assert state["next_round"] == 0 and state["human"]["pending"]["round"] == 0  # paused, checkpointed
    assert runlog.read_rounds(run_dir) == []  # the round is finished only by the labels
    with pytest.raises(UserError, match="4 of 4 images have no label yet"):  # resumed before labeling
        run(cfg, run_dir)
    Person(truth).label(Path(out["pending"]))
    summary, batches = _until_done(cfg, run_dir, Person(truth))
    records = runlog.read_rounds(run_dir)
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    assert [r["labels"] for r in records] == [8, 12, 16, 20]  # labels.csv's 8 are the initial set
    initial = {i for i, name in enumerate(sorted(truth)) if i < 8}
    queried = [i for r in records for i in r["queried"]]
    assert len(set(queried)) == 12 and not initial & set(queried)
    assert summary["labels"] == [8, 12, 16, 20] and all(0 <= a <= 1 for a in summary["acc"])
    state = runlog.load_checkpoint(run_dir)
    assert state["labeled"].sum() == 20 and state["human"]["pending"] is None
    assert state["labeled"][sorted(initial)].all()
    assert _tb_steps(run_dir) == [8, 12, 16, 20]  # each round's events survive its resume
    # the person's labels are what the model trained on: they are the checkpoint's, by pool index
    files = sorted(truth)
    for i in queried:
        assert int(state["human"]["labels"][i]) == truth[files[i]]
    meta = json.loads((run_dir / "queries" / "round-001" / "batch.json").read_text())
    assert meta["items"][0]["prediction"]["label"] in CLASSES
    assert set(meta["items"][0]["contributions"]) == {"entropy"}  # a single candidate: all its own
    assert Image.open(run_dir / "queries" / "round-001" / meta["items"][0]["file"]).size == (8, 8)


def test_a_kill_and_a_resume_give_the_uninterrupted_run(tmp_path, folder, monkeypatch):
    root, truth = folder
    cfg = _human_config(root, strategy="kmeans", warm_start=True)
    whole, _ = _until_done(cfg, tmp_path / "whole", Person(truth, skip_rounds=(1,)))

    person, parts = Person(truth, skip_rounds=(1,)), tmp_path / "parts"
    person.label(Path(run(cfg, parts)["pending"]))
    assert run(cfg, parts, stop_after=0) == {}  # finishes the pending round 0, then "killed" before round 1
    assert [r["round"] for r in runlog.read_rounds(parts)] == [0]
    # killed while writing round 1's checkpoint: its batch is on disk, the checkpoint is not
    original = runlog.save_checkpoint

    def killed(run_dir, state):
        raise KeyboardInterrupt

    monkeypatch.setattr(runlog, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, parts)
    monkeypatch.setattr(runlog, "save_checkpoint", original)
    batch = parts / "queries" / "round-001"
    person.label(batch)  # the person labels the batch the killed run left
    out = run(cfg, parts)  # redoes round 1: the same picks, the person's labels kept
    assert out["pending"] == str(batch) and "unsure" in (batch / "labels.csv").read_text()
    summary, _ = _until_done(cfg, parts, person)
    assert _records(parts) == _records(tmp_path / "whole")
    assert summary["acc"] == whole["acc"] and summary["labels"] == whole["labels"]


def test_skipped_images_return_to_the_pool_but_not_into_the_next_query(tmp_path, folder, monkeypatch):
    root, truth = folder
    cfg = _human_config(root, strategy="least_confidence")
    run_dir = tmp_path / "run"
    person = Person(truth, skip_rounds=(0,))
    skipped = person.label(Path(run(cfg, run_dir)["pending"]))
    # the next query is the most uncertain images; make the skipped one the most uncertain of all
    original = loop.Learner.infer

    def skipped_first(self, model, rows, needs, seed, **kwargs):
        out = original(self, model, rows, needs, seed, **kwargs)
        if kwargs.get("split") is None and skipped[0] in rows.tolist():
            probs = out.probs.clone()  # outputs may be inference tensors: changed on a copy
            probs[rows.tolist().index(skipped[0])] = 1.0 / probs.shape[1]
            out = dataclasses.replace(out, probs=probs)
        return out

    monkeypatch.setattr(loop.Learner, "infer", skipped_first)
    out = run(cfg, run_dir)
    records = runlog.read_rounds(run_dir)
    assert records[0]["skipped"] == skipped and records[0]["labels"] == 8
    state = runlog.load_checkpoint(run_dir)
    assert state["human"]["skipped"] == skipped and not state["labeled"][skipped[0]]  # back in the pool
    meta = json.loads((Path(out["pending"]) / "batch.json").read_text())
    assert skipped[0] not in [it["pool_index"] for it in meta["items"]]  # but not in the very next query
    person.label(Path(out["pending"]))
    out = run(cfg, run_dir)  # the round after: it may be asked again, and is (the most uncertain)
    assert runlog.read_rounds(run_dir)[1]["labels"] == 11  # 8 + 4 - 1 skipped
    meta = json.loads((Path(out["pending"]) / "batch.json").read_text())
    assert skipped[0] in [it["pool_index"] for it in meta["items"]]


def test_bad_labels_on_resume_lose_nothing_and_the_batch_stays_pending(tmp_path, folder):
    root, truth = folder
    cfg = _human_config(root)
    run_dir = tmp_path / "run"
    batch = Path(run(cfg, run_dir)["pending"])
    checkpoint = (run_dir / runlog.CHECKPOINT).read_bytes()
    files = [f"images/{i:04d}.png" for i in range(4)]
    for labels, match in ((["zero", "one", "dog", "two"], "has label 'dog', which is not a class"),
                          (["zero", "one", "", "two"], "1 of 4 images have no label yet")):
        oracle.write_labels_csv(batch, files, labels)
        with pytest.raises(UserError, match=match):
            run(cfg, run_dir)
        assert (run_dir / runlog.CHECKPOINT).read_bytes() == checkpoint
    oracle.write_labels_csv(batch, ["images/0000.png", "images/0001.png", "images/0002.png", "images/9.png"],
                            ["zero"] * 4)
    assert train.main(["--resume", str(run_dir)]) == 2  # the CLI: a one-line error, exit 2
    assert (run_dir / runlog.CHECKPOINT).read_bytes() == checkpoint
    meta = json.loads((batch / "batch.json").read_text())
    meta["items"][0]["pool_index"] = 47
    (batch / "batch.json").write_text(json.dumps(meta))
    oracle.write_labels_csv(batch, files, ["zero"] * 4)
    with pytest.raises(UserError, match="lists other images than round 0 queried"):
        run(cfg, run_dir)
    assert (run_dir / runlog.CHECKPOINT).read_bytes() == checkpoint


def test_an_unlabeled_folder_asks_for_the_initial_set_first(tmp_path):
    root = tmp_path / "archive"
    truth = _image_folder(root, labeled=0)
    cfg = _human_config(root, rounds=2)
    run_dir = tmp_path / "run"
    first = Path(run(cfg, run_dir)["pending"])
    meta = json.loads((first / "batch.json").read_text())
    assert first.name == "round-000" and len(meta["items"]) == cfg.init_size
    assert [it["prediction"] for it in meta["items"]] == [None] * cfg.init_size  # no model yet
    assert sorted(it["pool_index"] for it in meta["items"]) == loop.initial_labeled(48, 8, 0).tolist()
    Person(truth).label(first)
    _until_done(cfg, run_dir, Person(truth))
    records = runlog.read_rounds(run_dir)
    assert [r["labels"] for r in records] == [0, 8, 12, 16]  # round 0 trains nothing; then 2 query rounds
    assert records[0]["acc"] is None and "no model yet" in records[0]["why_null"]["acc"]
    summary = runlog.read_json(run_dir / runlog.SUMMARY)
    assert summary["aubc"] == pytest.approx(runlog.aubc([8, 12, 16], [r["acc"] for r in records[1:]]))


def test_without_a_test_folder_accuracy_is_null_and_says_why(tmp_path):
    root = tmp_path / "notest"
    truth = _image_folder(root, test=False)
    cfg = _human_config(root, rounds=1)
    _until_done(cfg, tmp_path / "run", Person(truth))
    records = runlog.read_rounds(tmp_path / "run")
    assert [r["acc"] for r in records] == [None, None]
    assert "no test split" in records[0]["why_null"]["acc"]
    assert runlog.read_json(tmp_path / "run" / runlog.SUMMARY)["aubc"] is None


def test_the_cli_pauses_with_the_next_steps_and_exit_0(tmp_path, folder, capsys):
    root, truth = folder
    run_dir = tmp_path / "run"
    argv = ["--dataset", f"folder:{root}", "--size", "8", "--oracle", "human", "--strategy", "entropy",
            "--init-size", "8", "--budget", "4", "--rounds", "1", "--epochs", "2", "--min-steps", "10",
            "--backbone", "cnn", "--device", "cpu", "--out", str(run_dir), "--no-progress"]
    assert train.main(argv) == 0
    printed = capsys.readouterr().out
    batch = run_dir / "queries" / "round-000"
    assert f"python -m autoal.label {run_dir}" in printed and f"--resume {run_dir}" in printed
    assert str(batch / "labels.csv") in printed and "paused for labels" in printed
    Person(truth).label(batch)
    assert train.main(["--resume", str(run_dir), "--no-progress"]) == 0
    assert "AUBC" in capsys.readouterr().out
    assert [r["labels"] for r in runlog.read_rounds(run_dir)] == [8, 12]


def test_albl_with_a_person_is_the_simulated_run_and_skips_leave_the_reward(tmp_path, folder):
    """ALBL learns from each batch's labels after the run has paused for them: with a person who labels
    truthfully every record (its reward, its expert probabilities) is the simulated oracle's."""
    root, truth = folder
    human_cfg = _human_config(root, strategy="albl", rounds=4)
    files = sorted(truth)  # the person starts from the simulated run's random initial set
    initial = loop.initial_labeled(len(files), human_cfg.init_size, human_cfg.seed).tolist()
    oracle_rows = [(files[i], CLASSES[truth[files[i]]]) for i in initial]
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file", "label"), *oracle_rows])
    _until_done(human_cfg, tmp_path / "human", Person(truth))
    full = tmp_path / "full"
    _image_folder(full, labeled=48)
    simulated = run(dataclasses.replace(human_cfg, dataset=f"folder:{full}", oracle="simulated"), tmp_path / "sim")
    human = _records(tmp_path / "human")
    assert [{k: v for k, v in r.items() if k != "skipped"} for r in human] == _records(tmp_path / "sim")
    assert [r["selector"]["reward"] for r in human[1:-1]] and all("expert_rhat" in r["selector"] for r in human[1:-1])
    assert simulated["acc"] == [r["acc"] for r in human]
    items = json.loads((tmp_path / "human" / "queries" / "round-001" / "batch.json").read_text())["items"]
    experts = [*human_cfg.candidates.split(","), "random_expert"]
    assert all(len(it["contributions"]) == 1 and set(it["contributions"]) <= set(experts) for it in items)
    counts = human[1]["selector"]["expert_counts"]  # each image names the expert that drew it
    assert sum(counts.values()) == len(items) and all(
        sum(next(iter(it["contributions"])) == e for it in items) == n for e, n in counts.items())

    person, skips = Person(truth, skip_rounds=(1,)), tmp_path / "skips"
    for _ in range(2):  # rounds 0 and 1 labeled (round 1 less its first image), paused at round 2
        person.label(Path(run(human_cfg, skips)["pending"]))
    run(human_cfg, skips)
    last = runlog.load_checkpoint(skips)["selector"]["last"]
    assert last["credit"].shape[0] == 3  # round 1's skipped pick is no trial of next round's reward


def test_refused_up_front(tmp_path, folder, capsys):
    root, _ = folder
    with pytest.raises(UserError, match="40 of 48 images .* have no label .* --oracle human"):
        run(_human_config(root, oracle="simulated"), tmp_path / "sim")
    with pytest.raises(UserError, match="--channels 1 applies to folder:PATH data only"):
        train.resolve_config(train.build_parser().parse_args(["--channels", "1"]))


def test_a_folder_that_changed_is_refused_on_resume(tmp_path, folder):
    root, truth = folder
    cfg = _human_config(root)
    run(cfg, tmp_path / "run")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "img000a.png")  # shifts every later pool index
    with pytest.raises(UserError, match="added, removed or renamed since this run started"):
        run(cfg, tmp_path / "run")


def test_a_fully_labeled_folder_runs_simulated(tmp_path):
    root = tmp_path / "bench"
    _image_folder(root, labeled=48)
    cfg = _human_config(root, oracle="simulated", rounds=2)
    summary = run(cfg, tmp_path / "run")
    assert summary["labels"] == [8, 12, 16] and all(0.0 <= a <= 1.0 for a in summary["acc"])
    assert not (tmp_path / "run" / "queries").exists()
    assert torch.equal(loop.first_labeled(cfg, loop.load_dataset(cfg.dataset, size=8)),
                       loop.initial_labeled(48, 8, 0))


def test_autoal_batches_say_which_strategies_wanted_each_image(tmp_path, folder):
    root, truth = folder
    cfg = _human_config(root, strategy="autoal", search_epochs=2, rounds=1)
    batch = Path(run(cfg, tmp_path / "run")["pending"])
    items = json.loads((batch / "batch.json").read_text())["items"]
    for item in items:
        shares = item["contributions"]
        assert set(shares) <= set(cfg.candidates.split(",")) and all(v > 0 for v in shares.values())
        assert shares == {} or sum(shares.values()) == pytest.approx(1.0)
    assert any(item["contributions"] for item in items)
    Person(truth).label(batch)
    run(cfg, tmp_path / "run")
    assert "pick_contributions" not in runlog.read_rounds(tmp_path / "run")[0]["selector"]  # the batch's, not the record's


def test_folder_batches_show_the_original_image(tmp_path, monkeypatch):
    root = tmp_path / "big"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(root / f"p{i:02d}.png")
    (root / "labels.csv").write_text("file,label\np00.png,a\np01.png,b\n")
    cfg = _human_config(root, budget=3, rounds=1)
    data = loop.load_dataset(cfg.dataset, size=8)
    assert data.train.images.shape[2:] == (8, 8)
    batch = oracle.write_round_batch(tmp_path / "run", 0, data, [4, 7], None, None)
    shown = Image.open(batch / "images" / "0001.png")
    assert shown.size == (30, 20)  # the original resolution, not the model's 8 x 8
    np.testing.assert_array_equal(np.asarray(shown), np.asarray(Image.open(root / "p07.png")))
    assert json.loads((batch / "batch.json").read_text())["items"][1]["source"] == "p07.png"
    monkeypatch.setattr(oracle, "MAX_SHOWN_SIDE", 15)
    batch = oracle.write_round_batch(tmp_path / "run", 1, data, [4], None, None)
    assert max(Image.open(batch / "images" / "0000.png").size) == 15  # a huge original is scaled down

    def unreadable(path):
        raise OSError("gone")

    monkeypatch.setattr("autoal.folder_data.open_as_8bit", unreadable)
    batch = oracle.write_round_batch(tmp_path / "run", 2, data, [4], None, None)
    assert Image.open(batch / "images" / "0000.png").size == (8, 8)  # the model's image stands in


def test_changed_classes_and_rounds_that_do_not_fit_are_refused(tmp_path, folder):
    root, _ = folder
    cfg = _human_config(root)
    run(cfg, tmp_path / "run")
    (root / "classes.txt").write_text("\n".join([*CLASSES, "four"]) + "\n")
    with pytest.raises(UserError, match=r"classes of .* changed since this run started \(.*three -> .*four\)"):
        run(cfg, tmp_path / "run")
    with pytest.raises(UserError, match=r"11 rounds of 4 after the 8 images labels.csv labels need 52 images but "
                                        r"the pool has 48; use --rounds 10"):
        run(_human_config(root, rounds=11, init_size=2), tmp_path / "other")  # --init-size does not count


def test_the_initial_request_follows_init_strategy(tmp_path, monkeypatch):
    from autoal import initial
    from autoal.initial import RotNetSettings, initial_set

    monkeypatch.setenv(initial.CACHE_ENV, str(tmp_path / "cache"))  # a fresh cache, the short RotNet recipe
    monkeypatch.setattr(initial, "DEFAULT_ROTNET", RotNetSettings(steps=4, batch_images=8, eval_batch_size=32))
    root = tmp_path / "archive"
    _image_folder(root, labeled=0)
    cfg = _human_config(root, rounds=1, init_strategy="diverse")
    batch = Path(run(cfg, tmp_path / "run")["pending"])
    asked = sorted(it["pool_index"] for it in json.loads((batch / "batch.json").read_text())["items"])
    assert asked == initial_set(cfg, loop.load_dataset(cfg.dataset, size=8)).tolist()
    assert asked != loop.initial_labeled(48, 8, 0).tolist()  # not the random set
