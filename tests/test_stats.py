"""Bootstrap intervals: exact answers on tiny samples, the normal approximation, coverage, pairing."""

import numpy as np
import pytest

from recsim_env.offline.stats import Interval, bootstrap_mean_ci, paired_difference_ci, replicate_interval


def test_constant_sample_gives_zero_width_interval():
    ci = bootstrap_mean_ci(np.full(10, 3.5), np.random.default_rng(0))
    assert (ci.estimate, ci.low, ci.high) == (3.5, 3.5, 3.5)


def test_exact_bootstrap_distribution_of_a_tiny_sample():
    # Resampled means of [0, 0, 0, 1] are Binomial(4, 1/4) / 4: P(0)=.316, P(.25)=.422, P(.5)=.211,
    # P(.75)=.047, P(1)=.004. The CDF passes 0.025 at 0 and 0.975 at 0.75, so the 95% interval is [0, .75].
    ci = bootstrap_mean_ci(np.array([0.0, 0.0, 0.0, 1.0]), np.random.default_rng(1), n_resamples=20000)
    assert ci.estimate == 0.25
    assert (ci.low, ci.high) == (0.0, 0.75)


def test_large_sample_matches_the_normal_interval():
    rng = np.random.default_rng(2)
    x = rng.normal(10.0, 2.0, size=4000)
    ci = bootstrap_mean_ci(x, np.random.default_rng(3))
    expected_half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert ci.low < x.mean() < ci.high
    assert ci.half_width == pytest.approx(expected_half, rel=0.08)


def test_coverage_is_near_nominal():
    rng = np.random.default_rng(4)
    covered = 0
    trials = 300
    for _ in range(trials):
        ci = bootstrap_mean_ci(rng.exponential(1.0, size=60), rng, n_resamples=600)
        covered += ci.low <= 1.0 <= ci.high
    # Percentile intervals under-cover slightly on skewed data at n=60; the band excludes gross errors.
    assert 0.88 <= covered / trials <= 0.99


def test_same_seed_same_interval_and_chunking_does_not_change_results(monkeypatch):
    x = np.random.default_rng(5).normal(size=300)
    a = bootstrap_mean_ci(x, np.random.default_rng(7), n_resamples=500)
    monkeypatch.setattr("recsim_env.offline.stats._CHUNK_ELEMENTS", 300 * 7)  # 7 resamples per chunk
    b = bootstrap_mean_ci(x, np.random.default_rng(7), n_resamples=500)
    assert a == b


def test_replicate_interval_is_the_t_interval():
    # Mean 2, sd 1, n = 3: half-width t(0.975, 2) * 1 / sqrt(3) = 4.3027 / 1.7321 = 2.4841.
    ci = replicate_interval(np.array([1.0, 2.0, 3.0]))
    assert ci.estimate == 2.0
    assert (ci.low, ci.high) == pytest.approx((2.0 - 2.4841, 2.0 + 2.4841), abs=1e-4)
    single = replicate_interval(np.array([0.4]))
    assert single.estimate == 0.4 and np.isnan(single.low) and np.isnan(single.high)


def test_paired_difference_removes_shared_variance():
    rng = np.random.default_rng(10)
    user_effect = rng.normal(0.0, 10.0, size=500)  # large between-user variance, shared by both policies
    a = user_effect + 1.0 + rng.normal(0.0, 0.1, size=500)
    b = user_effect + rng.normal(0.0, 0.1, size=500)
    diff = paired_difference_ci(a, b, np.random.default_rng(11))
    assert diff.low > 0.9 and diff.high < 1.1
    # Unpaired intervals of the two means overlap: only pairing resolves the difference.
    assert bootstrap_mean_ci(a, rng).overlaps(bootstrap_mean_ci(b, rng))


def test_paired_difference_of_a_constant_shift_is_exact():
    x = np.random.default_rng(12).normal(size=50)
    diff = paired_difference_ci(x + 2.0, x, np.random.default_rng(0))
    assert diff.low == pytest.approx(2.0) and diff.high == pytest.approx(2.0)


def test_bad_inputs_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="empty"):
        bootstrap_mean_ci(np.array([]), rng)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean_ci(np.array([1.0, np.nan]), rng)
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean_ci(np.array([1.0]), rng, level=1.5)
    with pytest.raises(ValueError, match="equal sizes"):
        paired_difference_ci(np.zeros(3), np.zeros(4), rng)


def test_interval_overlap():
    assert Interval(0, 0, 1).overlaps(Interval(0, 1, 2))
    assert not Interval(0, 0, 1).overlaps(Interval(0, 1.5, 2))
