"""The candidate registry: strategies register by name, the framework looks them up by name.

A candidate is a pure function of PoolOutputs::

    @register_candidate("entropy", needs={"probs"})
    def entropy(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor: ...

returning a per-sample score of shape (N,), higher = query first. A set-valued strategy
(``kind="set"``) returns the ``budget`` chosen row indices instead; ``run_candidate`` turns that
into a 0/1 column so every candidate looks the same to AutoAL.

Built-in strategies live in the ``candidates`` package; third-party packages register theirs by
declaring an entry point in the group ``autoal.candidates`` that points at the module holding
their decorated functions.

A candidate may declare parameters (typed, with defaults, validated), which the function takes as
keyword arguments::

    @register_candidate("diversity", needs={"embeddings"}, kind="set",
                        params={"T": Param(0.5, "temperature", minimum=0.0)})
    def diversity(out, *, budget, generator, T): ...

Wherever a candidate is named (``--strategy``, ``--candidates``, config files, the comparison
runner's methods) the spec ``name:key=value,key=value`` sets them: ``diversity:T=0.1``. Its
canonical form keeps only the values that differ from the defaults (``diversity:T=0.5`` is
``diversity``), so one candidate has one name in records and duplicate checks.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Callable, Literal

import torch
from torch import Tensor

from autoal.errors import UserError
from autoal.outputs import NEEDS, PoolOutputs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "autoal.candidates"
CandidateFn = Callable[..., Tensor]


ParamValue = int | float | str | bool


@dataclass(frozen=True)
class Param:
    """A candidate's parameter: its type is the default's; bounds are inclusive."""

    default: ParamValue
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if type(self.default) not in (int, float, str, bool):
            raise ValueError(f"a parameter's default must be int, float, str or bool, got {self.default!r}")
        self.validate(self.default)  # a default outside its own bounds is a registration bug

    @property
    def type(self) -> type:
        return type(self.default)

    def describe(self, name: str) -> str:
        """``T (float >= 0.0, default 0.5)``: what the error messages list as valid."""
        rules = [self.type.__name__]
        if self.choices:
            rules.append("one of " + "|".join(self.choices))
        if self.minimum is not None:
            rules.append(f">= {self.minimum}")
        if self.maximum is not None:
            rules.append(f"<= {self.maximum}")
        return f"{name} ({' '.join(rules)}, default {format_value(self.default)})"

    def parse(self, text: str) -> ParamValue:
        """The value of ``text`` (from a spec) as this parameter's type; ValueError if it is not one."""
        text = text.strip()
        if self.type is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("not true or false")
            return lowered in ("true", "1", "yes")
        try:
            value = self.type(text)
        except ValueError:  # int("0.5"), float("x")
            raise ValueError(f"expected {self.type.__name__}") from None
        return self.validate(value)

    def validate(self, value: ParamValue) -> ParamValue:
        """``value`` if it is of the type and within the bounds (an int is a valid float); else ValueError."""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not self.type:
            raise ValueError(f"expected {self.type.__name__}")
        if self.type is float and not math.isfinite(value):
            raise ValueError("not a finite number")
        if self.choices and value not in self.choices:
            raise ValueError("not one of the choices")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"below {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"above {self.maximum}")
        return value


def format_value(value: ParamValue) -> str:
    """A parameter value as it is written in a spec (``repr`` of a float round-trips exactly)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Candidate:
    """A registered candidate; from ``get_candidate(spec)`` with its parameters resolved.

    ``name`` is the canonical spec (``diversity:T=0.1``), ``base`` the registered name, ``values``
    every declared parameter's value (defaults filled in): what ``fn`` is called with.
    """

    name: str
    fn: CandidateFn
    needs: frozenset[str]
    kind: Literal["score", "set"]
    params: dict[str, Param] = field(default_factory=dict, hash=False)
    values: dict[str, ParamValue] = field(default_factory=dict, hash=False)
    base: str = ""


_REGISTRY: dict[str, Candidate] = {}
_loaded = False
#: Registered names: none of the characters that join specs and lists (``:`` ``,`` ``=`` ``@`` ``+``).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]+")


def register_candidate(name: str, *, needs: set[str] | frozenset[str] = frozenset(),
                       kind: Literal["score", "set"] = "score",
                       params: dict[str, Param] | None = None) -> Callable[[CandidateFn], CandidateFn]:
    """Decorator that registers ``fn`` under ``name``; a second registration of a name fails.

    ``params``: the candidate's parameters by name; ``fn`` takes each as a keyword argument and is
    always called with all of them (defaults filled in), so the declared default is the only one.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"candidate name {name!r} may hold only letters, digits, '_', '.' and '-'")
    unknown = set(needs) - NEEDS
    if unknown:
        raise ValueError(f"candidate {name!r} needs unknown outputs {sorted(unknown)}; known: {sorted(NEEDS)}")
    if kind not in ("score", "set"):
        raise ValueError(f"candidate {name!r}: kind must be 'score' or 'set', got {kind!r}")
    params = dict(params or {})
    for key, param in params.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or not isinstance(param, Param):
            raise ValueError(f"candidate {name!r}: parameter {key!r} needs an identifier name and a Param")

    def decorate(fn: CandidateFn) -> CandidateFn:
        if name in _REGISTRY:
            raise ValueError(f"candidate {name!r} is already registered by {_REGISTRY[name].fn.__module__}")
        signature = inspect.signature(fn).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values())
        missing = [key for key in params if key not in signature and not takes_any]
        if missing:  # caught at import, not at the first round that calls it
            raise ValueError(f"candidate {name!r} declares parameters {missing} its function does not take")
        _REGISTRY[name] = Candidate(name, fn, frozenset(needs), kind, params,
                                    {k: p.default for k, p in params.items()}, name)
        return fn

    return decorate


