"""Train an SB3 agent on the simulator: one function that reads top to bottom.

Output directory layout::

    OUT/final/                                the final agent (``recsim agent eval --policy OUT``)
    OUT/best/                                 the agent with the best evaluation return so far
    OUT/checkpoints/step_<N>/                 periodic checkpoints
    OUT/tensorboard/                          TensorBoard logs (``tensorboard --logdir OUT/tensorboard``)
    OUT/evaluations.npz                       EvalCallback's record (timesteps, returns, lengths)
    OUT/train.json                            config, seed, device, steps/s, final evaluation

Evaluation uses a *fixed population*: a separate env whose rows are reseeded with the same seed before
every evaluation, so successive evaluations meet the same users and differences are the agent's.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from agents.checkpoint import build_algorithm, save_agent
from agents.config import TrainConfig
from agents.envs import SimulatorSpec, make_vec_env
from agents.evaluate import EvalResult, evaluate

FINAL = "final"
"""Subdirectory of a training run holding the final agent."""
EVAL_SEED_OFFSET = 10_000
"""The evaluation population's seed is the training seed plus this, so the two never share users."""


class FixedPopulation(VecEnvWrapper):
    """Reseed the wrapped VecEnv with the same seed at every ``reset``: the same users every evaluation."""

    def __init__(self, venv: VecEnv, seed: int) -> None:
        super().__init__(venv)
        self.population_seed = seed

    def reset(self) -> Any:
        self.venv.seed(self.population_seed)
        return self.venv.reset()

    def step_wait(self) -> Any:
        return self.venv.step_wait()


class SaveAgent(BaseCallback):
    """Save the agent in the pickle-free format of :mod:`agents.checkpoint`.

    As ``callback_on_new_best`` of an EvalCallback it saves to ``path`` on each new best; as a training
    callback with ``every > 0`` it saves ``path/step_<N>`` every ``every`` calls (env steps / n_envs).
    """

    def __init__(self, config: TrainConfig, path: Path, every: int = 0) -> None:
        super().__init__()
        self.config = config
        self.path = path
        self.every = every

    def _on_step(self) -> bool:
        if self.every == 0:
            save_agent(self.model, self.config, self.path)
        elif self.n_calls % self.every == 0:
            save_agent(self.model, self.config, self.path / f"step_{self.num_timesteps}")
        return True


class StopAfter(BaseCallback):
    """Stop training once ``seconds`` of wall-clock time have passed (a training-time budget)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.start = 0.0

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()

    def _on_step(self) -> bool:
        return time.perf_counter() - self.start < self.seconds


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    out: Path
    timesteps: int
    """Env steps actually taken (fewer than ``n_timesteps`` when the time budget ran out)."""
    steps_per_second: float
    final_eval: EvalResult


def train(
    config: TrainConfig,
    simulator: SimulatorSpec,
    out: str | Path,
    seed: int = 0,
    device: str = "cpu",
    progress_bar: bool = True,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train ``config.algo`` on the simulator and write the agent and its logs to ``out``.

    Args:
        config: algorithm, env and run settings (see :func:`agents.config.load_train_config`).
        simulator: the user model and dataset the envs simulate.
        out: output directory (created; existing files are replaced).
        seed: seeds SB3 (policy init, sampling) and the training envs' populations.
        device: torch device of the agent's networks.
        progress_bar: show SB3's progress bar.
        max_seconds: stop training after this much wall-clock time even if ``n_timesteps`` is not
            reached (the steps actually taken are recorded).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    venv = make_vec_env(simulator, config.env_id, config.env_kwargs, config.n_envs, seed)
    eval_seed = seed + EVAL_SEED_OFFSET
    eval_env = FixedPopulation(
        make_vec_env(
            simulator, config.env_id, config.env_kwargs, min(config.n_eval_episodes, config.n_envs), eval_seed
        ),
        eval_seed,
    )
    item_init = None
    if config.features.init_item_embeddings:
        from agents.item_features import log_item_embeddings

        item_init = log_item_embeddings(simulator.dataset, config.features.item_dim, seed)
    model = build_algorithm(config, venv, seed, device, item_init, tensorboard_log=str(out / "tensorboard"))

    callbacks: list[BaseCallback] = []
    if config.eval_freq > 0:
        eval_class = EvalCallback
        if config.algo == "maskable_ppo":
            from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback

            eval_class = MaskableEvalCallback
        callbacks.append(
            eval_class(
                eval_env,
                n_eval_episodes=config.n_eval_episodes,
                eval_freq=max(config.eval_freq // config.n_envs, 1),
                log_path=str(out),
                deterministic=True,
                verbose=0,
                callback_on_new_best=SaveAgent(config, out / "best"),
            )
        )
    if config.checkpoint_freq > 0:
        callbacks.append(
            SaveAgent(config, out / "checkpoints", every=max(config.checkpoint_freq // config.n_envs, 1))
        )

    if max_seconds is not None:
        callbacks.append(StopAfter(max_seconds))
    start = time.perf_counter()
    with warnings.catch_warnings():
        # The eval env is FixedPopulation-wrapped on purpose; SB3 warns that its type differs.
        warnings.filterwarnings("ignore", message="Training and eval env are not of the same type")
        model.learn(
            config.n_timesteps,
            callback=CallbackList(callbacks),
            progress_bar=progress_bar,
            tb_log_name=config.algo,
        )
    elapsed = time.perf_counter() - start
    save_agent(
        model, config, out / FINAL, extra={"seed": seed, "device": device, "simulator": simulator.describe()}
    )

    final = evaluate(
        model, eval_env, config.n_eval_episodes, deterministic=True, use_masks=config.algo == "maskable_ppo"
    )
    record = {
        "config": config.to_json(),
        "seed": seed,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "simulator": simulator.describe(),
        "timesteps": int(model.num_timesteps),
        "seconds": elapsed,
        "steps_per_second": model.num_timesteps / elapsed,
        "final_eval": final.to_json(),
    }
    (out / "train.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    venv.close()
    eval_env.close()
    return TrainResult(out, int(model.num_timesteps), model.num_timesteps / elapsed, final)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
