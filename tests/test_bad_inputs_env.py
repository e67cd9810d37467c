"""Bad inputs to the env and its core: each is a clear error, and nothing is stepped or changed.

Order enforcement of the single env, the fast path's action check (``step_tensors``), inactive rows of
the core left alone, and a model whose outputs are NaN (the core must never hand out NaN probabilities).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import recsim_env  # noqa: F401  (registers the env ids)
from recsim_env.config import CandidateConfig, LeaveConfig, SimConfig
from recsim_env.env import RecSimEnv
from recsim_env.factory import build_core
from recsim_env.numerics import ModelOutputError
from recsim_env.testing import logged_dataset
from recsim_env.vector import RecSimVectorEnv
from user_models.errors import InputError
from user_models.handwritten import HandwrittenUser, clickbait_user

NEVER_LEAVE = LeaveConfig(no_choice_drain=0.0, low_value_drain=0.0, end_logit_offset=-30.0)


@pytest.fixture(scope="module")
def user():
    return clickbait_user(10)


@pytest.fixture(scope="module")
def dataset(user):
    return logged_dataset(user, n_users=30, seed=0)


# --- the single env: Gymnasium's order-enforcing contract ------------------------------------------
def test_step_before_the_first_reset_is_refused(user, dataset):
    env = RecSimEnv(user, dataset, slate_size=3)
    with pytest.raises(gym.error.ResetNeeded, match="before calling env.reset"):
        env.step(np.array([1, 2, 3]))
    assert env.core.user_state is None  # nothing was stepped


@pytest.mark.parametrize(("settings", "ended"), [
    ({"max_steps": 2, "leave": NEVER_LEAVE}, "truncated"),
    ({"max_steps": 100, "leave": LeaveConfig(end_logit_offset=30.0)}, "terminated"),
])
def test_step_after_the_episode_ended_is_refused_until_reset(user, dataset, settings, ended):
    env = RecSimEnv(user, dataset, slate_size=3, **settings)
    env.reset(seed=0)
    done, steps = False, 0
    while not done:
        _, _, terminated, truncated, _ = env.step(np.array([1, 2, 3]))
        done, steps = terminated or truncated, steps + 1
        assert steps <= settings["max_steps"]
    assert (terminated if ended == "terminated" else truncated)
    before = (int(env.core.steps[0]), float(env.core.episode_return[0]), env.core.history_items.clone())
    for _ in range(2):  # every further step is refused, and changes nothing
        with pytest.raises(gym.error.ResetNeeded, match=f"{ended}.*call env.reset"):
            env.step(np.array([1, 2, 3]))
    assert before[:2] == (int(env.core.steps[0]), float(env.core.episode_return[0]))
    assert torch.equal(before[2], env.core.history_items)
    env.reset()
    env.step(np.array([1, 2, 3]))  # a reset starts a new episode
    assert int(env.core.steps[0]) == 1


def test_gym_make_env_enforces_the_order_too(user, dataset):
    env = gym.make("RecSim-v0", model=user, data=dataset, slate_size=3, max_steps=1, leave=NEVER_LEAVE)
    env.reset(seed=0)
    assert env.step(np.array([1, 2, 3]))[3]
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.array([1, 2, 3]))


# --- the torch fast path: one fused bounds check, validate=True by default ----------------------------
def _vector(user, dataset, action_mode="slate"):
    kwargs = {"slate_size": 3, "history_len": 8, "action_mode": action_mode}
    if action_mode == "candidates":
        kwargs["candidates"] = CandidateConfig(n_candidates=6)
    env = RecSimVectorEnv(4, user, dataset, **kwargs)
    env.reset_tensors(seed=0)
    return env


def _core_state(env):
    core = env.core
    return {name: getattr(core, name).clone() for name in
            ("steps", "patience", "episode_return", "history_items", "since_event")}


@pytest.mark.parametrize(("action_mode", "value", "message"), [
    ("slate", -7, r"slate action value -7 out of range \[0, 20\]"),
    ("slate", 10000, r"slate action value 10000 out of range \[0, 20\]"),
    ("slate", 21, r"slate action value 21 out of range \[0, 20\]"),
    ("slate", 2.5, r"slate action has dtype torch.float32, expected integers"),
    ("slate", True, r"slate action has dtype torch.bool, expected integers"),
    ("candidates", 6, r"candidates action value 6 out of range \[0, 5\]"),
    ("candidates", -1, r"candidates action value -1 out of range \[0, 5\]"),
    ("candidates", 1.0, r"candidates action has dtype torch.float32"),
    ("embedding", float("nan"), r"embedding action must be finite and within \[-1, 1\]"),
    ("embedding", 1.5, r"embedding action must be finite and within \[-1, 1\]"),
    ("embedding", 1, r"embedding action has dtype torch.int64, expected a float tensor"),
])
def test_step_tensors_rejects_bad_actions_and_steps_nothing(user, dataset, action_mode, value, message):
    env = _vector(user, dataset, action_mode)
    shape = env.action_space.shape
    good = torch.from_numpy(np.asarray(env.action_space.sample()))
    bad = good.clone().to(torch.tensor(value).dtype)
    bad.view(-1)[-1] = value
    state = _core_state(env)
    with pytest.raises(ValueError, match=message):
        env.step_tensors(bad)
    for name, before in state.items():
        assert torch.equal(getattr(env.core, name), before), name
    env.step_tensors(good.reshape(shape))  # the env is still usable


def test_step_tensors_validate_false_is_the_documented_fast_path(user, dataset):
    assert "validate=False" in (RecSimVectorEnv.step_tensors.__doc__ or "")
    a, b = _vector(user, dataset), _vector(user, dataset)
    actions = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 1, 2]])
    for _ in range(5):
        checked, fast = a.step_tensors(actions), b.step_tensors(actions, validate=False)
        assert torch.equal(checked.reward, fast.reward)
        assert torch.equal(checked.obs["history_items"], fast.obs["history_items"])


# --- the core never changes inactive rows ------------------------------------------------------------
@pytest.mark.parametrize("no_choice_event", [False, True])
def test_core_step_never_changes_inactive_rows(user, dataset, no_choice_event):
    config = SimConfig(slate_size=3, history_len=6, candidates=CandidateConfig(n_candidates=6),
                       no_choice_event=no_choice_event)
    core = build_core(user, dataset, config, n_users=6)
    core.manual_seed(0)
    core.reset()
    active = torch.tensor([True, False, True, False, False, True])
    names = ("patience", "steps", "episode_return", "since_event", "history_items", "history_behaviors",
             "history_lengths", "candidates")
    before = {name: getattr(core, name).clone() for name in names}
    logits, end = core.catalogue_logits().clone(), core.model.end_prob(core.user_state).clone()
    slate = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 1, 2], [3, 4, 5], [6, 7, 8]])
    for _ in range(8):
        record = core.step(slate, active=active)
        idle = ~active
        assert (record.reward[idle] == 0).all() and (record.position[idle] == -1).all()
        assert (record.item[idle] == 0).all() and (record.behavior[idle] == 0).all()
        assert not record.terminated[idle].any() and not record.truncated[idle].any()
        assert (record.leave_prob[idle] == 0).all()
    for name in names:
        assert torch.equal(getattr(core, name)[~active], before[name][~active]), name
    assert torch.equal(core.catalogue_logits()[~active], logits[~active])
    assert torch.equal(core.model.end_prob(core.user_state)[~active], end[~active])
    assert (core.steps[active] == 8).all()


# --- a NaN model: a clear error naming the quantity and the rows, never NaN probabilities -------------
class NaNUser(HandwrittenUser):
    """The clickbait user with one quantity replaced by NaN (as with diverged weights)."""

    def __init__(self, config, broken: str) -> None:
        super().__init__(config)
        self.broken = broken

    def item_logits(self, state, items):
        logits = super().item_logits(state, items)
        return torch.full_like(logits, float("nan")) if self.broken == "item_logits" else logits

    def behavior_probs(self, state, items):
        probs = super().behavior_probs(state, items)
        return torch.full_like(probs, float("nan")) if self.broken == "behavior_probs" else probs

    def end_prob(self, state):
        p = super().end_prob(state)
        return torch.full_like(p, float("inf")) if self.broken == "end_prob" else p


@pytest.mark.parametrize(("broken", "quantity"), [
    ("item_logits", "choice utilities"),
    ("behavior_probs", "behavior probabilities"),
    ("end_prob", "session-end probabilities"),
])
def test_nan_model_outputs_are_a_clear_error(user, dataset, broken, quantity):
    model = NaNUser(user.config, broken)
    always_choose = {"choice": {"no_choice_logit": -30.0}}  # every row consumes: behavior probs are used
    env = RecSimVectorEnv(4, model, dataset, slate_size=3, **always_choose)
    env.reset(seed=0)
    with pytest.raises(ModelOutputError, match=rf"{quantity} are not finite \(NaN or inf\) for 4 of 4 "
                                               "active rows") as info:
        env.step(np.tile([1, 2, 3], (4, 1)))
    assert isinstance(info.value, InputError)  # the CLI prints one line, exit 2
    assert int(env.core.steps.sum()) == 0


def test_nan_rows_that_are_inactive_are_not_reported(user, dataset):
    core = build_core(NaNUser(user.config, "end_prob"), dataset, SimConfig(slate_size=3), n_users=3)
    core.manual_seed(0)
    core.reset()
    with pytest.raises(ModelOutputError, match="for 1 of 1 active rows"):
        core.step(torch.tensor([[1, 2, 3]]).expand(3, -1), active=torch.tensor([False, True, False]))
