"""The pool-based active-learning loop, resumable at any moment.

Round r (0..rounds): train the task model on the labeled set, evaluate it on the test split, then
(except after the last round) infer on the unlabeled pool once, let the selector pick ``budget``
indices and label them from the ground truth. After every round the whole state (labeled mask,
records, selector state, optionally the model) is checkpointed; every random choice derives from
(seed, purpose, round), so a resumed run repeats exactly what an uninterrupted run would do.

With ``oracle = "human"`` a person labels instead: after a round's selection the batch is written
to RUN/queries/round-NNN/ (autoal.oracle), the round is checkpointed as pending and ``run``
returns; the next call reads the labels, finishes that round and continues. Images skipped as
``unsure`` go back to the pool but are left out of the very next query. When the pool has no labels
at all (a folder without labels.csv), round 0 trains nothing: it asks for the initial set
(--init-strategy), and the query rounds are 1..rounds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from autoal import oracle, runlog
from autoal.config import RunConfig, config_differences, from_dict, to_dict
from autoal.data import ImageDataset, Split, load_dataset
from autoal.errors import UserError
from autoal.initial import initial_set, random_initial
from autoal.learner import Learner, Progress, TrainSettings
from autoal.models import resolve_backbone
from autoal.registry import get_candidate, list_candidates
from autoal.accel import peak_rss_mb
from autoal.rng import derive_seed, deterministic_mode
from autoal.selectors import CandidateSelector, RoundContext, Selector, make_selector

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                        f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: Apple's MPS is not available on this machine; use --device cpu or auto")
    return device


#: Settings whose ``auto`` depends on the device: resolved once, at the start, and saved resolved,
#: so a run resumed on another device keeps computing with the same models. (SearchNet reads the
#: task model's outputs, so it has no backbone of its own to resolve.)
DEVICE_DEPENDENT = ("backbone",)


def resolve_models(cfg: RunConfig, device: torch.device) -> RunConfig:
    """``cfg`` with ``auto`` backbones replaced by what they mean on ``device``."""
    resolved = {}
    for name in DEVICE_DEPENDENT:
        if getattr(cfg, name) == "auto":
            resolved[name] = resolve_backbone(getattr(cfg, name), device)
    return replace(cfg, **resolved)


def checkpoint_differences(state: dict[str, Any], cfg: RunConfig) -> list[str]:
    """Settings the checkpoint was computed with that differ from ``cfg`` (a config.json edited
    after the run started); none for a checkpoint older than this record."""
    saved = state.get("config")
    return [] if saved is None else config_differences(saved, to_dict(cfg))


def initial_labeled(n_pool: int, init_size: int, seed: int) -> torch.Tensor:
    """The seeded uniform initial set: depends only on the seed and sizes, never on the strategy.
    (``--init-strategy`` chooses between it and the diverse set: ``autoal.initial.initial_set``.)"""
    return random_initial(n_pool, init_size, seed)


def check_sizes(cfg: RunConfig, n_pool: int) -> None:
    if cfg.budget > n_pool:
        raise UserError(f"--budget {cfg.budget} is larger than the pool ({n_pool} samples); lower --budget")
    if cfg.init_size > n_pool:
        raise UserError(f"--init-size {cfg.init_size} is larger than the pool ({n_pool} samples); lower it")
    if 0 < cfg.pool_subset < cfg.budget:
        raise UserError(f"--pool-subset {cfg.pool_subset} is smaller than --budget {cfg.budget}: a round cannot "
                        f"query more samples than it scores; raise --pool-subset or use 0 (the whole pool)")
    final = cfg.init_size + cfg.rounds * cfg.budget
    if final > n_pool:
        most = (n_pool - cfg.init_size) // cfg.budget
        raise UserError(f"{cfg.rounds} rounds of {cfg.budget} after {cfg.init_size} initial labels need {final} "
                        f"samples but the pool has {n_pool}; use --rounds {most} or less, or a smaller --budget")


def scored_subset(unlabeled: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """The unlabeled pool indices a round scores: all of them, or (``--pool-subset``) ``size`` drawn
    uniformly with ``seed``, sorted like ``unlabeled`` so that rows still map back by search."""
    if size <= 0 or len(unlabeled) <= size:
        return unlabeled
    order = torch.randperm(len(unlabeled), generator=torch.Generator().manual_seed(seed))
    return unlabeled[order[:size]].sort().values


def check_mc_samples(strategy: str, needs: frozenset[str], mc_samples: int) -> None:
    """Refuse fewer than 2 MC-dropout samples for a selector that reads them (``mc_probs`` in its needs).

    BALD, var_ratio and mean_std measure disagreement between the T samples: with T = 1 they are
    the same for every pool point, and the ranking's tie-break alone chooses the batch.
    """
    if "mc_probs" not in needs or mc_samples >= 2:
        return
    users = ", ".join(n for n in list_candidates() if "mc_probs" in get_candidate(n).needs)
    raise UserError(f"--strategy {strategy} uses MC-dropout samples ({users} compare T samples), which are "
                    f"constant with --mc-samples {mc_samples}; give --mc-samples 2 or more (default 20), or a "
                    f"strategy (or --candidates) without them")


def check_aug_views(strategy: str, needs: frozenset[str], aug_views: int) -> None:
    """Refuse --aug-views 0 for a selector that reads augmented views (consistency): without views
    every image's prediction variance is 0."""
    if "aug_probs" in needs and aug_views < 1:
        raise UserError(f"--strategy {strategy} compares predictions on augmented views (consistency), which "
                        f"--aug-views {aug_views} leaves out; give --aug-views 1 or more (default 50)")


