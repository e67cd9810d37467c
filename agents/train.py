"""Train an SB3 agent on the simulator: one function that reads top to bottom (:func:`train`), and its
counterpart for the on-device ``torch_ppo`` (:func:`train_on_device`: the same outputs, a tensor env).

Output directory layout::

    OUT/final/                                the final agent (``recsim agent eval --policy OUT``)
    OUT/best/                                 the agent with the best evaluation return so far
    OUT/checkpoints/step_<N>/                 periodic checkpoints
    OUT/tensorboard/                          TensorBoard logs (``tensorboard --logdir OUT/tensorboard``)
    OUT/evaluations.npz                       EvalCallback's record (timesteps, returns, lengths)
    OUT/train.json                            config, seed, device, steps/s, final evaluation

The caller builds the envs, as with SB3's ``PPO(policy, env)``: a training VecEnv and an evaluation
VecEnv. The evaluation env is wrapped in :class:`FixedPopulation` (its rows are reseeded with the same
seed before every evaluation), so successive evaluations meet the same users and differences are the
agent's. The final evaluation is the caller's too (``evaluate``): recsim-env passes its one evaluator,
the offline rollout harness, so a trained agent is measured exactly as ``recsim benchmark`` would.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from agents.checkpoint import build_algorithm, save_agent
from agents.config import TrainConfig
from agents.item_features import log_item_embeddings
from user_models.data.artifact import SequenceDataset

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
    """Stop training once ``seconds`` of wall-clock time have passed (a training-time budget).

    Checked at every env step, so an on-policy update already under way finishes first (the budget can
    be overrun by one update; ``train.json`` records the real time).
    """

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
    final_eval: dict[str, Any]
    """The caller's ``evaluate`` result for the final agent (empty without one)."""


