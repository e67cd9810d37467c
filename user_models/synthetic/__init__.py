"""The built-in synthetic world: ground truth for the learned simulator and the default dataset.

- :class:`SyntheticConfig`: every parameter, documented.
- :class:`SyntheticWorld`: the world as a :class:`~user_models.protocol.UserModel` (steppable on any
  device), with :meth:`~SyntheticWorld.sample_users` and :meth:`~SyntheticWorld.from_dataset`.
- :func:`generate_logs` / :func:`synthesize_dataset`: organic browsing logs and the dataset artifact;
  :func:`generate_slate_logs` / :func:`synthesize_impression_dataset`: the same, continued by a logged
  slate session per user (impression logs).
- :class:`CascadeWorld` (:mod:`~user_models.synthetic.cascade`): a second, structurally different world
  (cascade scan, position decay, bait items, satisfaction-driven leaving) that shares no code with the
  simulator; :func:`write_cascade_logs` / :func:`synthesize_cascade_dataset` write its shop-style logs
  (one row per funnel stage, plus impressions) under logging policy ``A`` or ``B``.
"""

from user_models.synthetic.cascade import CascadeState, CascadeStep, CascadeWorld
from user_models.synthetic.cascade_config import CASCADE_WORLD_VERSION, CascadeConfig
from user_models.synthetic.cascade_logs import (
    LOGGING_POLICIES,
    CascadeLogs,
    LoggingPolicy,
    generate_cascade_logs,
    synthesize_cascade_dataset,
    write_cascade_logs,
)
from user_models.synthetic.config import BEHAVIORS, SyntheticConfig
from user_models.synthetic.logs import SyntheticLogs, generate_logs, synthesize_dataset
from user_models.synthetic.slate_logs import SlateLogs, generate_slate_logs, synthesize_impression_dataset
from user_models.synthetic.world import SyntheticState, SyntheticWorld

__all__ = [
    "BEHAVIORS",
    "CASCADE_WORLD_VERSION",
    "LOGGING_POLICIES",
    "CascadeConfig",
    "CascadeLogs",
    "CascadeState",
    "CascadeStep",
    "CascadeWorld",
    "LoggingPolicy",
    "SyntheticConfig",
    "SlateLogs",
    "SyntheticLogs",
    "SyntheticState",
    "SyntheticWorld",
    "generate_cascade_logs",
    "generate_logs",
    "generate_slate_logs",
    "synthesize_cascade_dataset",
    "synthesize_dataset",
    "synthesize_impression_dataset",
    "write_cascade_logs",
]
