"""Off-policy evaluation of slate policies from logs with propensities.

Setting (a contextual slate bandit): for each logged decision ``i`` the logging policy ``mu`` saw context
``x_i``, drew a slate ``A_i = (a_i1, ..., a_ik)`` and observed a slate reward ``r_i`` and, where the
reward can be attributed to a slot, per-slot rewards ``r_ij``. The estimand is the target policy's
value ``V(pi) = E_x E_{A ~ pi(x)} [r(x, A)]``.

The logging policy draws each slot independently (a product policy; two slots may repeat an item), so
``mu(A | x) = prod_j mu_j(a_j | x)`` exactly and the slot marginals are the factors. Estimators:

- **IPS** (full-slate importance sampling): ``mean(w_i r_i)``, ``w_i = pi(A_i|x_i) / mu(A_i|x_i)``.
  Unbiased whenever ``mu`` covers ``pi``; variance grows exponentially with the slate size.
- **SNIPS**: ``sum(w_i r_i) / sum(w_i)``; biased for finite n, consistent, far lower variance.
- **DM** (direct method): ``mean_i E_{A~pi(x_i)} q(x_i, A)`` with a reward model ``q``; no variance from
  weights, biased by the model's error.
- **DR** (doubly robust): ``DM + mean(w_i (r_i - q(x_i, A_i)))``; unbiased if either the weights or
  the model are right.
- **IIPS** (independent IPS, Li et al. 2018): ``mean_i sum_j w_ij r_ij`` with slot weights
  ``w_ij = pi_j(a_ij|x_i) / mu_j(a_ij|x_i)``; unbiased when the reward of a slot depends only on that
  slot's item (no interaction between slots).
- **PI** (pseudo-inverse, Swaminathan et al. 2017): for a product logging policy it reduces to
  ``mean_i r_i (sum_j w_ij - k + 1)``; unbiased when the slate reward is additive over slots.

A simulated user chooses at most one item per slate (multinomial logit), so slot rewards interact and
IIPS/PI are biased there by design; the comparison table measures that bias against ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESTIMATORS = ("ips", "snips", "dm", "dr", "iips", "pi")


@dataclass(frozen=True)
class SlateLog:
    """Logged slate decisions and what each policy thinks of them.

    Attributes:
        rewards: ``[n]`` slate rewards.
        slot_rewards: ``[n, k]`` reward attributed to each slot (e.g. the reward of the step if the user
            chose that slot, else 0); rows sum to ``rewards`` when the attribution is complete.
        logging_slot_probs: ``[n, k]`` ``mu_j(a_ij | x_i)``, each > 0.
        target_slot_probs: ``[n, k]`` ``pi_j(a_ij | x_i)`` of the target policy (product form; a
            deterministic target has 0/1 entries).
        q_logged: ``[n]`` reward model's prediction for the logged slate, or None (no DM/DR).
        q_target: ``[n]`` reward model's expectation under the target policy, or None.
    """

    rewards: np.ndarray
    slot_rewards: np.ndarray
    logging_slot_probs: np.ndarray
    target_slot_probs: np.ndarray
    q_logged: np.ndarray | None = None
    q_target: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.rewards.shape[0]
        for name in ("slot_rewards", "logging_slot_probs", "target_slot_probs"):
            arr = getattr(self, name)
            if arr.ndim != 2 or arr.shape[0] != n:
                raise ValueError(f"{name} must be [n={n}, k], got {arr.shape}")
        if self.logging_slot_probs.shape != self.target_slot_probs.shape:
            raise ValueError("logging and target slot probabilities must have the same shape")
        if np.any(self.logging_slot_probs <= 0):
            raise ValueError("logging propensities must be > 0 (the logging policy must cover every slate)")

    @property
    def slot_weights(self) -> np.ndarray:
        """``[n, k]`` per-slot importance weights."""
        return self.target_slot_probs / self.logging_slot_probs

    @property
    def slate_weights(self) -> np.ndarray:
        """``[n]`` full-slate importance weights (product of the slot weights)."""
        return self.slot_weights.prod(axis=1)


def ips(log: SlateLog) -> float:
    """Full-slate inverse propensity scoring."""
    return float((log.slate_weights * log.rewards).mean())


def snips(log: SlateLog) -> float:
    """Self-normalised IPS; NaN when no logged slate has positive weight (the log says nothing)."""
    w = log.slate_weights
    total = w.sum()
    return float((w * log.rewards).sum() / total) if total > 0 else float("nan")


def effective_sample_size(log: SlateLog) -> float:
    """Kish's effective sample size of the full-slate weights, ``(sum w)^2 / sum w^2`` (0: no support).

    How many logged decisions the importance-weighted estimators effectively rest on; far below ``n``
    means the logging policy rarely shows the target's slates and IPS-type estimates are noise.
    """
    w = log.slate_weights
    square = float((w**2).sum())
    return float(w.sum() ** 2 / square) if square > 0 else 0.0


def _require_model(log: SlateLog) -> tuple[np.ndarray, np.ndarray]:
    if log.q_logged is None or log.q_target is None:
        raise ValueError("DM and DR need reward-model predictions (q_logged and q_target)")
    return log.q_logged, log.q_target


def direct_method(log: SlateLog) -> float:
    """Mean of the reward model's expected reward under the target policy."""
    _, q_target = _require_model(log)
    return float(q_target.mean())


