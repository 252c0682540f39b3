"""Built-in candidate query strategies; importing this package registers them all.

Every strategy is a pure function of PoolOutputs with one sign convention: higher = query first.
"""

from candidates import (  # noqa: F401
    badge,
    baseline,
    batchbald,
    bayesian,
    cluster_margin,
    consistency,
    diversity,
    learning_loss,
    typiclust,
    uncertainty,
)

__all__ = ["badge", "baseline", "batchbald", "bayesian", "cluster_margin", "consistency", "diversity", "learning_loss",
           "typiclust", "uncertainty"]
