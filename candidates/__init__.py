"""Built-in candidate query strategies; importing this package registers them all.

Every strategy is a pure function of PoolOutputs with one sign convention: higher = query first.
"""

from candidates import badge, baseline, batchbald, bayesian, diversity, typiclust, uncertainty  # noqa: F401

__all__ = ["badge", "baseline", "batchbald", "bayesian", "diversity", "typiclust", "uncertainty"]
