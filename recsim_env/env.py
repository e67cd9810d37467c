"""``RecSimEnv``: the single-user Gymnasium environment, a batch of one over the simulation core."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from recsim_env.config import (
    Calibration,
    CandidateConfig,
    ChoiceConfig,
    LeaveConfig,
    PopulationConfig,
    RewardConfig,
)
from recsim_env.core import StepSnapshot
from recsim_env.factory import build_env_core, load_dataset
from recsim_env.render.env_view import CoreRenderer
from recsim_env.render.frame import SessionFrame
from recsim_env.render.pygame_renderer import RENDER_FPS
from recsim_env.render_text import format_step
from user_models.data.artifact import SequenceDataset
from user_models.protocol import UserModel

PathLike = str | os.PathLike[str]


class RecSimEnv(gym.Env[Any, Any]):
    """Recommend slates to one simulated user until the user leaves.

    ## Description
    A simulated user, driven by a user model learned from interaction logs (or any
    :class:`~user_models.protocol.UserModel`), starts from a real training-split history prefix (or one
    the model generates). Each step the agent shows a slate of ``slate_size`` items; the user picks one or
    none (multinomial logit with a "no choice" option), responds with a behavior (e.g. view, click, buy),
    and may leave. All dynamics live in :class:`~recsim_env.core.SimulationCore`; this class is a batch
    of one over it, and ``gym.make_vec(..., vectorization_mode="vector_entry_point")`` gives N users.

    ## Action space (``action_mode``)
    - ``"slate"`` (default): ``MultiDiscrete([n_items + 1] * k)``, item ids; 0 leaves a slot empty.
    - ``"candidates"``: positions among the ``C`` candidates in the observation (retrieved each step from
      a mix of items near the visible history, popular and random items): ``Discrete(C)`` when ``k = 1``,
      else ``MultiDiscrete([C] * k)``.
    - ``"embedding"``: ``Box(-1, 1, (d,))``, mapped to the ``k`` items of largest dot product.

    An item repeated within one slate shows nothing in its later slots (``strict=True`` raises
    ValueError instead). Invalid actions (shape, dtype, range) raise ValueError. :meth:`action_masks`
    serves sb3-contrib's MaskablePPO in the discrete modes.

    ## Observation space (``observation_mode``)
    ``Dict`` of integer ``Box``es: ``history_items`` / ``behaviors`` (``[history_len]``, the user's most
    recent events, right-aligned, 0 = padding), ``mask`` (1 where a real event is), ``candidates``
    (``[C]``, in the candidates mode). ``"state"`` adds ``user_state`` (privileged: expected next-item
    embedding, patience, learned end probability); a real recommender does not see it, so it is opt-in.

    ## Rewards
    A weight per behavior (default ``b / n_behaviors`` for behavior id ``b``: any consumption counts and
    the most engaged behavior is worth 1), minus ``no_choice_penalty`` when nothing is chosen, plus
    ``diversity_weight`` times the slate's intra-list diversity (see :class:`RewardConfig`).
    ``reward_range`` holds the bounds.

    ## Episode end
    ``terminated``: the user leaves (learned session-end probability combined with patience, which
    no-choice steps and low-engagement responses drain and high-engagement responses refill; see
    :class:`LeaveConfig`). ``truncated``: ``max_steps`` steps were taken.

    ## Info
    Every step's ``info`` is the full response (:class:`~recsim_env.core.StepSnapshot`): ``slate``,
    ``choice_probs`` (last entry: no choice), ``position`` (-1: no choice), ``item``, ``behavior``,
    ``behavior_probs``, ``reward``, ``end_prob``, ``leave_prob``, ``patience``, ``step``,
    ``episode_return`` and the history after the step.

    ## Arguments
    - ``model``: a :class:`UserModel` or a checkpoint directory.
    - ``data``: the dataset (or its directory) the model was trained on (population, popularity).
    - ``slate_size`` (5), ``action_mode`` ("slate"), ``observation_mode`` ("history"),
      ``max_steps`` (100), ``history_len`` (50): as above.
    - ``reward``, ``population``, ``choice``, ``leave``, ``candidates``: frozen configs from
      :mod:`recsim_env.config`, or plain mappings of their fields (``reward={"no_choice_penalty": 0.1}``;
      None: documented defaults).
    - ``calibration``: a :class:`Calibration` or its JSON (from ``recsim env calibrate``); overrides the
      choice temperature, no-choice logit and end-logit offset.
    - ``no_choice_event`` (False): append a behavior-0 event on no-choice steps (models that define
      one, like the synthetic world; see :class:`SimConfig`).
    - ``strict`` (False): raise on repeated items within a slate.
    - ``device`` ("cpu"): where a model loaded from a path runs.
    - ``render_mode``: None, ``"ansi"`` (text), ``"rgb_array"`` (``H x W x 3`` uint8 frames) or
      ``"human"`` (a pygame window, drawn on every reset and step at ``metadata["render_fps"]``;
      keys: space pause, right step, up/down speed, q close). Both pygame modes draw a
      :class:`~recsim_env.render.SessionFrame` (:meth:`session_frame`) and need the ``viz`` extra.

    ## Version history
    - v0: initial version.
    """

    metadata = {"render_modes": ["ansi", "human", "rgb_array"], "render_fps": RENDER_FPS}

    def __init__(
        self,
        model: PathLike | UserModel,
        data: PathLike | SequenceDataset,
        slate_size: int = 5,
        action_mode: str = "slate",
        observation_mode: str = "history",
        max_steps: int = 100,
        history_len: int = 50,
        reward: RewardConfig | Mapping[str, Any] | None = None,
        population: PopulationConfig | Mapping[str, Any] | None = None,
        choice: ChoiceConfig | Mapping[str, Any] | None = None,
        leave: LeaveConfig | Mapping[str, Any] | None = None,
        candidates: CandidateConfig | Mapping[str, Any] | None = None,
        calibration: PathLike | Calibration | None = None,
        no_choice_event: bool = False,
        strict: bool = False,
        device: torch.device | str = "cpu",
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got "
                             f"{render_mode!r}")
        dataset = load_dataset(data)
        self.core, self.adapter = build_env_core(
            model, dataset, n_users=1, slate_size=slate_size, action_mode=action_mode,
            observation_mode=observation_mode, max_steps=max_steps, history_len=history_len, reward=reward,
            population=population, choice=choice, leave=leave, candidates=candidates,
            calibration=calibration, no_choice_event=no_choice_event, strict=strict, device=device,
        )
        self.action_space = self.adapter.action_space
        self.observation_space = self.adapter.observation_space
        self.reward_range = self.core.reward_range
        self.render_mode = render_mode
        self._view = CoreRenderer(self.core, dataset, None if render_mode == "ansi" else render_mode,
                                  fps=self.metadata["render_fps"])
        self._episode = -1
        self._seeded = False
        self._last: StepSnapshot | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self.core.manual_seed(int(self.np_random.integers(0, 2**63 - 1)))
            self._seeded = True
        self.core.reset()
        self._last = None
        self._episode += 1
        info = {"patience": float(self.core.patience[0]), "history_length": int(self.core.history_lengths[0])}
        if self.render_mode == "human":
            self.render()
        return self._observation(), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        actions = self.adapter.check_actions(np.asarray(action)[None], batch=1)
        record = self.core.step(self.adapter.to_slate(actions))
        snapshot = record.row(0)
        self._last = snapshot
        if self.render_mode == "human":
            self.render()
        return self._observation(), float(snapshot.reward), snapshot.terminated, snapshot.truncated, \
            snapshot.as_info()

    def action_masks(self) -> np.ndarray:
        """Valid actions for MaskablePPO (flat, one block per slot); discrete action modes only."""
        return self.adapter.action_masks()[0].cpu().numpy()

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            return None
        if self.render_mode != "ansi":
            return self._view.render(self.session_frame())
        if self._last is None:
            return f"new user, history of {int(self.core.history_lengths[0])} events\n"
        return format_step(self._last, self.core.behavior_names)

    def session_frame(self, policy: str = "", episode: int | None = None) -> SessionFrame:
        """The current step as a :class:`~recsim_env.render.SessionFrame` (what the pygame modes draw).

        Args:
            policy: Name of the policy, shown in the frame's header.
            episode: Episode index to stamp (default: resets since construction, minus one); the frame's
                ``user_id`` is the same number, since every episode is a new simulated user.
        """
        if self._episode < 0:
            raise RuntimeError("call reset() before session_frame()")
        number = self._episode if episode is None else episode
        return self._view.frame(0, after_step=self._last is not None, user_id=number, episode=number,
                                policy=policy)

    def close(self) -> None:
        self._view.close()
        super().close()

    @property
    def snapshot(self) -> StepSnapshot | None:
        """The last step, frozen (what renderers draw from); None right after a reset."""
        return self._last

    def _observation(self) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in self.adapter.observe_numpy().items()}


WORLD_LEAVE = LeaveConfig(no_choice_drain=0.0, low_value_drain=0.0, high_value_refill=0.0)
"""The world has its own patience (drained by no-response and view events, refilled by carts and buys,
and driving its session-end probability), so the core's patience is switched off in the world env."""


def make_world_env(data: PathLike | SequenceDataset, device: torch.device | str = "cpu", **kwargs: Any
                   ) -> RecSimEnv:
    """``RecSim-World-v0``: the ground-truth synthetic world that generated ``data`` as the users.

    The users start, like in the learned simulator, from prefixes of the dataset's training histories
    (the world replays them into its state), so a policy meets the same starting users in both. No-choice
    steps are world events (behavior 0, draining the world's patience) and the world's own end
    probability is the only leave hazard. Any :class:`RecSimEnv` argument can be passed.
    """
    return RecSimEnv(**world_arguments(data, device, **kwargs))


def world_arguments(data: PathLike | SequenceDataset, device: torch.device | str = "cpu", **kwargs: Any
                    ) -> dict[str, Any]:
    """The env arguments of ``RecSim-World-v0`` (shared by :func:`make_world_env` and the vector env)."""
    from user_models.synthetic import SyntheticWorld

    dataset = load_dataset(data)
    world = SyntheticWorld.from_dataset(dataset, torch.device(device))
    kwargs.setdefault("leave", WORLD_LEAVE)
    kwargs.setdefault("no_choice_event", True)
    return {"model": world, "data": dataset, "device": device, **kwargs}