def make_checked_selector(cfg: RunConfig) -> Selector:
    """The run's selector, its settings checked: the CLI calls it before anything is written."""
    selector = make_selector(cfg.strategy, cfg)
    check_mc_samples(cfg.strategy, selector.needs, cfg.mc_samples)
    check_aug_views(cfg.strategy, selector.needs, cfg.aug_views)
    return selector


def check_pool_labels(cfg: RunConfig, data: ImageDataset) -> None:
    """The simulated oracle answers from the stored labels: every pool image needs one. The human
    oracle starts from a folder's labeled images (not --init-size): the rounds must fit after them."""
    n_pool = len(data.train)
    known = int((data.train.labels >= 0).sum())
    if cfg.oracle == "simulated" and known < n_pool:
        raise UserError(f"{n_pool - known} of {n_pool} images of {cfg.dataset} have no label in its labels.csv, "
                        f"and the simulated oracle needs them all; let a person label: --oracle human")
    if cfg.oracle == "human" and 0 < known < n_pool and known + cfg.rounds * cfg.budget > n_pool:
        most = (n_pool - known) // cfg.budget
        raise UserError(f"{cfg.rounds} rounds of {cfg.budget} after the {known} images labels.csv labels need "
                        f"{known + cfg.rounds * cfg.budget} images but the pool has {n_pool}; use --rounds {most} "
                        f"or less, or a smaller --budget")


def first_labeled(cfg: RunConfig, data: ImageDataset, progress: Progress | None = None) -> torch.Tensor | None:
    """The initial labeled set; None when a person must label the seeded one first (an unlabeled folder).

    The human oracle starts from the images a folder's labels.csv labels (all of them, whatever
    --init-size says); on data whose every image has a label, and with the simulated oracle, it
    is the seeded set of --init-size.
    """
    known = data.train.labels >= 0
    if cfg.oracle == "simulated" or bool(known.all()):
        return initial_set(cfg, data, progress=progress)  # --init-strategy random|diverse (RotNet: a "rotnet" bar)
    return known.nonzero().squeeze(1) if bool(known.any()) else None


def make_learner(cfg: RunConfig, data: ImageDataset, device: torch.device,
                 progress: Progress | None = None, needs: frozenset[str] | None = None) -> Learner:
    """The run's Learner. ``needs`` (default: those of the run's selector) decide whether the task
    model carries a loss-prediction module: only when something reads ``predicted_loss``."""
    if needs is None:
        needs = make_selector(cfg.strategy, cfg).needs
    settings = TrainSettings(backbone=resolve_backbone(cfg.backbone, device), epochs=cfg.epochs,
                             batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                             dropout=cfg.dropout, min_steps=cfg.min_steps,
                             eval_batch_size=cfg.eval_batch_size, mc_samples=cfg.mc_samples,
                             augment=cfg.augment, schedule=cfg.schedule, class_weights=cfg.class_weights,
                             precision=cfg.precision,
                             loss_prediction="predicted_loss" in needs, aug_views=cfg.aug_views)
    return Learner(data, settings, device, progress)


