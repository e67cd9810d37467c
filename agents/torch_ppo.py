"""PPO on the env's device: rollouts, advantages and updates never leave it (CleanRL's ppo.py, batched).

SB3 steps a ``VecEnv`` through numpy: every step copies the batch to the host and back, and its
rollout buffer, advantages and minibatches are numpy too. For a simulator that steps thousands of users
per call on the device (:meth:`recsim_env.vector.RecSimVectorEnv.step_tensors`), that round trip, not
the simulator, bounds training. :class:`TorchPPO` drives the env's tensor path directly.

The policy is the one of :mod:`agents.slate_policy` (candidates mode): one
:class:`~agents.slate_policy.CandidateScorer` shared by all candidates, slates drawn from the
:class:`~agents.slate_policy.PlackettLuceDistribution` over its scores (k distinct candidates by the
Gumbel-top-k trick; the deterministic slate is the top k), masked candidates never drawn. Only the
history encoder differs: :class:`PooledHistoryEncoder` averages item and behavior embeddings with a
learned recency weight (one weighted embedding bag, no recurrence), in the feature layout of
:class:`~agents.features.HistoryExtractor`, so the scorer reads either.

The env is passed in as an object with the :class:`TensorVecEnv` protocol (this package never imports
the simulator: see ``tests/test_layering.py``). Saved agents use the format of :mod:`agents.checkpoint`
(``policy.safetensors`` + ``agent.json``), and :meth:`TorchPPO.predict` is SB3's, so the offline
evaluator, ``recsim agent eval`` and ``recsim benchmark`` run a trained agent like any other.

One update (``n_steps`` steps of ``N`` rows)::

    for t in range(n_steps):                 # rollout, on the device
        slate ~ PlackettLuce(scores(obs), masks); env.step_tensors(slate)
        reward += gamma * V(final_obs) where truncated    # time-limit bootstrap, as SB3 does
    advantages = GAE(rewards, values, terminated)         # on the device
    for epoch, minibatch: clipped policy loss + value loss - entropy bonus; Adam step
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.features import item_embedding
from agents.obs import BEHAVIORS, CANDIDATES, ITEMS, MASK, as_batch
from agents.slate_policy import CandidateScorer, PlackettLuceDistribution

TensorObs = dict[str, torch.Tensor]


class TensorStepResult(Protocol):
    """What :meth:`TensorVecEnv.step_tensors` returns (``[N, ...]`` tensors on the env's device)."""

    obs: TensorObs
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: TensorObs


class TensorVecEnv(Protocol):
    """A vector env with a torch fast path and ``SAME_STEP`` autoreset (RecSimVectorEnv is one).

    ``step_tensors`` resets finished rows inside the step: ``obs`` already shows the new users and
    ``final_obs`` the terminal observation of the rows that finished.
    """

    num_envs: int
    single_observation_space: gym.spaces.Dict
    single_action_space: gym.Space[Any]

    def reset_tensors(self, seed: int | None = None) -> TensorObs: ...

    def step_tensors(self, actions: torch.Tensor, validate: bool = True) -> TensorStepResult: ...

    def action_masks_tensor(self) -> torch.Tensor: ...


def slate_shape(action_space: gym.Space[Any]) -> tuple[int, int]:
    """``(n_candidates, slate_size)`` of a candidates-mode action space (Discrete or MultiDiscrete)."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n), 1
    if isinstance(action_space, gym.spaces.MultiDiscrete) and len(set(action_space.nvec.tolist())) == 1:
        return int(action_space.nvec[0]), len(action_space.nvec)
    raise ValueError(f"torch_ppo needs the candidates action mode, got {action_space}")


class PooledHistoryEncoder(nn.Module):
    """The user as a recency-weighted mean of the history's item + behavior embeddings, then a layer.

    Output features follow :class:`~agents.features.HistoryExtractor`'s layout
    (``[user, candidate embeddings, affinities]``), so :class:`~agents.slate_policy.CandidateScorer`
    reads them through :meth:`split`.

    Args:
        observation_space: the env's ``Dict`` observation (``history_items``, ``behaviors``, ``mask``,
            ``candidates``).
        item_dim: item and behavior embedding size.
        hidden_dim: user vector size.
        item_init: optional ``[n_items + 1, item_dim]`` initial item embeddings (they stay trainable).
    """

    def __init__(self, observation_space: gym.spaces.Dict, item_dim: int = 32, hidden_dim: int = 64,
                 item_init: np.ndarray | None = None) -> None:
        super().__init__()
        spaces = observation_space.spaces
        if CANDIDATES not in spaces:
            raise ValueError("torch_ppo needs the candidates action mode (a 'candidates' observation)")
        n_items = int(np.max(spaces[ITEMS].high))  # type: ignore[attr-defined]
        n_behaviors = int(np.max(spaces[BEHAVIORS].high))  # type: ignore[attr-defined]
        history_len = int(np.prod(spaces[ITEMS].shape or (1,)))
        self.n_candidates = int(np.prod(spaces[CANDIDATES].shape or (1,)))
        self.items = item_embedding(n_items, item_dim, item_init)
        self.behaviors = nn.Embedding(n_behaviors + 1, item_dim, padding_idx=0)
        self.recency = nn.Parameter(torch.zeros(history_len))
        """Per history slot (right-aligned: the last slot is the most recent event) log-weight."""
        self.user = nn.Sequential(nn.Linear(2 * item_dim, hidden_dim), nn.Tanh())
        self.query = nn.Linear(hidden_dim, item_dim)
        self.user_dim = hidden_dim
        self.item_dim = item_dim

    def forward(self, obs: TensorObs) -> torch.Tensor:
        items, behaviors = obs[ITEMS].long(), obs[BEHAVIORS].long()
        real = (obs[MASK] > 0) & (items > 0)
        weights = torch.softmax(self.recency.masked_fill(~real, -1e9), dim=1) * real  # [B, L]
        pooled = self._pooled_events(items, behaviors, weights)
        # the most recent event on its own (the env right-aligns)
        last = (self.items(items[:, -1]) + self.behaviors(behaviors[:, -1])) * real[:, -1:]
        user = self.user(torch.cat([pooled, last], dim=1))
        candidates = self.items(obs[CANDIDATES].long().reshape(len(user), -1))
        # A product and a sum, not einsum: einsum's bmm of B tiny matrices backs up on the CPU one row at
        # a time (it was a third of the encoder's cost in a PPO minibatch).
        affinity = (candidates * self.query(user).unsqueeze(1)).sum(dim=2)
        return torch.cat([user, candidates.flatten(1), affinity], dim=1)

    def _pooled_events(self, items: torch.Tensor, behaviors: torch.Tensor, weights: torch.Tensor
                       ) -> torch.Tensor:
        """``[B, item_dim]`` the ``weights``-weighted (``[B, L]``) sum of the events' item + behavior
        embeddings, without the ``[B, L, item_dim]`` tensor of the events (nor its gradient).

        Items: ``embedding_bag`` adds each row straight into its bag's sum, forward and backward.
        Behaviors (a handful of ids): each row's weight per behavior (``[B, n_behaviors + 1]``), times the
        table. Padding (id 0) is left out of both and gets no gradient, as in ``table(ids)``.
        """
        item_sum = F.embedding_bag(items, self.items.weight, mode="sum", per_sample_weights=weights,
                                   padding_idx=self.items.padding_idx)
        per_behavior = weights.new_zeros(len(weights), self.behaviors.num_embeddings)
        per_behavior = per_behavior.scatter_add(1, behaviors, weights)
        return item_sum + per_behavior[:, 1:] @ self.behaviors.weight[1:]

    def split(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The user vectors ``[B, hidden_dim]`` and candidate embeddings ``[B, C, item_dim]``."""
        user = features[:, : self.user_dim]
        end = self.user_dim + self.n_candidates * self.item_dim
        return user, features[:, self.user_dim : end].reshape(len(features), self.n_candidates, self.item_dim)


