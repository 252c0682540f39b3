"""Selectors that choose among candidates: each module registers itself with ``register_selector``."""
