"""Selectors that choose among candidates: each module registers itself with ``register_selector``."""

from autoal.methods import albl, selectal  # noqa: F401  (importing registers them)
from autoal.methods import search  # noqa: F401