class SlateActorCritic(nn.Module):
    """Encoder, shared candidate scorer (the actor) and an MLP critic on the same features."""

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.Space[Any], item_dim: int,
                 hidden_dim: int, critic: tuple[int, ...] = (64, 64), item_init: np.ndarray | None = None
                 ) -> None:
        super().__init__()
        self.n_candidates, self.slate_size = slate_shape(action_space)
        self.encoder = PooledHistoryEncoder(observation_space, item_dim, hidden_dim, item_init)
        if self.encoder.n_candidates != self.n_candidates:
            raise ValueError(f"{self.encoder.n_candidates} candidates observed, {self.n_candidates} in "
                             "the actions")
        self.scorer = CandidateScorer(self.encoder)
        nn.init.orthogonal_(self.scorer.out.weight, gain=0.01)  # near-uniform first slates, as SB3
        nn.init.zeros_(self.scorer.out.bias)
        width = hidden_dim + self.n_candidates * (item_dim + 1)
        layers: list[nn.Module] = []
        for size in critic:
            layers += [nn.Linear(width, size), nn.Tanh()]
            width = size
        self.critic = nn.Sequential(*layers, nn.Linear(width, 1))

    def distribution(self, features: torch.Tensor, masks: torch.Tensor | None) -> PlackettLuceDistribution:
        """The Plackett-Luce slate distribution over the candidates (masked ones never drawn)."""
        dist = PlackettLuceDistribution(self.n_candidates, self.slate_size)
        dist.proba_distribution(self.scorer(features))
        dist.apply_masking(masks)
        return dist

    def value(self, features: torch.Tensor) -> torch.Tensor:
        return self.critic(features).squeeze(1)