def doubly_robust(log: SlateLog) -> float:
    """Direct method plus the importance-weighted residual of the reward model."""
    q_logged, q_target = _require_model(log)
    return float(q_target.mean() + (log.slate_weights * (log.rewards - q_logged)).mean())


def independent_ips(log: SlateLog) -> float:
    """Per-slot importance weights on per-slot rewards."""
    return float((log.slot_weights * log.slot_rewards).sum(axis=1).mean())


def pseudo_inverse(log: SlateLog) -> float:
    """Pseudo-inverse estimator for a product logging policy: ``r (sum_j w_j - k + 1)``."""
    k = log.slot_weights.shape[1]
    return float((log.rewards * (log.slot_weights.sum(axis=1) - k + 1)).mean())


def estimate_all(log: SlateLog) -> dict[str, float]:
    """Every estimator that the log supports (DM and DR only with reward-model predictions)."""
    out = {"ips": ips(log), "snips": snips(log), "iips": independent_ips(log), "pi": pseudo_inverse(log)}
    if log.q_logged is not None and log.q_target is not None:
        out["dm"] = direct_method(log)
        out["dr"] = doubly_robust(log)
    return out


@dataclass(frozen=True)
class EstimatorError:
    """Bias and RMSE of one estimator over independent replicates against the true value."""

    estimator: str
    mean_estimate: float
    truth: float
    bias: float
    rmse: float
    n_replicates: int

    @property
    def relative_bias(self) -> float:
        return self.bias / abs(self.truth) if self.truth != 0 else float("nan")


def estimator_errors(estimates: dict[str, list[float]], truth: float) -> list[EstimatorError]:
    """Bias (mean estimate - truth) and RMSE of each estimator's replicate estimates."""
    rows = []
    for name, values in estimates.items():
        v = np.asarray(values, dtype=np.float64)
        rows.append(
            EstimatorError(
                estimator=name,
                mean_estimate=float(v.mean()),
                truth=truth,
                bias=float(v.mean() - truth),
                rmse=float(np.sqrt(((v - truth) ** 2).mean())),
                n_replicates=int(v.size),
            )
        )
    return rows


def sample_product_slates(slot_probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one slate per row from a product policy.

    Args:
        slot_probs: ``[n, k, m]`` per-row, per-slot distributions over ``m`` actions (rows sum to 1).
        rng: the source of randomness.

    Returns:
        ``[n, k]`` action indices in ``0..m-1``.
    """
    cdf = np.cumsum(slot_probs, axis=-1)
    u = rng.random(slot_probs.shape[:-1] + (1,))
    return np.minimum((u > cdf).sum(axis=-1), slot_probs.shape[-1] - 1)


def gather_slot_probs(slot_probs: np.ndarray, slates: np.ndarray) -> np.ndarray:
    """``[n, k]`` probability of each logged slot action under ``[n, k, m]`` product distributions."""
    return np.take_along_axis(slot_probs, slates[..., None], axis=-1)[..., 0]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis at ``temperature`` (> 0)."""
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
