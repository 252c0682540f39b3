"""RunConfig: every setting of a run, with its --help text; precedence defaults < --config file < flags.

Each field becomes a command-line flag (``mc_samples`` -> ``--mc-samples``); the resolved config is
written to the run folder as config.json, and ``--resume`` reads it back from there.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

from autoal.data import MEDMNIST_2D
from autoal.errors import UserError

SEVEN = "entropy,margin,least_confidence,bald,kmeans,var_ratio,mean_std"


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class RunConfig:
    # --- data ---
    dataset: str = _opt("digits", "digits (sklearn's bundled 8x8 set, offline), a MedMNIST 2D set "
                                  "(pathmnist, organcmnist, tissuemnist, ...), a torchvision set (mnist, "
                                  "fashionmnist, cifar10, cifar100, svhn), npz:PATH in MedMNIST layout, or "
                                  "folder:PATH (PNG/JPEG/TIFF images of any size; optional PATH/labels.csv with "
                                  "columns file,label, PATH/classes.txt with one class per line, and PATH/test/ "
                                  "with its own labels.csv for evaluation)")
    data_root: str = _opt("data", "folder holding the official MedMNIST NAME.npz files; for the torchvision "
                                  "sets their download/cache folder (downloads only where a network exists)")
    size: int = _opt(28, "MedMNIST image size: 28, 64, 128 or 224 (torchvision sets keep their native 28 or 32; "
                         "digits and npz data keep the size they are stored at, and refuse any other --size; "
                         "folder:PATH images are resized to --size x --size, 8 to 1024)")
    channels: int = _opt(0, "folder:PATH images converted to 1 (grey) or 3 (RGB) channels; 0: grey when every "
                            "image is grey, else RGB", (0, 1, 3))
    # --- active learning ---
    strategy: str = _opt("autoal", "query strategy: autoal, albl, selectal or any registered candidate "
                                   "(entropy, margin, least_confidence, bald, var_ratio, mean_std, kmeans, "
                                   "typiclust, random, ...), with its parameters as name:key=value,key=value "
                                   "(diversity:T=0.1; --candidates takes the same form)")
    init_size: int = _opt(20, "size of the seeded initial labeled set (the same for every strategy with the same seed)")
    init_strategy: str = _opt("random", "how the initial labeled set is chosen: random (uniform) or diverse (Buchert "
                                        "et al.: k-means++ seeding, T = 0.5, on a RotNet self-supervised "
                                        "representation of the pool, trained once per dataset and seed and cached); "
                                        "either way the same for every strategy with the same seed",
                              ("random", "diverse"))
    budget: int = _opt(20, "labels queried per round")
    rounds: int = _opt(10, "query rounds (the labeled set ends at init-size + rounds * budget)")
    pool_subset: int = _opt(0, "score only a seeded random subset of this many unlabeled samples each round (0: "
                               "the whole pool). Gal et al. 2017's code scores 2,000 of its 40,000-image MNIST "
                               "pool and Yoo & Kweon 2019 10,000: it cuts inference on a large pool and spreads "
                               "a top-k batch across it")
    seed: int = _opt(0, "seed of the run: initial set, model initialisation, MC dropout, selections")
    oracle: str = _opt("simulated", "who labels the queries: simulated (the dataset's stored labels) or human: "
                                    "after each selection the run writes RUN/queries/round-NNN/ (the images, a "
                                    "labels.csv to fill in, Label Studio tasks), checkpoints and exits; label the "
                                    "batch (python -m autoal.label RUN, or the CSV), then --resume RUN. The label "
                                    "'unsure' skips an image: it returns to the pool and is left out of the very "
                                    "next query. A folder's labels.csv gives the initial set (instead of "
                                    "--init-size images chosen by --init-strategy, which a person labels first "
                                    "when there is none)",
                       ("simulated", "human"))
    # --- task model ---
    backbone: str = _opt("auto", "task model: auto (resnet18 on CUDA, cnn on CPU), cnn or resnet18",
                         ("auto", "cnn", "resnet18"))
    epochs: int = _opt(80, "training epochs per round (at least --min-steps optimiser steps)")
    min_steps: int = _opt(200, "minimum optimiser steps per training, so tiny labeled sets still fit")
    batch_size: int = _opt(32, "training batch size")
    lr: float = _opt(1e-3, "Adam learning rate of the task model")
    weight_decay: float = _opt(5e-4, "Adam weight decay of the task model")
    dropout: float = _opt(0.5, "dropout rate before the head's last layer; the dropout after the convolutions "
                               "uses half of it (Gal et al. 2017: 0.5 and 0.25); also used for MC sampling")
    augment: str = _opt("auto", "training augmentation on the device: auto (the dataset's default: shift for "
                                "digits and anatomy, shift-hflip for natural images, shift-flip for microscopy), "
                                "none, shift (translations up to a tenth of the side), shift-hflip, shift-flip",
                        ("auto", "none", "shift", "shift-hflip", "shift-flip"))
    schedule: str = _opt("cosine", "learning rate over one training: cosine (from --lr to 0) or constant",
                         ("cosine", "constant"))
    class_weights: str = _opt("none", "per-sample weights of the task model's loss: none, or balanced (each class "
                                      "of the labeled set weighs the same in total, so a set that a strategy made "
                                      "lopsided trains a model for a uniform class prior)", ("none", "balanced"))
    warm_start: bool = _opt(False, "continue training last round's model instead of training from scratch")
    mc_samples: int = _opt(20, "MC-dropout samples T for bald, var_ratio and mean_std")
    aug_views: int = _opt(50, "augmented views N_a per image whose predictions consistency compares (seed 001: "
                              "50 on CIFAR-10); each view is one more forward pass over the pool")
    eval_batch_size: int = _opt(512, "batch size of pool inference and evaluation")
    device: str = _opt("auto", "auto (cuda when available), cpu, cuda or cuda:N")
    precision: str = _opt("fp32", "autocast of training and inference forwards: fp32, bf16 (CPU or CUDA) or fp16 "
                                  "(CUDA, with loss scaling); candidates always read float32 outputs",
                          ("fp32", "bf16", "fp16"))
    deterministic: bool = _opt(False, "deterministic algorithms only: cuDNN deterministic without autotuning, "
                                      "torch.use_deterministic_algorithms (an op without a deterministic version "
                                      "fails instead of varying) and CUBLAS_WORKSPACE_CONFIG; slower on CUDA")
    # --- AutoAL ---
    candidates: str = _opt(SEVEN, "comma-separated candidate pool AutoAL and ALBL choose from, each name once "
                                  "(SelectAL's strategies are fixed by the method: it checks the list all the same)")
    search_mode: str = _opt("first-order", "AutoAL search objective: first-order (SearchNet maximises the "
                                           "sel-weighted loss of the FitNet trained on L_tr: selects what FitNet "
                                           "finds hard), unrolled (the paper's objective through k differentiable "
                                           "FitNet steps on the sel-weighted loss, with higher), heldout (minimises "
                                           "FitNet's loss on held-out L_val samples after k steps on what it "
                                           "selected: the value of labelling), influence (first-order with that "
                                           "value in closed form: selects the L_val samples whose one SGD step on "
                                           "FitNet's last layer most lowers its loss on the other L_val samples; "
                                           "costs what first-order costs) or published (the published code's "
                                           "slope 1e11 and float count penalty: shows its zero gradient)",
                            ("first-order", "unrolled", "heldout", "influence", "published"))
    search_epochs: int = _opt(50, "AutoAL: epochs per round of a fresh SearchNet over every round's L_val "
                                  "simulation so far (its cost grows with the rounds)")
    search_batch_size: int = _opt(64, "AutoAL: L_val (and L_tr) batch size of the search steps")
    search_lr: float = _opt(3e-3, "AutoAL: Adam learning rate of SearchNet, its scales lambda and the loss module")
    search_folds: int = _opt(2, "AutoAL: L_val simulations per round. 1: the paper's split (a fixed random half of "
                                "the labeled set is L_tr, the other half L_val); K >= 2: cross-fitting, the labeled "
                                "set cut into K fixed random folds, each fold L_val once with its own FitNet trained "
                                "on the other folds (every labeled sample is evidence every round; K FitNets). "
                                "2 (both halves) passes the planted test, where 1 left anti-margin above a noise column")
    search_bags: int = _opt(1, "AutoAL: SearchNets fitted per round, each to a bootstrap resample of every "
                               "simulation's L_val samples; the query uses their mean weight lambda_k w_ik (1: one "
                               "SearchNet on all the evidence). Weak evidence makes the fits disagree and the mean "
                               "hedge among the candidates they favour; clear evidence makes them agree")
    tau_scale: float = _opt(1.0, "AutoAL: soft-selection temperature tau as a multiple of the std of the scores")
    count_penalty: float = _opt(10.0, "AutoAL: weight beta of the count penalty (mean(sel) - r)^2")
    rank_weight: float = _opt(0.1, "AutoAL: weight gamma of the loss-prediction ranking loss")
    unroll_steps: int = _opt(1, "AutoAL unrolled/heldout modes: differentiable FitNet SGD steps k")
    unroll_lr: float = _opt(0.1, "AutoAL unrolled/heldout modes: SGD learning rate of the differentiable FitNet steps")
    # --- ALBL ---
    albl_batch_mode: str = _opt("per-example", "ALBL: draw an expert for every queried example (per-example) "
                                               "or one expert for the whole batch (per-batch)",
                                ("per-example", "per-batch"))
    albl_delta: float = _opt(0.1, "ALBL: EXP4.P confidence parameter delta, in (0, 1)")
    albl_reward: str = _opt("accuracy", "ALBL: reward of last round's picks: accuracy (this round's model on "
                                        "this round's picks, importance-weighted) or gain (its difference "
                                        "from last round's model on the same picks)",
                            ("accuracy", "gain"))
    # --- SelectAL ---
    selectal_removal: float = _opt(0.1, "SelectAL: fraction of the labeled training part each strategy removes "
                                        "in the removal test")
    selectal_holdout: float = _opt(0.25, "SelectAL: fraction of the labeled set held out to score the probe "
                                         "models (a fresh random split per repeat)")
    selectal_repeats: int = _opt(3, "SelectAL: repeats of the removal test per round (new split and probe seed)")
    selectal_probe_epochs: int = _opt(0, "SelectAL: training epochs of each probe model; 0 = the task model's "
                                         "--epochs (probes train with the task model's recipe, to competence)")
    selectal_probe_min_steps: int = _opt(0, "SelectAL: minimum optimiser steps of each probe model; 0 = the task "
                                            "model's --min-steps")
    selectal_uncertainty: str = _opt("margin", "SelectAL: the high-budget strategy (a score candidate)")
    selectal_tolerance: float = _opt(0.0, "SelectAL: a removal must cost more than this much held-out accuracy "
                                          "beyond random removal to decide the regime")
    # --- output ---
    out: str = _opt("", "run folder (default: runs/DATASET-STRATEGY-seedSEED)")


CONFIG_FIELDS = {f.name: f for f in fields(RunConfig)}
#: Flags that set a candidate's parameter wherever that candidate is used (--strategy, --candidates):
#: flag name -> (candidate, parameter). ``--diversity-temperature 0.1`` = ``diversity:T=0.1``.
CANDIDATE_FLAGS = {"diversity_temperature": ("diversity", "T")}
#: Key under which config.json records the resolved parameters of the candidates a run uses.
PARAMETERS_KEY = "candidate_parameters"
#: --help sections: the first field of each, in RunConfig's order.
HELP_SECTIONS = {"dataset": "data", "strategy": "active learning", "backbone": "task model",
                 "candidates": "AutoAL (--candidates is also the pool of ALBL's experts)",
                 "albl_batch_mode": "ALBL", "selectal_removal": "SelectAL", "out": "output"}


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line ``error: ...`` (and exit code 2) instead of usage plus message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m autoal.train",
        description="Pool-based active learning with AutoAL, ALBL, SelectAL or any single candidate strategy. "
                    "Writes config.json, rounds.jsonl, summary.json, TensorBoard events and a checkpoint "
                    "into the run folder.",
    )
    group: Any = parser
    for f in fields(RunConfig):
        if f.name in HELP_SECTIONS:
            group = parser.add_argument_group(HELP_SECTIONS[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        kwargs: dict[str, Any] = {"help": f.metadata["help"], "default": argparse.SUPPRESS}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = type(default)
            kwargs["metavar"] = f.name.upper()
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if "%" not in kwargs["help"]:
            kwargs["help"] += f" (default: {default!r})"
        group.add_argument(flag, **kwargs)
    for name, (candidate, param) in CANDIDATE_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=float, metavar=param, default=argparse.SUPPRESS,
                            help=f"parameter {param} of the {candidate} candidate wherever --strategy or "
                                 f"--candidates names it: the same as writing {candidate}:{param}=VALUE there")
    parser.add_argument("--config", metavar="FILE", help="TOML or JSON file of defaults; flags win over it")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR with its saved config (only --device may change)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a .toml or .json file: flat ``key = value`` (field names or flags), and/or the
    method settings grouped in sections ``[autoal]``, ``[albl]``, ``[selectal]`` (see ``flatten_sections``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; give --config an existing .toml or .json file")
    try:
        raw = json.loads(path.read_text()) if path.suffix == ".json" else tomllib.loads(path.read_text())
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"cannot parse config file {path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config file {path}: {exc}") from None
    if not isinstance(raw, dict):  # e.g. a JSON list
        raise UserError(f"config file {path} holds a {type(raw).__name__}; it must hold settings as "
                        f"key = value (TOML) or one object {{\"key\": value}} (JSON)")
    return validate_settings(flatten_sections(raw, where=str(path)), where=str(path))


def _section_fields() -> dict[str, list[str]]:
    """Method section -> its RunConfig fields, by the --help groups: AutoAL's run from ``candidates`` to
    the first ALBL field, ALBL's to the first SelectAL field, SelectAL's to ``out``."""
    names = list(CONFIG_FIELDS)
    bounds = [names.index(n) for n in ("candidates", "albl_batch_mode", "selectal_removal", "out")]
    groups = {s: names[a:b] for s, a, b in zip(SECTIONS, bounds, bounds[1:])}
    groups["albl"].insert(0, "candidates")  # --candidates is ALBL's expert pool as well
    return groups


#: Config-file sections of method settings, and the prefix their keys carry as RunConfig fields.
SECTIONS = {"autoal": "", "albl": "albl_", "selectal": "selectal_"}


def flatten_sections(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """``[albl] delta = 0.2`` -> ``albl_delta = 0.2``: method sections onto the flat RunConfig fields.

    In a section a key may drop the method's prefix (``delta``) or keep it (``albl_delta``), and
    must be one of that method's settings. Flat keys stay valid, so old files read as before. A
    setting given twice (flat and in a section, or in two sections) is refused.
    """
    flat: dict[str, Any] = {}
    groups = _section_fields()
    for key, value in raw.items():
        if not isinstance(value, dict):
            continue
        section = key.lower()
        if section not in SECTIONS:
            raise UserError(f"{where}: unknown section [{key}]; the sections are "
                            f"{', '.join(f'[{s}]' for s in SECTIONS)} (other settings go at the top, unsectioned)")
        for inner, inner_value in value.items():
            name = inner.replace("-", "_")
            field_name = next((n for n in (SECTIONS[section] + name, name) if n in groups[section]), None)
            if field_name is None:
                short = [n.removeprefix(SECTIONS[section]) for n in groups[section]]
                raise UserError(f"{where}: [{section}] has no setting {inner!r}; its settings: {', '.join(short)}")
            if field_name in flat:
                raise UserError(f"{where}: {field_name} is set twice (in [{section}] and before); set it once")
            flat[field_name] = inner_value
    for key, value in raw.items():
        if isinstance(value, dict):
            continue
        name = key.replace("-", "_")
        if name in flat:
            raise UserError(f"{where}: {name} is set twice (at the top and in a section); set it once")
        flat[key] = value
    return flat


def validate_settings(raw: dict[str, Any], where: str) -> dict[str, Any]:
    settings = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name in CANDIDATE_FLAGS:  # a candidate's parameter by flag name: resolve_config applies it
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{where}: {key} must be float, got {value!r}")
            settings[name] = float(value)
            continue
        if name not in CONFIG_FIELDS:
            raise UserError(f"{where}: unknown setting {key!r}; known: {', '.join(sorted(CONFIG_FIELDS))}")
        expected = type(CONFIG_FIELDS[name].default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise UserError(f"{where}: {key} must be {expected.__name__}, got {value!r}")
        choices = CONFIG_FIELDS[name].metadata.get("choices")
        if choices and value not in choices:  # argparse checks flags; files and sweeps come through here
            raise UserError(f"{where}: {key} must be one of {', '.join(choices)}, got {value!r}")
        settings[name] = value
    return settings


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Defaults < --config file < flags."""
    settings: dict[str, Any] = {}
    if args.config:
        settings.update(read_config_file(args.config))
    settings.update({k: v for k, v in vars(args).items() if k in CONFIG_FIELDS or k in CANDIDATE_FLAGS})
    return check(RunConfig(**apply_candidate_flags(settings)))