def _load_all() -> None:
    """Import the built-in families and every installed plug-in, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import candidates  # noqa: F401  (importing registers the built-ins)

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plug-in must not take the framework down
            log.warning("could not load candidate plug-in %s (%s): %s", ep.name, ep.value, exc)


def list_candidates() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``name:key=value,key=value`` -> (name, {key: value text}); a bare name has no settings.

    Raises UserError for a malformed pair or a key given twice (types are checked by the candidate).
    """
    base, colon, rest = spec.strip().partition(":")
    base = base.strip()
    settings: dict[str, str] = {}
    for pair in rest.split(","):
        if not pair.strip():
            continue
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UserError(f"candidate spec {spec.strip()!r}: {pair.strip()!r} is not key=value "
                            f"(the form is name:key=value,key=value)")
        if key in settings:
            raise UserError(f"candidate spec {spec.strip()!r} sets {key} twice; set it once")
        settings[key] = text.strip()
    if colon and not settings:
        raise UserError(f"candidate spec {spec.strip()!r}: nothing after ':'; give key=value or drop the ':'")
    return base, settings


def spec_base(spec: str) -> str:
    """The registered name a spec starts with: ``diversity:T=0.1`` -> ``diversity``."""
    return spec.partition(":")[0].strip()


def canonical_spec(base: str, params: dict[str, Param], values: dict[str, ParamValue]) -> str:
    """``base:key=value,...`` with only the values that differ from their defaults, in declared order."""
    changed = [f"{k}={format_value(values[k])}" for k, p in params.items() if values[k] != p.default]
    return f"{base}:{','.join(changed)}" if changed else base


