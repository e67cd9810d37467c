"""RecSimTorchRLEnv: TorchRL's spec checker, its batched autoreset convention, a collector, seeding."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

pytest.importorskip("torchrl", reason="the TorchRL view needs the [torchrl] extra")

from tensordict import TensorDict  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

from recsim_env.config import CandidateConfig, LeaveConfig  # noqa: E402
from recsim_env.torchrl_env import RecSimTorchRLEnv  # noqa: E402
from recsim_env.vector import RecSimVectorEnv  # noqa: E402

try:  # renamed to Collector in TorchRL 0.11
    from torchrl.collectors import SyncDataCollector
except ImportError:
    from torchrl.collectors import Collector as SyncDataCollector

NEVER_LEAVE = LeaveConfig(no_choice_drain=0.0, low_value_drain=0.0, end_logit_offset=-30.0)
FOUR = CandidateConfig(n_candidates=4)
MODES = {
    "candidates": {"action_mode": "candidates", "slate_size": 1, "candidates": FOUR},
    "candidates_k2": {"action_mode": "candidates", "slate_size": 2, "candidates": FOUR},
    "slate": {"action_mode": "slate", "slate_size": 2},
    "embedding": {"action_mode": "embedding", "slate_size": 2},
    "state": {"action_mode": "slate", "slate_size": 2, "observation_mode": "state"},
}


def vector(user, dataset, n=4, **kwargs):
    settings = {"history_len": 4, "max_steps": 3, **MODES["candidates"], **kwargs}
    return RecSimVectorEnv(n, model=user, data=dataset, **settings)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_check_env_specs_passes_in_every_mode(user, dataset, mode):
    env = RecSimTorchRLEnv(vector(user, dataset, **MODES[mode]))
    assert env.batch_size == torch.Size([4]) and env.device == torch.device("cpu")
    assert set(env.observation_spec.keys()) == set(env.venv.single_observation_space.spaces)
    check_env_specs(env, seed=0, break_when_any_done="both")


def test_autoreset_follows_torchrl_convention_and_matches_the_vector_env(user, dataset):
    """The step returns the terminal observation with done set; the partial reset that follows hands
    over the new users the core started in that step: the same numbers as the vector env's TensorStep."""
    env = RecSimTorchRLEnv(vector(user, dataset, n=6))
    twin = vector(user, dataset, n=6)
    env.set_seed(5)
    td = env.reset()
    obs = twin.reset_tensors(seed=5)
    for key, value in obs.items():
        torch.testing.assert_close(td[key], value)
    partial = 0
    for t in range(12):
        action = torch.tensor([t % 4, (t + 1) % 4, 2, 3, 1, 0])
        td = env.step(td.set("action", action))
        out = twin.step_tensors(action)
        torch.testing.assert_close(td["next", "reward"][:, 0], out.reward)
        for flag in ("done", "terminated", "truncated"):
            assert torch.equal(td["next", flag][:, 0], getattr(out, flag)), flag
        for key in obs:
            torch.testing.assert_close(td["next", key], out.final_obs[key])  # the terminal observation
        td = env.step_mdp(td)
        if out.done.any():
            partial += int(not out.done.all())
            td = env.reset(td.set("_reset", out.done[:, None].clone()))
            assert not td["done"].any()
        for key in obs:
            torch.testing.assert_close(td[key], out.obs[key])  # the new users where rows were reset
    assert partial >= 2  # the test did exercise partial resets (users leave at different steps)


def test_partial_reset_of_a_running_row_is_refused(user, dataset):
    env = RecSimTorchRLEnv(vector(user, dataset, leave=NEVER_LEAVE, max_steps=10))
    td = env.reset()
    td = env.step_mdp(env.step(td.set("action", torch.zeros(4, dtype=torch.long))))
    with pytest.raises(ValueError, match="only after it finished"):
        env.reset(td.set("_reset", torch.tensor([[True], [False], [False], [False]])))


def test_sync_data_collector_runs_batches(user, dataset):
    env = RecSimTorchRLEnv(vector(user, dataset))
    env.set_seed(0)
    collector = SyncDataCollector(env, None, frames_per_batch=4 * 6, total_frames=4 * 6 * 3)
    batches = list(collector)
    collector.shutdown()
    assert len(batches) == 3
    for batch in batches:
        assert batch.batch_size == torch.Size([4, 6])
        assert torch.isfinite(batch["next", "reward"]).all()
        assert (batch["action"] >= 0).all() and (batch["action"] < 4).all()
    dones = torch.cat([b["next", "done"] for b in batches], dim=1)
    assert dones.any()  # max_steps=3 within 18 steps: rows finished and were reset by the collector
    # after a done, the collector's next root observation is a new user (history of a fresh prefix)
    assert all(int(b["next", "done"].sum()) > 0 for b in batches[1:])


def _rollout(user, dataset, seed):
    env = RecSimTorchRLEnv(vector(user, dataset))
    env.set_seed(seed)
    torch.manual_seed(123)  # the random policy's actions (TorchRL samples the action spec)
    return env.rollout(12, break_when_any_done=False)


def test_same_seed_same_trajectories(user, dataset):
    a, b = _rollout(user, dataset, 3), _rollout(user, dataset, 3)
    assert isinstance(a, TensorDict) and a.batch_size == torch.Size([4, 12])
    assert (a == b).all()
    c = _rollout(user, dataset, 4)
    assert not torch.equal(a["next", "history_items"], c["next", "history_items"])


def test_missing_extra_names_it(monkeypatch):
    for name in ("tensordict", "torchrl", "torchrl.data", "torchrl.envs"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of any of them now fails
    monkeypatch.delitem(sys.modules, "recsim_env.torchrl_env")
    with pytest.raises(ImportError, match=r"recsim-env\[torchrl\]"):
        importlib.import_module("recsim_env.torchrl_env")
