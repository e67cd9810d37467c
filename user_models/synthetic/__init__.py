"""The built-in synthetic world: ground truth for the learned simulator and the default dataset.

- :class:`SyntheticConfig`: every parameter, documented.
- :class:`SyntheticWorld`: the world as a :class:`~user_models.protocol.UserModel` (steppable on any
  device), with :meth:`~SyntheticWorld.sample_users` and :meth:`~SyntheticWorld.from_dataset`.
- :func:`generate_logs` / :func:`synthesize_dataset`: organic browsing logs and the dataset artifact.
"""

from user_models.synthetic.config import BEHAVIORS, SyntheticConfig
from user_models.synthetic.logs import SyntheticLogs, generate_logs, synthesize_dataset
from user_models.synthetic.world import SyntheticState, SyntheticWorld

__all__ = [
    "BEHAVIORS",
    "SyntheticConfig",
    "SyntheticLogs",
    "SyntheticState",
    "SyntheticWorld",
    "generate_logs",
    "synthesize_dataset",
]
