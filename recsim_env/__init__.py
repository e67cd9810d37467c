"""recsim-env: a reinforcement-learning recommendation simulator with learned Transformer users.

Importing the package registers the Gymnasium ids ``RecSim-v0``, ``RecSim-LongTerm-v0``,
``RecSim-World-v0`` and ``RecSim-CascadeWorld-v0`` (see :mod:`recsim_env.registration`).
"""

from recsim_env.registration import register_envs

__version__ = "0.1.0"

register_envs()