def train(
    config: TrainConfig,
    env: VecEnv,
    out: str | Path,
    *,
    eval_env: VecEnv | None = None,
    evaluate: Callable[[Any], dict[str, Any]] | None = None,
    dataset: SequenceDataset | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress_bar: bool = True,
    max_seconds: float | None = None,
    record: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``config.algo`` on ``env`` and write the agent and its logs to ``out``.

    Args:
        config: algorithm and run settings (see :func:`agents.config.load_train_config`).
        env: the training VecEnv (``config.n_envs`` rows), built by the caller.
        out: output directory (created; existing files are replaced).
        eval_env: the VecEnv of periodic evaluations (``config.eval_freq``), wrapped here in
            :class:`FixedPopulation` with the seed ``seed + EVAL_SEED_OFFSET``; needed when evaluating.
        evaluate: measures the final agent (a JSON-ready summary stored in ``train.json``).
        dataset: the training logs; needed when ``config.features.init_item_embeddings``.
        seed: seeds SB3 (policy init, sampling).
        device: torch device of the agent's networks.
        progress_bar: show SB3's progress bar.
        max_seconds: stop training after this much wall-clock time even if ``n_timesteps`` is not
            reached (the steps actually taken are recorded).
        record: what the envs simulate (model, data, env settings), stored in ``train.json`` and in
            the final agent's metadata.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    item_init = None
    if config.features.init_item_embeddings:
        if dataset is None:
            raise ValueError("init_item_embeddings needs the dataset the embeddings are fitted on")
        item_init = log_item_embeddings(dataset, config.features.item_dim, seed)
    model = build_algorithm(config, env, seed, device, item_init, tensorboard_log=str(out / "tensorboard"))

    callbacks: list[BaseCallback] = []
    fixed_eval = None
    if config.eval_freq > 0:
        if eval_env is None:
            raise ValueError("config.eval_freq > 0 needs an eval_env")
        fixed_eval = FixedPopulation(eval_env, seed + EVAL_SEED_OFFSET)
        eval_class = EvalCallback
        if config.algo == "maskable_ppo":
            from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback

            eval_class = MaskableEvalCallback
        callbacks.append(
            eval_class(
                fixed_eval,
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
    result = _finish(model, config, out, time.perf_counter() - start, seed, device, record, evaluate)
    env.close()
    if fixed_eval is not None:
        fixed_eval.close()
    return result



def _finish(model: Any, config: TrainConfig, out: Path, elapsed: float, seed: int, device: str,
            record: Mapping[str, Any] | None,
            evaluate: Callable[[Any], dict[str, Any]] | None) -> TrainResult:
    """What both trainers write at the end: the final agent, the caller's evaluation of it and
    ``train.json`` (settings, steps, speed)."""
    simulated = dict(record or {})
    save_agent(model, config, out / FINAL, extra={"seed": seed, "device": device, "simulator": simulated})
    final = evaluate(model) if evaluate is not None else {}
    steps = int(model.num_timesteps)
    summary = {
        "config": config.to_json(),
        "seed": seed,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "simulator": simulated,
        "timesteps": steps,
        "seconds": elapsed,
        "steps_per_second": steps / elapsed,
        "final_eval": final,
    }
    (out / "train.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    return TrainResult(out, steps, steps / elapsed, final)

def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def train_on_device(
    config: TrainConfig,
    env: Any,
    out: str | Path,
    *,
    eval_env: Any | None = None,
    evaluate: Callable[[Any], dict[str, Any]] | None = None,
    dataset: SequenceDataset | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress_bar: bool = True,
    max_seconds: float | None = None,
    record: Mapping[str, Any] | None = None,
) -> TrainResult:
    """:func:`train` for ``torch_ppo``: the same arguments, outputs and directory layout, but ``env`` and
    ``eval_env`` are tensor vector envs (:class:`agents.torch_ppo.TensorVecEnv`) on ``device``.

    Periodic evaluations (``config.eval_freq``) run every ``eval_env`` row's first episode on the
    device, always with the seed ``seed + EVAL_SEED_OFFSET`` (a fixed population apart from the
    training users); each new best is saved to ``OUT/best``, as :func:`train`'s EvalCallback does.
    Training stops at ``n_timesteps`` or, after the update under way, at ``max_seconds``.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    from agents.checkpoint import build_torch_ppo
    from agents.torch_ppo import TorchPPO, UpdateStats, evaluate_on_device

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    item_init = None
    if config.features.init_item_embeddings:
        if dataset is None:
            raise ValueError("init_item_embeddings needs the dataset the embeddings are fitted on")
        item_init = log_item_embeddings(dataset, config.features.item_dim, seed)
    if config.eval_freq > 0 and eval_env is None:
        raise ValueError("config.eval_freq > 0 needs an eval_env")
    agent = build_torch_ppo(config, env.single_observation_space, env.single_action_space, seed, device,
                            item_init)
    writer = SummaryWriter(str(out / "tensorboard" / f"{config.algo}_1"))
    bar = tqdm(total=config.n_timesteps, disable=not progress_bar, unit="step", desc=config.algo)
    history: dict[str, list[Any]] = {"timesteps": [], "results": [], "ep_lengths": []}
    best = -np.inf
    next_eval, next_checkpoint = config.eval_freq, config.checkpoint_freq
    start = time.perf_counter()

    def on_update(model: TorchPPO, stats: UpdateStats) -> bool:
        nonlocal best, next_eval, next_checkpoint
        steps, elapsed = model.num_timesteps, time.perf_counter() - start
        bar.update(steps - bar.n)
        for name, value in vars(stats).items():
            writer.add_scalar(f"train/{name}", value, steps)
        writer.add_scalar("time/fps", steps / elapsed, steps)
        if config.eval_freq > 0 and steps >= next_eval:
            next_eval += config.eval_freq
            assert eval_env is not None
            returns, lengths = evaluate_on_device(model, eval_env, seed + EVAL_SEED_OFFSET)
            history["timesteps"].append(steps)
            history["results"].append(returns)
            history["ep_lengths"].append(lengths)
            np.savez(out / "evaluations.npz", timesteps=np.array(history["timesteps"]),
                     results=np.array(history["results"]), ep_lengths=np.array(history["ep_lengths"]))
            writer.add_scalar("eval/mean_reward", float(returns.mean()), steps)
            bar.set_postfix(eval_return=f"{returns.mean():.3f}")
            if returns.mean() > best:
                best = float(returns.mean())
                save_agent(model, config, out / "best")
        if config.checkpoint_freq > 0 and steps >= next_checkpoint:
            next_checkpoint += config.checkpoint_freq
            save_agent(model, config, out / "checkpoints" / f"step_{steps}")
        return max_seconds is None or elapsed < max_seconds

    agent.learn(env, config.n_timesteps, seed, on_update)
    elapsed = time.perf_counter() - start
    bar.close()
    writer.close()
    return _finish(agent, config, out, elapsed, seed, device, record, evaluate)
