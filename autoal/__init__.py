"""autoal: automated active-learning strategy search.

The framework (data, models, pool inference, the loop, selectors, logging, CLI) lives here;
the candidate query strategies live in the sibling package ``candidates``.
"""

from autoal.outputs import PoolOutputs
from autoal.registry import get_candidate, list_candidates, register_candidate, run_candidate

__all__ = ["PoolOutputs", "get_candidate", "list_candidates", "register_candidate", "run_candidate"]
__version__ = "0.1.0"