def run(cfg: RunConfig, run_dir: Path, *, on_round: Callable[[dict[str, Any]], None] | None = None,
        data: ImageDataset | None = None, stop_after: int | None = None,
        on_progress: Progress | None = None) -> dict[str, Any]:
    """Run (or continue) active learning in ``run_dir``; returns the summary.

    ``on_round(record)`` is called after each checkpointed round, ``on_progress(phase, done, total)``
    during the task model's training and inference (the CLI draws both as progress bars).
    ``stop_after`` ends the call after that many rounds of this call (tests use it to simulate a kill).
    ``cfg.deterministic`` holds for the whole call (``rng.deterministic_mode``), then is undone.
    """
    with deterministic_mode(cfg.deterministic):
        return _run(cfg, run_dir, on_round=on_round, data=data, stop_after=stop_after, on_progress=on_progress)


def _run(cfg: RunConfig, run_dir: Path, *, on_round: Callable[[dict[str, Any]], None] | None,
         data: ImageDataset | None, stop_after: int | None, on_progress: Progress | None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    data = data or load_dataset(cfg.dataset, cfg.data_root, cfg.size, cfg.channels)
    n_pool = len(data.train)
    check_sizes(cfg, n_pool)
    check_pool_labels(cfg, data)
    if cfg.oracle == "human":  # a private copy of the pool labels: the person's labels go into it
        data = replace(data, train=Split(data.train.images, data.train.labels.clone()))
    device = resolve_device(cfg.device)
    cfg = resolve_models(cfg, device)
    selector = make_checked_selector(cfg)
    learner = make_learner(cfg, data, device, on_progress, needs=selector.needs)

    runlog.make_folder(run_dir)
    state = runlog.load_checkpoint(run_dir)
    if state is not None and (run_dir / runlog.CONFIG).is_file():
        saved = resolve_models(from_dict(runlog.read_config_json(run_dir / runlog.CONFIG)), device)
        diffs = config_differences(to_dict(saved), to_dict(cfg))
        if diffs:  # continuing would mix two configurations in one run
            raise UserError(f"{run_dir} holds a run with other settings ({'; '.join(diffs)}); "
                            f"resume it with its own config or use another folder")
    if state is not None and checkpoint_differences(state, cfg):
        raise UserError(f"{run_dir / runlog.CHECKPOINT} was computed with other settings than "
                        f"{runlog.CONFIG} ({'; '.join(checkpoint_differences(state, cfg))}); "
                        f"restore {runlog.CONFIG} or start a new run in another folder")
    runlog.write_json(run_dir / runlog.CONFIG, to_dict(cfg))
    if state is None:
        labeled = torch.zeros(n_pool, dtype=torch.bool)
        initial = first_labeled(cfg, data, on_progress)
        if initial is not None:
            labeled[initial] = True
        state = {"version": CHECKPOINT_VERSION, "next_round": 0, "labeled": labeled, "records": [],
                 "selector": selector.state_dict(), "model": None,
                 "config": to_dict(cfg)}  # what the checkpoint was computed with: checked on resume
        if hasattr(data, "files_digest"):  # a folder: its pool and classes must not change under the run
            state["pool_files"], state["classes"] = data.files_digest(), list(data.classes)
        if cfg.oracle == "human":
            state["human"] = {"labels": torch.full((n_pool,), -1, dtype=torch.int64), "skipped": [],
                              "pending": None, "asks_initial": initial is None}
    else:
        selector.load_state_dict(state["selector"])
        log.info("resuming %s at round %d", run_dir, state["next_round"])
    if state.get("pool_files") not in (None, getattr(data, "files_digest", lambda: None)()):
        raise UserError(f"the images of {cfg.dataset} were added, removed or renamed since this run started, so "
                        f"its pool indices no longer name the same images; restore the folder or start a new run")
    if state.get("classes") not in (None, list(data.classes or ())):
        raise UserError(f"the classes of {cfg.dataset} changed since this run started ({', '.join(state['classes'])} "
                        f"-> {', '.join(data.classes)}); restore classes.txt or labels.csv, or start a new run")
    labeled: torch.Tensor = state["labeled"]
    records: list[dict[str, Any]] = state["records"]
    human: dict[str, Any] | None = state.get("human")
    last = cfg.rounds + (1 if human is not None and human["asks_initial"] else 0)  # the round without a query
    if human is not None:
        _apply_person_labels(data, human["labels"])
        if human["pending"] is not None:  # labels read and checked before anything changes: errors lose nothing
            record = _finish_pending(run_dir, human, labeled, data, selector)
            state["selector"] = selector.state_dict()  # after_labeling has consumed the pending draw
            records.append(record)
            state.update(next_round=human["pending"]["round"] + 1)
            human["pending"] = None
            runlog.save_checkpoint(run_dir, state)
            if on_round:
                on_round(record)
    runlog.write_rounds(run_dir, records)  # drop any record written after the last checkpoint

    from torch.utils.tensorboard import SummaryWriter

    # Events are logged before the checkpoint, so a kill never loses a round's events; purge_step
    # drops those a killed run logged after its last checkpoint (steps = labels; the next round's
    # step is the current label count, also before the first checkpoint). A finished run has no
    # next round: the label count is its last round's step, which a purge would drop, so it gets
    # no writer at all (nothing to log; the summary below is rewritten).
    # A pending round finished above logged its events before it paused, at its own label count,
    # which its labels have now passed: they stay (unless every image was skipped: then the next
    # round's events replace them at the same step).
    finished = state["next_round"] > last
    writer = None if finished else SummaryWriter(str(run_dir / runlog.TENSORBOARD), purge_step=int(labeled.sum()))
    done_this_call = 0
    try:
        for r in range(state["next_round"], last + 1):
            if stop_after is not None and done_this_call >= stop_after:
                return {}
            if human is not None and human["asks_initial"] and r == 0:
                record, model_state, query = _initial_request(cfg, data, on_progress)
            else:
                excluded = torch.tensor(human["skipped"], dtype=torch.long) if human is not None else None
                record, model_state, query = _round(cfg, r, learner, selector, labeled, state.get("model"), writer,
                                                    query=r < last, excluded=excluded)
            if query is not None:  # the human oracle: write the batch, checkpoint it as pending, return
                return _pause(run_dir, state, r, record, model_state, query, selector, learner.data, writer)
            records.append(record)
            state.update(next_round=r + 1, selector=selector.state_dict(), model=model_state)
            _log_round(writer, record)
            writer.flush()
            runlog.save_checkpoint(run_dir, state)
            runlog.write_rounds(run_dir, records)
            done_this_call += 1
            if on_round:
                on_round(record)
    finally:
        if writer is not None:
            writer.close()
    summary = summarise(cfg, records)
    log.info("%s: peak resident memory %.0f MiB", run_dir, summary["peak_rss_mb"])
    runlog.write_json(run_dir / runlog.SUMMARY, summary)
    return summary


def _round(cfg: RunConfig, r: int, learner: Learner, selector: Selector, labeled: torch.Tensor,
           model_state: dict | None, writer: Any, *, query: bool, excluded: torch.Tensor | None = None,
           ) -> tuple[dict[str, Any], dict | None, dict[str, Any] | None]:
    """One round; with the simulated oracle it mutates ``labeled`` by the queried indices.

    Returns the record, the model to keep and, with the human oracle, the query a person is to label
    (picks, the model's probabilities on them, per-pick strategy shares). ``excluded`` pool indices
    (last round's skipped images) are left out of this round's query.
    """
    seconds: dict[str, float] = {}
    labeled_idx = labeled.nonzero().squeeze(1)
    n_labels = len(labeled_idx)

    tick = time.perf_counter()
    model = None
    if cfg.warm_start and model_state is not None:
        model = learner.new_model(derive_seed(cfg.seed, "init", r))
        model.load_state_dict(model_state)
    model = learner.fit(labeled_idx, derive_seed(cfg.seed, "train", r), model=model)
    seconds["train"] = time.perf_counter() - tick

    tick = time.perf_counter()
    measured = len(learner.data.test) > 0  # a folder without test/ has no test split
    acc, auc = learner.evaluate(model) if measured else (float("nan"), float("nan"))
    seconds["evaluate"] = time.perf_counter() - tick

    queried: list[int] = []
    info: dict[str, Any] = {}
    asked = None
    if query:
        available = ~labeled
        if excluded is not None:
            available[excluded] = False
        unlabeled = scored_subset(available.nonzero().squeeze(1), cfg.pool_subset,
                                  derive_seed(cfg.seed, "pool-subset", r))
        tick = time.perf_counter()
        outputs = learner.infer(model, unlabeled, selector.needs, seed=derive_seed(cfg.seed, "infer", r),
                                labeled_rows=labeled_idx)  # core-set's centres, when a candidate needs them
        seconds["infer"] = time.perf_counter() - tick

        tick = time.perf_counter()
        select_seed = derive_seed(cfg.seed, "select", r)
        ctx = RoundContext(round=r, budget=cfg.budget, outputs=outputs, unlabeled=unlabeled, labeled=labeled_idx,
                           model=model, learner=learner, seed=select_seed,
                           generator=torch.Generator().manual_seed(select_seed), writer=writer)
        selection = selector.select(ctx)
        picks = _validated(selection.indices, labeled, cfg.budget, selector.name)
        seconds["select"] = time.perf_counter() - tick
        shares = selection.info.pop("pick_contributions", None)  # per pick: for the person, not the record
        info.update(selection.info)
        if cfg.oracle == "human":  # a person labels them once this process has exited
            if shares is None and isinstance(selector, CandidateSelector):
                shares = [{selector.name: 1.0}] * len(picks)
            probs = outputs.probs[torch.searchsorted(unlabeled, picks)].cpu() if outputs.probs is not None else None
            asked = {"picks": picks, "probs": probs, "contributions": shares, "selected": True}
        else:
            labeled[picks] = True  # the simulated oracle: labels come from the ground truth
            info.update(selector.after_labeling(ctx, picks, learner.data.train.labels[picks]))
        queried = picks.tolist()

    record = {"round": r, "labels": n_labels, "acc": acc, "auc": auc,
              "seconds": {k: round(v, 4) for k, v in seconds.items()}, "queried": queried}
    if not measured:
        record[runlog.WHY_NULL] = {k: NOT_MEASURED for k in ("acc", "auc")}
    elif auc != auc:  # NaN: rounds.jsonl writes null, and says why
        record[runlog.WHY_NULL] = {"auc": "undefined: the test split lacks a class with both positives and "
                                          "negatives for a one-vs-rest ROC curve"}
    if info:
        record["selector"] = info
    keep = {k: v.detach().cpu() for k, v in model.state_dict().items()} if cfg.warm_start else None
    return record, keep, asked


NOT_MEASURED = "accuracy is not measured: the dataset has no test split (add PATH/test/ with its labels.csv)"


def _initial_request(cfg: RunConfig, data: ImageDataset,
                     progress: Progress | None = None) -> tuple[dict[str, Any], None, dict[str, Any]]:
    """Round 0 of a run whose pool has no labels: no model yet, a person labels the initial set
    (--init-strategy: seeded random, or diverse on a label-free representation)."""
    picks = initial_set(cfg, data, progress=progress)
    why = "no model yet: round 0 asks a person to label the initial set"
    record = {"round": 0, "labels": 0, "acc": float("nan"), "auc": float("nan"), "seconds": {},
              "queried": picks.tolist(), runlog.WHY_NULL: {"acc": why, "auc": why}}
    return record, None, {"picks": picks, "probs": None, "contributions": None, "selected": False}


def _pause(run_dir: Path, state: dict[str, Any], r: int, record: dict[str, Any], model_state: dict | None,
           query: dict[str, Any], selector: Selector, data: ImageDataset, writer: Any) -> dict[str, Any]:
    """Write round ``r``'s batch, then checkpoint the round as pending (next_round stays ``r``).

    The batch is written first: a kill before the checkpoint redoes the round, which picks the same
    images (and keeps a labels.csv a person may have started)."""
    _log_round(writer, record)
    writer.flush()
    batch = oracle.write_round_batch(run_dir, r, data, query["picks"], query["probs"], query["contributions"])
    state.update(selector=selector.state_dict(), model=model_state)
    state["human"]["pending"] = {"round": r, "picks": query["picks"].clone(), "record": record,
                                 "selected": query["selected"]}
    runlog.save_checkpoint(run_dir, state)
    return {"pending": str(batch), "round": r, "n_images": len(query["picks"]), "record": record}


def _apply_person_labels(data: ImageDataset, labels: torch.Tensor) -> None:
    """The labels a person gave (-1: none) into the run's private copy of the pool labels."""
    given = labels >= 0
    data.train.labels[given] = labels[given]


def _finish_pending(run_dir: Path, human: dict[str, Any], labeled: torch.Tensor, data: ImageDataset,
                    selector: Selector) -> dict[str, Any]:
    """The pending round's record, after its labels are read and set (UserError before any change) and
    handed to the selector, as the simulated oracle's are in the round itself (ALBL's reward)."""
    pending = human["pending"]
    labels, skipped = oracle.collect_labels(run_dir, pending["round"], pending["picks"].tolist(),
                                            oracle.class_names(data))
    rows = torch.tensor(sorted(labels), dtype=torch.long)
    human["labels"][rows] = torch.tensor([labels[int(i)] for i in rows], dtype=torch.int64)
    _apply_person_labels(data, human["labels"])
    labeled[rows] = True
    human["skipped"] = skipped  # left out of the next query, then back in the pool
    record = {**pending["record"], "skipped": skipped}
    if pending.get("selected", False):  # not the initial set a person labels before any model
        given = torch.tensor([i for i in pending["picks"].tolist() if i in labels], dtype=torch.long)  # pick order
        info = selector.after_labeling(None, given, data.train.labels[given])
        if info:
            record["selector"] = {**record.get("selector", {}), **info}
    return record


def _validated(indices: torch.Tensor, labeled: torch.Tensor, budget: int, name: str) -> torch.Tensor:
    picks = torch.as_tensor(indices).long().cpu().reshape(-1)
    if len(picks) != budget or len(picks.unique()) != budget:
        raise RuntimeError(f"selector {name} returned {len(picks)} indices ({len(picks.unique())} distinct), "
                           f"expected {budget} distinct")
    if labeled[picks].any():
        raise RuntimeError(f"selector {name} returned already-labeled indices")
    return picks


def _log_round(writer: Any, record: dict[str, Any]) -> None:
    step = record["labels"]
    if record["acc"] == record["acc"]:  # NaN: not measured (no test split, or no model yet)
        writer.add_scalar("test/acc", record["acc"], step)
        writer.add_scalar("test/auc", record["auc"], step)
    for phase, secs in record["seconds"].items():
        writer.add_scalar(f"seconds/{phase}", secs, step)
    for key, value in record.get("selector", {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(f"selector/{key}", value, step)


def summarise(cfg: RunConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
    labels = [r["labels"] for r in records]
    accs = [r["acc"] for r in records]
    measured = [(n, a) for n, a in zip(labels, accs) if a == a]  # rounds without a model or a test split: none
    return {
        "dataset": cfg.dataset, "strategy": cfg.strategy, "seed": cfg.seed,
        "query_rounds": max(len(records) - 1, 0), "labels": labels, "acc": accs,
        "aubc": runlog.aubc([n for n, _ in measured], [a for _, a in measured]),
        "final_acc": accs[-1] if accs else None,
        "final_auc": records[-1]["auc"] if records else None,
        "total_seconds": round(sum(sum(r["seconds"].values()) for r in records), 3),
        # of the process that wrote this summary (a resumed run: of the resuming process)
        "peak_rss_mb": peak_rss_mb(),
    }
