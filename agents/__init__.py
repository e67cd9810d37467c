"""Recommendation policies: classic baselines and Stable-Baselines3 agents behind one batched protocol.

- :mod:`agents.policy`: the :class:`Policy` protocol (SB3's ``predict``), :func:`act` (DESIGN.md's name:
  ``predict`` with action masks for the policies that take them), slate selection.
- :mod:`agents.baselines`: Random, MostPopular, Greedy, OracleGreedy, EpsilonGreedy, LinUCB, MMR.
- :mod:`agents.factory`: :func:`~agents.factory.make_policy` by name or from a saved agent directory,
  built from spaces plus what a policy needs passed in (the logs, the simulator's scorer).
- :mod:`agents.config`, :mod:`agents.train`, :mod:`agents.checkpoint`: SB3 training from RL-Zoo-style
  YAML (``agents/hyperparams``) on the envs the caller built, pickle-free agent checkpoints.

This package depends only on ``user_models``, Gymnasium and SB3; ``recsim_env`` builds the envs and
evaluates (``recsim_env.offline.rollout``, the one evaluator), never the reverse.
- :mod:`agents.features`: the ``history`` observation's features extractor (item embeddings + GRU).

Heavy modules (SB3, torch models) load only when their submodule is imported.
"""

from agents.policy import ActionLayout, OnlinePolicy, Policy, act, select_slate

__all__ = ["ActionLayout", "OnlinePolicy", "Policy", "act", "select_slate"]