def apply_candidate_flags(settings: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    """``settings`` without the CANDIDATE_FLAGS keys, their values written into the specs of
    ``strategy`` and ``candidates`` that name their candidate: ``strategy = diversity`` with
    ``diversity_temperature = 0.1`` becomes ``strategy = diversity:T=0.1``, which config.json records.

    A spec that already sets the parameter to another value is refused (two answers to one
    question). ``strict``: also refuse a flag that no spec uses (it would change nothing); a sweep,
    whose config is shared by methods that do and do not use the candidate, passes False.
    """
    from autoal.registry import format_value, get_candidate, spec_base, split_spec, split_specs

    settings = dict(settings)
    for flag, (candidate, param) in CANDIDATE_FLAGS.items():
        if flag not in settings:
            continue
        value = settings.pop(flag)
        option = "--" + flag.replace("_", "-")
        used = False

        def rewrite(spec: str) -> str:
            nonlocal used
            if spec_base(spec) != candidate:
                return spec
            used = True
            base, given = split_spec(spec)
            if param in given and _parsed(candidate, param, given[param]) != value:
                raise UserError(f"{option} {value} contradicts {spec}; give {param} once, in one of them")
            given[param] = format_value(value)
            return get_candidate(f"{base}:{','.join(f'{k}={v}' for k, v in given.items())}").name  # canonical

        for key in ("strategy", "candidates"):
            text = settings.get(key, CONFIG_FIELDS[key].default)
            rewritten = ",".join(rewrite(s) for s in split_specs(text)) if key == "candidates" else rewrite(text)
            if rewritten != text:
                settings[key] = rewritten
        if strict and not used:
            raise UserError(f"{option} sets a parameter of the {candidate} candidate, but neither --strategy nor "
                            f"--candidates names {candidate}; add it there or drop {option}")
    return settings


def _parsed(candidate: str, param: str, text: str) -> Any:
    from autoal.registry import get_candidate

    return get_candidate(f"{candidate}:{param}={text}").values[param]


def check(cfg: RunConfig) -> RunConfig:
    """Reject settings that cannot make a run, with the fix in the message."""
    positive = {"budget": cfg.budget, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                "eval_batch_size": cfg.eval_batch_size}
    for name, value in positive.items():
        if value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name, value in {"init_size": cfg.init_size, "rounds": cfg.rounds, "mc_samples": cfg.mc_samples,
                        "min_steps": cfg.min_steps, "aug_views": cfg.aug_views,
                        "pool_subset": cfg.pool_subset}.items():
        if value < 0:
            raise UserError(f"--{name.replace('_', '-')} must not be negative, got {value}")
    if cfg.init_size < 1:
        raise UserError("--init-size must be at least 1: the first model needs labeled data")
    if not 0.0 <= cfg.dropout < 1.0:
        raise UserError(f"--dropout must be in [0, 1), got {cfg.dropout}")
    for f in fields(cfg):  # nan and inf pass every comparison below unnoticed (nan < 0 is False)
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
    for name in ("lr", "search_lr", "unroll_lr"):  # a step size of 0 never trains
        if getattr(cfg, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if cfg.weight_decay < 0:
        raise UserError(f"--weight-decay must not be negative, got {cfg.weight_decay}")
    check_size(cfg.dataset, cfg.size)
    if cfg.channels != 0 and not cfg.dataset.strip().startswith("folder:"):
        raise UserError(f"--channels {cfg.channels} applies to folder:PATH data only; {cfg.dataset} keeps its "
                        f"own channels: drop --channels")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", cfg.device):
        raise UserError(f"--device {cfg.device!r} is not a device; use auto, cpu, cuda or cuda:N")
    return cfg


def check_size(dataset: str, size: int) -> None:
    """Refuse a --size that the dataset would ignore: config.json would record a size the run never used.

    MedMNIST sets load the file of that size and the torchvision sets check it against their native
    size (both in their loaders); digits and npz data keep the images as stored, so only the default passes.
    """
    key = dataset.strip()
    default = CONFIG_FIELDS["size"].default
    if size == default or not (key == "digits" or key.startswith("npz:")):
        return
    what = "sklearn's digits are 8x8 images" if key == "digits" else "an npz file's images keep their stored size"
    raise UserError(f"--size {size} does not apply to {key}: {what} and are never resized; drop --size "
                    f"(it picks a MedMNIST file: 28, 64, 128 or 224)")


def default_run_dir(cfg: RunConfig) -> Path:
    dataset = Path(cfg.dataset[4:]).stem if cfg.dataset.startswith("npz:") else cfg.dataset
    if cfg.dataset.startswith("folder:"):  # the folder's own name: a path would nest the run folder
        dataset = Path(cfg.dataset[len("folder:"):]).expanduser().resolve().name
    if dataset in MEDMNIST_2D and cfg.size != 28:
        dataset += f"_{cfg.size}"
    # diversity:T=0.1 -> diversity-T-0.1: TensorBoard's --logdir reads ':' as name:path
    strategy = re.sub(r"[:=,]", "-", cfg.strategy)
    return Path("runs") / f"{dataset}-{strategy}-seed{cfg.seed}"


#: Settings that say where a run happens, not what it computes: they may change on resume.
LOCATION_ONLY = frozenset({"device", "out", "data_root"})


def config_differences(saved: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """Settings that make the saved run a different run than the requested one ("name: saved -> requested").

    A setting missing from an older config.json counts as its default (fields added later).
    """
    diffs = []
    for name in sorted(set(saved) | set(requested)):
        if name in LOCATION_ONLY or name not in CONFIG_FIELDS:
            continue
        default = CONFIG_FIELDS[name].default
        old, new = saved.get(name, default), requested.get(name, default)
        if old != new:
            diffs.append(f"{name}: {old!r} -> {new!r}")
    return diffs


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The fields, plus (under PARAMETERS_KEY) every parameter of the candidates the run uses, defaults
    included; ``from_dict`` and the resume checks read only the fields."""
    out = asdict(cfg)
    params = candidate_parameters(cfg)
    if params:
        out[PARAMETERS_KEY] = params
    return out


def candidate_parameters(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Resolved parameters of the candidates ``cfg`` runs: its strategy when that is a candidate, else
    its --candidates (and SelectAL's uncertainty strategy). Specs that do not resolve (a plug-in
    not installed here) are left out: recording must not fail where ``check`` did not look."""
    from autoal.registry import is_candidate, resolved_parameters, split_specs

    if is_candidate(cfg.strategy):
        specs = [cfg.strategy]
    else:
        specs = split_specs(cfg.candidates) + ([cfg.selectal_uncertainty] if cfg.strategy == "selectal" else [])
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        try:
            out.update(resolved_parameters([spec]))
        except (KeyError, UserError):
            continue
    return out


def from_dict(raw: dict[str, Any]) -> RunConfig:
    known = {k: v for k, v in raw.items() if k in CONFIG_FIELDS}
    return RunConfig(**known)
