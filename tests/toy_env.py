"""A tiny seeded Gymnasium env with RecSimEnv's shapes (Dict history observation, slate action).

Used where a test needs *an* env to drive (rollouts, Minari export) rather than the simulator's
dynamics: a user with fixed random preferences picks one slate item by a logit rule or nothing.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

N_ITEMS, K, H = 8, 2, 4


class ToySlateEnv(gym.Env):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, max_steps: int = 6) -> None:
        self.max_steps = max_steps
        self.observation_space = gym.spaces.Dict(
            {
                "items": gym.spaces.Box(0, N_ITEMS, shape=(H,), dtype=np.int64),
                "behaviors": gym.spaces.Box(0, 2, shape=(H,), dtype=np.int64),
            }
        )
        self.action_space = gym.spaces.MultiDiscrete([N_ITEMS + 1] * K)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"items": self._items.copy(), "behaviors": self._behaviors.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._taste = self.np_random.normal(size=N_ITEMS + 1)
        self._items = np.zeros(H, dtype=np.int64)
        self._behaviors = np.zeros(H, dtype=np.int64)
        self._t = 0
        return self._obs(), {"patience": 1.0}

    def step(self, action):
        slate = np.asarray(action, dtype=np.int64)
        logits = np.append(self._taste[slate], 0.0)
        p = np.exp(logits) / np.exp(logits).sum()
        pick = int(self.np_random.choice(K + 1, p=p))
        item = int(slate[pick]) if pick < K else 0
        behavior = 0 if item == 0 else int(self.np_random.integers(1, 3))
        if item:
            self._items = np.append(self._items[1:], item)
            self._behaviors = np.append(self._behaviors[1:], behavior)
        self._t += 1
        terminated = bool(self.np_random.random() < 0.15)
        truncated = not terminated and self._t >= self.max_steps
        info = {
            "item": item,
            "behavior": behavior,
            "slate": slate,
            "patience": 1.0 - 0.1 * self._t,
            "note": "strings are not stored",
        }
        return self._obs(), float(behavior), terminated, truncated, info


class RandomSlatePolicy:
    """Uniform random slates from an explicit generator (SB3's predict signature)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        return self.rng.integers(1, N_ITEMS + 1, size=K), state
