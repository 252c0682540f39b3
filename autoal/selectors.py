"""Selectors: the one surface the loop queries through.

    selector.select(ctx) -> Selection(indices, info)

The loop never asks which selector it holds. A single candidate, AutoAL, ALBL and SelectAL all
implement it; selectors with memory keep it in ``state_dict()``, which is checkpointed with the
run. ``info`` holds what the selector wants recorded for the round (scalars go to TensorBoard).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from autoal.errors import UserError
from autoal.learner import Learner
from autoal.models import Classifier
from autoal.outputs import PoolOutputs
from autoal.registry import candidate_choice, get_candidate, is_candidate, list_candidates


@dataclass
class RoundContext:
    """Everything a selector may look at in one round."""

    round: int
    budget: int
    outputs: PoolOutputs  # of the task model over the unlabeled pool, rows aligned with ``unlabeled``
    unlabeled: Tensor  # (N_u,) pool indices
    labeled: Tensor  # (N_l,) pool indices
    model: Classifier  # the task model trained this round
    learner: Learner
    seed: int  # this round's selection seed; ``generator`` is seeded with it
    generator: torch.Generator
    writer: Any = None  # a SummaryWriter for selectors that log more than scalars (or None)


@dataclass
class Selection:
    indices: Tensor  # (budget,) distinct pool indices
    info: dict[str, Any] = field(default_factory=dict)


class Selector:
    """Base class: override ``select``; stateful selectors override the state methods too."""

    name: str = "selector"
    #: The PoolOutputs fields ``select`` reads; the loop computes exactly these.
    needs: frozenset[str] = frozenset()

    def select(self, ctx: RoundContext) -> Selection:
        raise NotImplementedError

    def after_labeling(self, ctx: RoundContext, indices: Tensor, labels: Tensor) -> dict[str, Any]:
        """Called once the oracle has labeled ``indices``; returns extra info for the round's record."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class CandidateSelector(Selector):
    """Query with one registered candidate: its top-``budget`` rows (or its chosen set).

    ``candidate`` may be a spec with parameters (``diversity:T=0.1``); ``name`` is its canonical form.
    """

    def __init__(self, candidate: str):
        cand = get_candidate(candidate)  # a bad parameter raises UserError here, before the run starts
        self.name = cand.name
        self.needs = cand.needs

    def select(self, ctx: RoundContext) -> Selection:
        rows = candidate_choice(self.name, ctx.outputs, budget=ctx.budget, generator=ctx.generator)
        return Selection(ctx.unlabeled[rows.cpu()])


#: Selectors beyond single candidates: name -> factory(config) -> Selector.
SELECTOR_FACTORIES: dict[str, Callable[[Any], Selector]] = {}


def register_selector(name: str) -> Callable[[Callable[[Any], Selector]], Callable[[Any], Selector]]:
    def decorate(factory: Callable[[Any], Selector]) -> Callable[[Any], Selector]:
        if name in SELECTOR_FACTORIES:
            raise ValueError(f"selector {name!r} is already registered")
        SELECTOR_FACTORIES[name] = factory
        return factory

    return decorate


def known_strategies() -> list[str]:
    _load_selectors()
    return sorted(SELECTOR_FACTORIES) + list_candidates()


def make_selector(strategy: str, config: Any) -> Selector:
    """The selector for ``--strategy``: a search method or any registered candidate."""
    _load_selectors()
    if strategy in SELECTOR_FACTORIES:
        return SELECTOR_FACTORIES[strategy](config)
    if is_candidate(strategy):  # a registered name, possibly with parameters (name:key=value,...)
        return CandidateSelector(strategy)
    raise UserError(f"unknown strategy {strategy!r}; known: {', '.join(known_strategies())}")


def _load_selectors() -> None:
    import autoal.methods  # noqa: F401  (importing registers AutoAL, ALBL, SelectAL)