@dataclass(frozen=True)
class UpdateStats:
    """What one PPO update measured (floats on the host, read once per update)."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    explained_variance: float
    mean_reward: float


class TorchPPO:
    """Clipped PPO (CleanRL's ppo.py) over a :class:`TensorVecEnv`, everything on one device.

    Args:
        observation_space, action_space: the env's single spaces (candidates action mode).
        item_dim, hidden_dim: sizes of the history encoder (:class:`PooledHistoryEncoder`).
        critic: hidden layer sizes of the critic.
        item_init: optional initial item embeddings.
        learning_rate: Adam step size (annealed linearly to 0 over ``n_timesteps`` with ``anneal_lr``).
        n_steps: steps per row between updates (a rollout is ``n_steps * N`` transitions).
        batch_size: minibatch size in transitions.
        n_epochs: passes over a rollout per update.
        gamma, gae_lambda: discount and GAE parameter.
        clip_range: PPO's probability ratio clip.
        ent_coef, vf_coef: entropy bonus and value loss weights.
        max_grad_norm: global gradient norm clip.
        anneal_lr: decay the learning rate linearly over training.
        seed: seeds the network's initialisation and the agent's own generator (slates, minibatches);
            the global torch generator is left alone.
        device: the torch device (the env's: rollouts are not copied).
    """

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.Space[Any], *,
                 item_dim: int = 32, hidden_dim: int = 64, critic: tuple[int, ...] = (64, 64),
                 item_init: np.ndarray | None = None, learning_rate: float = 3e-4, n_steps: int = 16,
                 batch_size: int = 4096, n_epochs: int = 4, gamma: float = 0.99, gae_lambda: float = 0.95,
                 clip_range: float = 0.2, ent_coef: float = 0.01, vf_coef: float = 0.5,
                 max_grad_norm: float = 0.5, anneal_lr: bool = True, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, the global generator untouched
            torch.manual_seed(seed)
            policy = SlateActorCritic(observation_space, action_space, item_dim, hidden_dim, tuple(critic),
                                      item_init)
        self.policy = policy.to(self.device)  # built on the CPU, so the same seed gives the same weights
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.learning_rate = learning_rate
        self.n_steps, self.batch_size, self.n_epochs = n_steps, batch_size, n_epochs
        self.gamma, self.gae_lambda, self.clip_range = gamma, gae_lambda, clip_range
        self.ent_coef, self.vf_coef, self.max_grad_norm = ent_coef, vf_coef, max_grad_norm
        self.anneal_lr = anneal_lr
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=learning_rate, eps=1e-5)
        self.num_timesteps = 0

    # --- acting -------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: TensorObs, masks: torch.Tensor | None, deterministic: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, k]`` candidate positions, their log-probabilities and the values, on the device."""
        features = self.policy.encoder(obs)
        dist = self.policy.distribution(features, masks)
        actions = dist.mode() if deterministic else dist.sample(self.generator)
        return actions, dist.log_prob(actions), self.policy.value(features)

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """``[B, k]`` positions in the env's action shape (``[B]`` for a ``Discrete`` space)."""
        return actions[:, 0] if isinstance(self.action_space, gym.spaces.Discrete) else actions

    def predict(self, observation: Any, state: tuple[np.ndarray, ...] | None = None,
                episode_start: np.ndarray | None = None, deterministic: bool = False,
                action_masks: np.ndarray | None = None) -> tuple[np.ndarray, None]:
        """SB3's ``predict`` (numpy in, numpy out), for the evaluators every agent goes through."""
        batch, single = as_batch(observation)
        obs = {key: torch.as_tensor(value, device=self.device) for key, value in batch.items()}
        masks = None
        if action_masks is not None:
            masks = torch.as_tensor(np.asarray(action_masks), device=self.device).reshape(len(obs[ITEMS]), -1)
        self.policy.eval()
        actions, _, _ = self.act(obs, masks, deterministic)
        out = self.env_actions(actions).cpu().numpy()
        return (out[0] if single else out), None

    # --- training -----------------------------------------------------------------------------------
    def learn(self, env: TensorVecEnv, total_timesteps: int, seed: int,
              on_update: Callable[[TorchPPO, UpdateStats], bool] | None = None) -> TorchPPO:
        """Train for ``total_timesteps`` env steps (rows x steps), in updates of ``n_steps * N``.

        ``on_update(agent, stats)`` runs after each update (logging, evaluation, checkpoints, a time
        budget); returning False stops training.
        """
        n, t_max, device = env.num_envs, self.n_steps, self.device
        self.policy.train()
        obs = env.reset_tensors(seed=seed)
        rollout_obs = {key: torch.zeros((t_max, *value.shape), dtype=value.dtype, device=device)
                       for key, value in obs.items()}
        masks0 = env.action_masks_tensor()
        rollout_masks = torch.zeros((t_max, *masks0.shape), dtype=torch.bool, device=device)
        actions = torch.zeros(t_max, n, self.policy.slate_size, dtype=torch.long, device=device)
        log_probs, values, rewards, terminated = (torch.zeros(t_max, n, device=device) for _ in range(4))
        n_updates = max(total_timesteps // (t_max * n), 1)
        for update in range(n_updates):
            if self.anneal_lr:
                for group in self.optimizer.param_groups:
                    group["lr"] = self.learning_rate * (1.0 - update / n_updates)
            for t in range(t_max):
                masks = env.action_masks_tensor()
                for key, value in obs.items():
                    rollout_obs[key][t] = value
                rollout_masks[t] = masks
                action, log_prob, value_ = self.act(obs, masks)
                step = env.step_tensors(self.env_actions(action), validate=False)
                reward = step.reward.float() + self.gamma * self._truncated_value(step)
                actions[t], log_probs[t], values[t] = action, log_prob, value_
                rewards[t], terminated[t] = reward, (step.terminated | step.truncated).float()
                obs = step.obs
            with torch.no_grad():
                next_value = self.policy.value(self.policy.encoder(obs))
            advantages = self._gae(rewards, values, terminated, next_value)
            stats = self._update(rollout_obs, rollout_masks, actions, log_probs, values, advantages,
                                 rewards.mean())
            self.num_timesteps += t_max * n
            if on_update is not None and not on_update(self, stats):
                break
        return self

    @torch.no_grad()
    def _truncated_value(self, step: TensorStepResult) -> torch.Tensor:
        """``[N]`` the value of the final state of the rows whose episode was truncated (0 elsewhere).

        A truncated episode goes on, so its reward is bootstrapped from its last state, as SB3 does.
        On the CPU only those rows (a time limit: a few per step) go through the networks; counting them
        reads the host, which an accelerator would wait for, so there every row goes through, masked.
        """
        if self.device.type != "cpu":
            return self.policy.value(self.policy.encoder(step.final_obs)) * step.truncated
        rows = step.truncated.nonzero().squeeze(1)
        values = torch.zeros(len(step.truncated), device=self.device)
        if len(rows):
            final_obs = {key: value[rows] for key, value in step.final_obs.items()}
            values[rows] = self.policy.value(self.policy.encoder(final_obs))
        return values

    def _gae(self, rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
             next_value: torch.Tensor) -> torch.Tensor:
        """Generalised advantage estimates ``[T, N]``; ``dones[t]``: the episode ended at step ``t``."""
        advantages = torch.zeros_like(rewards)
        last = torch.zeros_like(next_value)
        for t in reversed(range(len(rewards))):
            following = next_value if t == len(rewards) - 1 else values[t + 1]
            alive = 1.0 - dones[t]
            delta = rewards[t] + self.gamma * following * alive - values[t]
            last = delta + self.gamma * self.gae_lambda * alive * last
            advantages[t] = last
        return advantages

    def _update(self, obs: TensorObs, masks: torch.Tensor, actions: torch.Tensor, old_log_probs: torch.Tensor,
                old_values: torch.Tensor, advantages: torch.Tensor, mean_reward: torch.Tensor) -> UpdateStats:
        """``n_epochs`` passes of clipped PPO over the flattened rollout, in minibatches."""
        flat = {key: value.flatten(0, 1) for key, value in obs.items()}
        masks_, actions_ = masks.flatten(0, 1), actions.flatten(0, 1)
        old_log_probs_, old_values_ = old_log_probs.flatten(), old_values.flatten()
        advantages_ = advantages.flatten()
        returns_ = advantages_ + old_values_
        size = len(advantages_)
        batch = min(self.batch_size, size)
        totals = torch.zeros(5, device=self.device)
        count = 0
        for _ in range(self.n_epochs):
            order = torch.randperm(size, generator=self.generator, device=self.device)
            for start in range(0, size - batch + 1, batch):
                index = order[start:start + batch]
                features = self.policy.encoder({key: value[index] for key, value in flat.items()})
                dist = self.policy.distribution(features, masks_[index])
                log_prob = dist.log_prob(actions_[index])
                entropy = dist.entropy().mean()
                value = self.policy.value(features)
                ratio = (log_prob - old_log_probs_[index]).exp()
                adv = advantages_[index]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                policy_loss = torch.max(-adv * ratio,
                                        -adv * ratio.clamp(1 - self.clip_range, 1 + self.clip_range)).mean()
                value_loss = 0.5 * (value - returns_[index]).pow(2).mean()
                loss = policy_loss + self.vf_coef * value_loss - self.ent_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    log_ratio = log_prob - old_log_probs_[index]
                    kl = ((ratio - 1) - log_ratio).mean()
                    clipped = ((ratio - 1).abs() > self.clip_range).float().mean()
                    totals += torch.stack([policy_loss, value_loss, entropy, kl, clipped]).detach()
                count += 1
        variance = returns_.var()
        explained = 1 - (returns_ - old_values_).var() / variance.clamp(min=1e-12)
        policy_loss, value_loss, entropy, kl, clipped = (totals / max(count, 1)).tolist()  # one host read
        return UpdateStats(policy_loss, value_loss, entropy, kl, clipped, float(explained),
                           float(mean_reward))


@torch.no_grad()
def evaluate_on_device(agent: TorchPPO, env: TensorVecEnv, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``[N]`` undiscounted returns and lengths of each row's first episode under the deterministic slate.

    The env is reset with ``seed`` every time (a fixed population: successive evaluations meet the same
    users); it steps until every row has finished once, on the device (one host read per step, to stop).
    """
    obs = env.reset_tensors(seed=seed)
    returns = torch.zeros(env.num_envs, device=agent.device)
    lengths = torch.zeros(env.num_envs, dtype=torch.long, device=agent.device)
    finished = torch.zeros(env.num_envs, dtype=torch.bool, device=agent.device)
    was_training = agent.policy.training
    agent.policy.eval()
    while not bool(finished.all()):
        action, _, _ = agent.act(obs, env.action_masks_tensor(), deterministic=True)
        step = env.step_tensors(agent.env_actions(action), validate=False)
        returns += step.reward.float() * ~finished
        lengths += (~finished).long()
        finished |= step.terminated | step.truncated
        obs = step.obs
    agent.policy.train(was_training)
    return returns.cpu().numpy(), lengths.cpu().numpy()
