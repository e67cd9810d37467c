"""Offline evaluation: everything that runs policies on a fixed population and measures them.

- :mod:`~recsim_env.offline.rollout`: the one rollout harness (a fixed population, a policy, common
  random numbers, optional recording) and the one evaluator; every tool below runs through it.
- :mod:`~recsim_env.offline.benchmark`: policies x seeds, metrics with bootstrap CIs, reports.
- :mod:`~recsim_env.offline.fidelity`: the simulator against held-out logs and the ground-truth world.
- :mod:`~recsim_env.offline.ope` / :mod:`~recsim_env.offline.ope_simulator`: off-policy estimators and
  their check against the simulator's ground truth.
- :mod:`~recsim_env.offline.metrics`, :mod:`~recsim_env.offline.stats`, :mod:`~recsim_env.offline.report`:
  per-episode metrics, the bootstrap (the one interval method), tables and plots.
- :mod:`~recsim_env.offline.minari_export`: simulated sessions as a Minari dataset.
"""
