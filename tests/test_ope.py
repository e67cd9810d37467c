"""Off-policy estimators on a slate bandit whose true target value is known in closed form."""

import numpy as np
import pytest

from recsim_env.offline.ope import (
    SlateLog,
    effective_sample_size,
    estimate_all,
    estimator_errors,
    gather_slot_probs,
    sample_product_slates,
    snips,
    softmax,
)

N_CTX, K, M = 3, 2, 4


def bandit(seed: int = 0):
    """Slot-reward means theta[x, j, a] and logging / target product policies [x, j, a]."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.0, 0.5, size=(N_CTX, K, M))
    mu = softmax(rng.normal(size=(N_CTX, K, M)))
    pi = softmax(3.0 * theta + rng.normal(scale=0.3, size=(N_CTX, K, M)), temperature=0.3)
    return theta, mu, pi


def true_value(theta, pi, additive: bool = True) -> float:
    if additive:
        return float((pi * theta).sum(axis=(1, 2)).mean())
    # Non-additive: reward 1 if any slot fires, P = 1 - prod_j (1 - E_pi theta_j).
    fire = (pi * theta).sum(axis=2)
    return float((1 - (1 - fire).prod(axis=1)).mean())


def simulate(theta, mu, pi, n, rng, *, model_shift=0.1, additive=True) -> SlateLog:
    x = rng.integers(0, N_CTX, size=n)
    slates = sample_product_slates(mu[x], rng)
    means = gather_slot_probs(theta[x], slates)
    slot_rewards = (rng.random((n, K)) < means).astype(float)
    rewards = slot_rewards.sum(axis=1) if additive else slot_rewards.max(axis=1)
    theta_hat = theta + model_shift  # a deliberately wrong (additive) reward model
    return SlateLog(
        rewards=rewards,
        slot_rewards=slot_rewards,
        logging_slot_probs=gather_slot_probs(mu[x], slates),
        target_slot_probs=gather_slot_probs(pi[x], slates),
        q_logged=gather_slot_probs(theta_hat[x], slates).sum(axis=1),
        q_target=(pi[x] * theta_hat[x]).sum(axis=(1, 2)),
    )


def test_product_sampler_matches_its_distribution():
    probs = np.broadcast_to(np.array([0.1, 0.2, 0.3, 0.4]), (20000, 2, 4))
    slates = sample_product_slates(probs, np.random.default_rng(0))
    freq = np.bincount(slates.reshape(-1), minlength=4) / slates.size
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.01)


def test_unbiased_estimators_average_to_the_truth():
    theta, mu, pi = bandit()
    truth = true_value(theta, pi)
    rng = np.random.default_rng(1)
    reps = [estimate_all(simulate(theta, mu, pi, 400, rng)) for _ in range(300)]
    errors = {e.estimator: e for e in estimator_errors({k: [r[k] for r in reps] for k in reps[0]}, truth)}
    for name in ("ips", "iips", "pi", "dr"):  # unbiased here; DR despite the wrong model
        se = np.std([r[name] for r in reps]) / np.sqrt(len(reps))
        assert abs(errors[name].bias) < 4 * se + 1e-3, (name, errors[name])
    assert abs(errors["snips"].bias) < 0.01  # O(1/n) bias only
    # DM inherits the model's error: each of the K slots is over-predicted by 0.1.
    assert errors["dm"].bias == pytest.approx(K * 0.1, abs=0.01)
    # Exploiting the slate structure and the model cuts variance: IIPS and DR beat full-slate IPS.
    assert errors["iips"].rmse < errors["ips"].rmse
    assert errors["dr"].rmse < errors["ips"].rmse


def test_estimators_converge_with_more_data():
    theta, mu, pi = bandit(seed=2)
    truth = true_value(theta, pi)
    rng = np.random.default_rng(3)

    def rmse(n: int) -> dict[str, float]:
        reps = [estimate_all(simulate(theta, mu, pi, n, rng)) for _ in range(40)]
        return {
            e.estimator: e.rmse for e in estimator_errors({k: [r[k] for r in reps] for k in reps[0]}, truth)
        }

    small, large = rmse(100), rmse(6400)
    for name in ("ips", "snips", "iips", "pi", "dr"):
        # RMSE ~ 1/sqrt(n): 64x the data should give ~8x smaller error; allow generous noise.
        assert large[name] < small[name] / 4, (name, small[name], large[name])


def test_slot_estimators_are_biased_when_slots_interact():
    # Two slots, two actions; reward 1 if any slot fires (substitutes, not additive). Slot means 0.9 for
    # action 0 and 0.1 for action 1; uniform logging; the target always shows action 0 in both slots.
    # Truth: 1 - 0.1^2 = 0.99. E[PI] = 1/4 * sum_A r(A) (w1 + w2 - 1) with w_j = 2 [a_j = 0]:
    # (0.99 * 3 + 0.91 * 1 + 0.91 * 1 + 0.19 * (-1)) / 4 = 1.15, a bias of +0.16.
    theta = np.broadcast_to(np.array([0.9, 0.1]), (N_CTX, K, 2)).copy()
    mu = np.full((N_CTX, K, 2), 0.5)
    pi = np.zeros((N_CTX, K, 2))
    pi[..., 0] = 1.0
    rng = np.random.default_rng(5)
    reps = [estimate_all(simulate(theta, mu, pi, 2000, rng, additive=False)) for _ in range(50)]
    mean = {k: float(np.mean([r[k] for r in reps])) for k in reps[0]}
    assert mean["ips"] == pytest.approx(0.99, abs=0.01)
    assert mean["pi"] == pytest.approx(1.15, abs=0.01)


def test_deterministic_target_and_validation():
    theta, mu, _ = bandit()
    det = np.zeros_like(mu)
    det[..., 0] = 1.0  # always action 0 in both slots
    truth = true_value(theta, det)
    log = simulate(theta, mu, det, 50000, np.random.default_rng(6))
    est = estimate_all(log)
    se = np.std(log.slate_weights * log.rewards) / np.sqrt(log.rewards.size)
    assert abs(est["ips"] - truth) < 4 * se
    assert abs(est["snips"] - truth) < 4 * se
    with pytest.raises(ValueError, match="> 0"):
        SlateLog(np.zeros(1), np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)))
    no_model = SlateLog(log.rewards, log.slot_rewards, log.logging_slot_probs, log.target_slot_probs)
    assert set(estimate_all(no_model)) == {"ips", "snips", "iips", "pi"}
    # Kish's ESS: equal weights use every sample; a target the log never shows has no support.
    same = SlateLog(log.rewards, log.slot_rewards, log.logging_slot_probs, log.logging_slot_probs)
    assert effective_sample_size(same) == pytest.approx(log.rewards.size)
    unseen = SlateLog(
        log.rewards, log.slot_rewards, log.logging_slot_probs, np.zeros_like(log.target_slot_probs)
    )
    assert effective_sample_size(unseen) == 0.0 and np.isnan(snips(unseen))
