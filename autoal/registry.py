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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Literal

import torch
from torch import Tensor

from autoal.errors import UserError
from autoal.outputs import NEEDS, PoolOutputs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "autoal.candidates"
CandidateFn = Callable[..., Tensor]


@dataclass(frozen=True)
class Candidate:
    name: str
    fn: CandidateFn
    needs: frozenset[str]
    kind: Literal["score", "set"]


_REGISTRY: dict[str, Candidate] = {}
_loaded = False


def register_candidate(name: str, *, needs: set[str] | frozenset[str] = frozenset(),
                       kind: Literal["score", "set"] = "score") -> Callable[[CandidateFn], CandidateFn]:
    """Decorator that registers ``fn`` under ``name``; a second registration of a name fails."""
    unknown = set(needs) - NEEDS
    if unknown:
        raise ValueError(f"candidate {name!r} needs unknown outputs {sorted(unknown)}; known: {sorted(NEEDS)}")
    if kind not in ("score", "set"):
        raise ValueError(f"candidate {name!r}: kind must be 'score' or 'set', got {kind!r}")

    def decorate(fn: CandidateFn) -> CandidateFn:
        if name in _REGISTRY:
            raise ValueError(f"candidate {name!r} is already registered by {_REGISTRY[name].fn.__module__}")
        _REGISTRY[name] = Candidate(name, fn, frozenset(needs), kind)
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


def get_candidate(name: str) -> Candidate:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown candidate {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def parse_candidates(text: str) -> list[str]:
    """``--candidates`` as registered names in the given order (empty entries, e.g. a trailing comma, dropped).

    The one reading of the flag for AutoAL, ALBL and SelectAL, so all three refuse the same input
    with the same one-line UserError: an empty list, a name given twice (AutoAL's records are keyed
    by name, so a second column would lose its weight), an unknown name.
    """
    return check_candidates([n.strip() for n in text.split(",") if n.strip()])


def check_candidates(names: list[str] | tuple[str, ...]) -> list[str]:
    """``names`` as a list if every one is registered and distinct and there is at least one; else UserError."""
    if not names:
        raise UserError("--candidates is empty; name at least one candidate strategy")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"--candidates names a strategy twice ({', '.join(twice)} in {','.join(names)}); "
                        f"name each once")
    for name in names:
        try:
            get_candidate(name)
        except KeyError as exc:
            raise UserError(f"--candidates: {exc.args[0]}") from None
    return list(names)


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
    return cand, cand.fn(outputs, budget=min(budget, outputs.n), generator=gen), gen


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