def get_candidate(name: str) -> Candidate:
    """The candidate a name or spec (``diversity:T=0.1``) denotes, its parameters resolved.

    An unknown registered name raises KeyError (listing the known ones); a bad parameter name or
    value raises UserError listing the candidate's valid parameters.
    """
    _load_all()
    base, given = split_spec(name)
    try:
        cand = _REGISTRY[base]
    except KeyError:
        raise KeyError(f"unknown candidate {base!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    if not given:
        return cand
    valid = "; ".join(p.describe(k) for k, p in cand.params.items())
    values = dict(cand.values)
    for key, text in given.items():
        if key not in cand.params:
            offer = f"its parameters: {valid}" if valid else f"it takes none; name it as plain {base}"
            raise UserError(f"candidate {base!r} has no parameter {key!r}; {offer}")
        try:
            values[key] = cand.params[key].parse(text)
        except ValueError as exc:
            raise UserError(f"candidate {base!r}: {key}={text} is invalid ({exc}); "
                            f"its parameters: {valid}") from None
    return Candidate(canonical_spec(base, cand.params, values), cand.fn, cand.needs, cand.kind,
                     cand.params, values, base)


def is_candidate(spec: str) -> bool:
    """Whether ``spec`` names a registered candidate (its parameters are not checked here)."""
    _load_all()
    return spec_base(spec) in _REGISTRY


def split_specs(text: str) -> list[str]:
    """A comma-separated list of specs, where a spec's own settings are comma-separated too.

    ``entropy,diversity:T=0.1,N=3,margin`` -> ``["entropy", "diversity:T=0.1,N=3", "margin"]``:
    a piece that starts ``key=value`` (an '=' before any '@', and no ':'; no registered name holds
    '=') continues the spec before it when that one has settings and no '@' yet. Empty pieces are
    dropped. (The comparison runner's ``@`` overrides may follow the last setting:
    ``batchbald:samples=8,max_configs=16@epochs=2``.)
    """
    specs: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        continues = "=" in piece.partition("@")[0] and ":" not in piece
        if continues and specs and ":" in specs[-1] and "@" not in specs[-1]:
            specs[-1] += "," + piece
        else:
            specs.append(piece)
    return specs


def parse_candidates(text: str) -> list[str]:
    """``--candidates`` as canonical specs in the given order (empty entries, e.g. a trailing comma, dropped).

    The one reading of the flag for AutoAL, ALBL and SelectAL, so all three refuse the same input
    with the same one-line UserError: an empty list, a name given twice (AutoAL's records are keyed
    by name, so a second column would lose its weight), an unknown name, a bad parameter.
    Entries may carry parameters: ``entropy,diversity:T=0.1,coreset``.
    """
    return check_candidates(split_specs(text))


def check_candidates(names: list[str] | tuple[str, ...]) -> list[str]:
    """``names`` as canonical specs if every one is registered and distinct and there is at least
    one; else UserError. ``diversity`` and ``diversity:T=0.5`` are the same candidate, named twice."""
    if not names:
        raise UserError("--candidates is empty; name at least one candidate strategy")
    canonical = []
    for name in names:
        try:
            canonical.append(get_candidate(name).name)
        except KeyError as exc:
            raise UserError(f"--candidates: {exc.args[0]}") from None
        except UserError as exc:
            raise UserError(f"--candidates: {exc}") from None
    twice = sorted({n for n in canonical if canonical.count(n) > 1})
    if twice:
        raise UserError(f"--candidates names a strategy twice ({', '.join(twice)} in {','.join(names)}); "
                        f"name each once")
    return canonical


def resolved_parameters(specs: list[str] | tuple[str, ...]) -> dict[str, dict[str, ParamValue]]:
    """Every declared parameter's value (defaults included) of each spec that has parameters,
    keyed by canonical spec: what a run's config.json records, so a later change of a default
    cannot make an old run look as if it had used the new one."""
    out: dict[str, dict[str, ParamValue]] = {}
    for spec in specs:
        cand = get_candidate(spec)
        if cand.params:
            out[cand.name] = dict(cand.values)
    return out


def needs_of(names: list[str] | tuple[str, ...]) -> frozenset[str]:
    """The union of what the named candidates need: all the inference has to compute."""
    return frozenset().union(*(get_candidate(n).needs for n in names)) if names else frozenset()


def _call(name: str, outputs: PoolOutputs, budget: int,
          seed_or_gen: int | torch.Generator) -> tuple[Candidate, Tensor, torch.Generator]:
    """Run a candidate with the budget clipped to the pool; an int seeds a fresh CPU generator.

    Returns the generator too: ``candidate_choice`` breaks the ranking's ties with what is left of it.
    """
    cand = get_candidate(name)
    gen = seed_or_gen if isinstance(seed_or_gen, torch.Generator) else torch.Generator().manual_seed(int(seed_or_gen))
    return cand, cand.fn(outputs, budget=min(budget, outputs.n), generator=gen, **cand.values), gen


def candidate_choice(name: str, outputs: PoolOutputs, *, budget: int,
                     generator: int | torch.Generator = 0) -> Tensor:
    """The ``budget`` distinct rows the candidate would query, best first.

    Tied scores are ordered at random by the same generator the candidate drew from, after the
    candidate has run: var_ratio has at most T+1 distinct values, so "lowest row first" would let
    the pool's file order choose much of a batch.
    """
    cand, result, gen = _call(name, outputs, budget, generator)
    return result.long() if cand.kind == "set" else top_k_rows(result, min(budget, outputs.n), generator=gen)


def run_candidate(name: str, outputs: PoolOutputs, *, budget: int,
                  generator: int | torch.Generator = 0) -> Tensor:
    """Per-sample values (N,) of a candidate; set-valued candidates give a 0/1 column."""
    cand, result, _ = _call(name, outputs, budget, generator)
    if cand.kind == "score":
        return result
    column = torch.zeros(outputs.n, dtype=torch.float32, device=result.device)
    column[result.long()] = 1.0
    return column


def top_k_rows(scores: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """Rows (k,) of the k highest scores (N,), best first, on the device of ``scores``.

    With a ``generator``, tied scores are ordered by a random permutation drawn from it: permute
    the rows, sort stably, map back. The picks are exactly k distinct rows, the same for the same
    generator state, and among equal scores every row is equally likely. The generator advances
    by one permutation of N (a CPU generator also serves scores on CUDA).

    ``generator=None`` breaks ties by the lower row (stable, device independent). It exists for
    callers that hold no generator; every selector has its round's generator and should pass it.
    """
    n = scores.shape[0]
    if generator is None:
        return torch.sort(scores.float(), descending=True, stable=True).indices[:k]
    perm = torch.randperm(n, generator=generator, device=generator.device).to(scores.device)  # (N,)
    order = torch.sort(scores.float()[perm], descending=True, stable=True).indices[:k]  # positions in perm
    return perm[order]
