"""Train an agent (SB3, or the on-device ``torch_ppo``) on the simulator, measured by the one evaluator.

The glue between :func:`agents.train.train` (which takes the envs its caller built, like SB3's
``PPO(policy, env)``) and the simulator: it builds the training and evaluation VecEnvs from one
:class:`~recsim_env.config.EnvConfig` and measures the final agent with
:func:`recsim_env.offline.rollout.evaluate_policy`, on a population apart from the training one.
``recsim agent train``, the demo and ``scripts/train_agents.py`` all train through it.
"""

from __future__ import annotations

import os
from pathlib import Path

from agents.config import TORCH_PPO, TrainConfig
from agents.train import EVAL_SEED_OFFSET, TrainResult, train, train_on_device
from recsim_env.config import EnvConfig
from recsim_env.factory import load_dataset, load_model
from recsim_env.offline.rollout import build_simulator, evaluate_policy
from recsim_env.sb3 import make_sb3_vec_env
from recsim_env.vector import RecSimVectorEnv
from user_models.data.artifact import SequenceDataset
from user_models.protocol import UserModel


def train_agent(
    config: TrainConfig,
    model: str | os.PathLike[str] | UserModel,
    data: str | os.PathLike[str] | SequenceDataset,
    env_config: EnvConfig,
    out: str | Path,
    *,
    seed: int = 0,
    progress: bool = True,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train ``config`` on ``config.n_envs`` simulated users of ``env_config``; write the run to ``out``.

    Periodic evaluations (``config.eval_freq``) and the final one use the population of seed
    ``seed + EVAL_SEED_OFFSET`` (never the training users); the final one runs ``config.n_eval_episodes``
    users through the offline evaluator, so its number is what ``recsim agent eval`` would report.
    The agent's networks run on ``env_config.device``. ``torch_ppo`` trains on the vector env's tensor
    path (:class:`~recsim_env.vector.RecSimVectorEnv`, no SB3 VecEnv), its periodic evaluations run
    ``n_eval_episodes`` rows of another vector env on the device.
    """
    dataset = load_dataset(data)
    user_model = load_model(model, dataset, env_config.device)
    eval_seed = seed + EVAL_SEED_OFFSET
    if config.algo == TORCH_PPO:
        env: object = RecSimVectorEnv(config.n_envs, user_model, dataset, env_config)
        eval_env: object = RecSimVectorEnv(config.n_eval_episodes, user_model, dataset, env_config)
        run = train_on_device
    else:
        env = make_sb3_vec_env(user_model, dataset, env_config, config.n_envs, seed)
        eval_env = make_sb3_vec_env(
            user_model, dataset, env_config, min(config.n_eval_episodes, config.n_envs), eval_seed
        )
        run = train
    final_population = build_simulator(user_model, dataset, env_config, config.n_eval_episodes)
    return run(
        config,
        env,
        out,
        eval_env=eval_env,
        evaluate=lambda agent: evaluate_policy(final_population, agent, eval_seed).to_json(),
        dataset=dataset,
        seed=seed,
        device=env_config.device,
        progress_bar=progress,
        max_seconds=max_seconds,
        record={"model": os.fspath(model) if isinstance(model, str | os.PathLike) else type(model).__name__,
                "data": os.fspath(data) if isinstance(data, str | os.PathLike) else dataset.meta.name,
                "env": env_config.to_mapping()},
    )
