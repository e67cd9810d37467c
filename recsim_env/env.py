"""``RecSimEnv``: the single-user Gymnasium environment, a batch of one over the simulation core."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from recsim_env.config import WORLD_MODEL, EnvConfig
from recsim_env.core import StepSnapshot
from recsim_env.factory import build_env_core, cascade_dataset, load_dataset, world_config
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
    none (multinomial logit over normalised preferences with a "no choice" option; fitted on impression
    logs, with position effects, when the checkpoint carries a learned choice), responds with a
    behavior (e.g. view, click, buy),
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
    ``terminated``: the user leaves (the learned session-end probability as a per-step hazard, an idle
    hazard after steps without a consumption, and an optional patience; see :class:`LeaveConfig`).
    ``truncated``: ``max_steps`` steps were taken. After either, :meth:`step` raises
    ``gymnasium.error.ResetNeeded`` until :meth:`reset` starts a new user (Gymnasium's order-enforcing
    contract; so does a :meth:`step` before the first :meth:`reset`).

    ## Info
    Every step's ``info`` is the full response (:class:`~recsim_env.core.StepSnapshot`): ``slate``,
    ``choice_probs`` (last entry: no choice), ``position`` (-1: no choice), ``item``, ``behavior``,
    ``behavior_probs``, ``reward``, ``end_prob``, ``leave_prob``, ``patience``, ``wear``, ``step``,
    ``episode_return`` and the history after the step.

    ## Arguments
    - ``model``: a :class:`UserModel`, a checkpoint directory, a hand-written user ``.json`` or
      ``"world"`` (see :func:`recsim_env.factory.load_model`).
    - ``data``: the dataset (or its directory) the model was trained on (population, popularity).
    - ``config``: an :class:`~recsim_env.config.EnvConfig` (default: its defaults).
    - every other keyword argument is a field of :class:`~recsim_env.config.EnvConfig`, over
      ``config``: ``slate_size`` (5), ``action_mode`` ("slate"), ``observation_mode`` ("history"),
      ``max_steps`` (100), ``history_len`` (50), the sections ``reward``, ``population``, ``choice``,
      ``leave``, ``candidates`` (frozen configs or plain mappings of their fields, e.g.
      ``reward={"no_choice_penalty": 0.1}``), ``calibration`` (a JSON from ``recsim env calibrate``),
      ``no_choice_event``, ``strict``, ``device``. A bad key or value is an ``InputError`` naming it.
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
        config: EnvConfig | None = None,
        render_mode: str | None = None,
        **settings: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got "
                             f"{render_mode!r}")
        self.config = EnvConfig.from_mapping(settings, "RecSimEnv", base=config or EnvConfig())
        dataset = load_dataset(data)
        self.core, self.adapter = build_env_core(model, dataset, self.config, n_users=1)
        self.action_space = self.adapter.action_space
        self.observation_space = self.adapter.observation_space
        self.reward_range = self.core.reward_range
        self.render_mode = render_mode
        self._view = CoreRenderer(self.core, dataset, None if render_mode == "ansi" else render_mode,
                                  fps=self.metadata["render_fps"])
        self._episode = -1
        self._seeded = False
        self._needs_reset = True
        self._last: StepSnapshot | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self.core.manual_seed(int(self.np_random.integers(0, 2**63 - 1)))
            self._seeded = True
        self.core.reset()
        self._needs_reset = False
        self._last = None
        self._episode += 1
        info = {"patience": float(self.core.patience[0]), "history_length": int(self.core.history_lengths[0])}
        if self.render_mode == "human":
            self.render()
        return self._observation(), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            if self._episode < 0:
                raise gym.error.ResetNeeded("Cannot call env.step() before calling env.reset()")
            ended = "terminated (the user left)" if self._last is not None and self._last.terminated \
                else "truncated (max_steps reached)"
            raise gym.error.ResetNeeded(f"the episode {ended}: call env.reset() before env.step()")
        actions = self.adapter.check_actions(np.asarray(action)[None], batch=1)
        record = self.core.step(self.adapter.to_slate(actions))
        snapshot = record.row(0)
        self._last = snapshot
        self._needs_reset = bool(snapshot.terminated or snapshot.truncated)
        if self.render_mode == "human":
            self.render()
        return self._observation(), float(snapshot.reward), snapshot.terminated, snapshot.truncated, \
            snapshot.as_info()

    def action_masks(self) -> np.ndarray:
        """Valid actions for MaskablePPO (flat, one block per slot); discrete action modes only."""
        return self.adapter.action_masks()[0].cpu().numpy()

    def oracle_scores(self, items: np.ndarray) -> np.ndarray:
        """The simulated user's own choice utility of each item (privileged; see
        :meth:`recsim_env.spaces.SpaceAdapter.oracle_scores`): ``[m]`` or ``[1, m]`` item ids in, same
        shape out."""
        items = np.asarray(items)
        return self.adapter.oracle_scores(items.reshape(1, -1)).reshape(items.shape)

    # Gymnasium < 1.3 (what Ray pins) types the frame as a bare TypeVar, which no concrete type overrides.
    def render(self) -> str | np.ndarray | None:  # type: ignore[override,unused-ignore]
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


def make_world_env(data: PathLike | SequenceDataset, config: EnvConfig | None = None,
                   render_mode: str | None = None, **settings: Any) -> RecSimEnv:
    """``RecSim-World-v0``: the ground-truth synthetic world that generated ``data`` as the users.

    The users start, like in the learned simulator, from prefixes of the dataset's training histories
    (the world replays them into its state), so a policy meets the same starting users in both. The
    settings default to :data:`~recsim_env.config.WORLD_DEFAULTS` (no-choice steps are world events,
    the world's own end probability is the only leave hazard); any :class:`EnvConfig` field can be given.
    """
    return RecSimEnv(WORLD_MODEL, data, world_config(config, **settings), render_mode=render_mode)


def make_cascade_world_env(data: PathLike | SequenceDataset, config: EnvConfig | None = None,
                           render_mode: str | None = None, **settings: Any) -> RecSimEnv:
    """``RecSim-CascadeWorld-v0``: the cascade ground-truth world (``recsim data synth --world cascade``).

    Users scan the slate top-down and click the first item they like enough; a funnel, satisfaction-driven
    leaving and bait items are the world's own (:mod:`user_models.synthetic.cascade`): the core's
    choice and leave settings play no part, only its bookkeeping (history, reward, step cap, candidates,
    action masks). Any :class:`EnvConfig` field can be given.
    """
    return RecSimEnv(WORLD_MODEL, cascade_dataset(data), world_config(config, **settings),
                     render_mode=render_mode)
