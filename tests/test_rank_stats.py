"""Tests of akd_tf.analysis.rank_stats against hand-computed values (ties
included)."""

import math
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

from akd_tf.analysis import rank_stats


def test_rankdata_gives_tied_values_their_mean_rank():
  np.testing.assert_array_equal(rank_stats.rankdata([10, 20, 20, 5]),
                                [2.0, 3.5, 3.5, 1.0])


def test_rankdata_of_three_way_tie():
  np.testing.assert_array_equal(rank_stats.rankdata([3, 1, 3, 3]),
                                [3.0, 1.0, 3.0, 3.0])


def test_spearman_with_a_tie_in_y_matches_hand_computation():
  # Ranks of y are [1, 2, 3.5, 5, 3.5]: sum dx*dy = 8, sum dx^2 = 10,
  # sum dy^2 = 9.5, so rho = 8 / sqrt(95).
  rho = rank_stats.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
  assert rho == pytest.approx(8 / math.sqrt(95), abs=1e-12)


def test_spearman_with_ties_in_both_matches_hand_computation():
  # Ranks [1.5, 1.5, 3, 4] and [1, 2.5, 2.5, 4]: 3.75 / sqrt(4.5 * 4.5).
  rho = rank_stats.spearman([1, 1, 2, 3], [1, 2, 2, 3])
  assert rho == pytest.approx(3.75 / 4.5, abs=1e-12)


def test_kendall_tau_b_with_a_tie_in_y_matches_hand_computation():
  # 10 pairs: 8 concordant, 1 discordant, 1 tied in y only:
  # (8 - 1) / sqrt(10 * 9).
  tau = rank_stats.kendall_tau([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
  assert tau == pytest.approx(7 / math.sqrt(90), abs=1e-12)


def test_kendall_tau_b_with_ties_in_both_matches_hand_computation():
  # 6 pairs: 4 concordant, 0 discordant, 1 tied in x, 1 tied in y:
  # 4 / sqrt(5 * 5).
  tau = rank_stats.kendall_tau([1, 1, 2, 3], [1, 2, 2, 3])
  assert tau == pytest.approx(0.8, abs=1e-12)


def test_kendall_tau_counts_a_pair_tied_in_both_in_both_corrections():
  # Pairs: (0,1) tied in both, (0,2) and (1,2) concordant: 2 / sqrt(2 * 2).
  assert rank_stats.kendall_tau([1, 1, 2], [4, 4, 5]) == pytest.approx(1.0)


def test_reversed_order_gives_minus_one():
  x = [0.1, 0.5, 0.7, 0.9]
  assert rank_stats.spearman(x, x[::-1]) == pytest.approx(-1.0)
  assert rank_stats.kendall_tau(x, x[::-1]) == pytest.approx(-1.0)


def test_coefficients_agree_with_scipy_on_tied_scores():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 6, 30)  # Many ties.
  y = x + rng.integers(0, 4, 30)
  assert rank_stats.spearman(x, y) == pytest.approx(
      scipy_stats.spearmanr(x, y)[0], abs=1e-12)
  assert rank_stats.kendall_tau(x, y) == pytest.approx(
      scipy_stats.kendalltau(x, y)[0], abs=1e-12)


def test_constant_scoring_gives_nan():
  assert math.isnan(rank_stats.spearman([1, 2, 3], [4, 4, 4]))
  assert math.isnan(rank_stats.kendall_tau([4, 4, 4], [1, 2, 3]))


def test_rejects_scorings_of_different_lengths():
  with pytest.raises(ValueError, match="different numbers"):
    rank_stats.kendall_tau([1, 2, 3], [1, 2])


def test_rejects_nan_scores():
  with pytest.raises(ValueError, match="NaN"):
    rank_stats.spearman([1, float("nan"), 3], [1, 2, 3])


def test_rejects_a_single_architecture():
  with pytest.raises(ValueError, match="at least 2"):
    rank_stats.spearman([1], [2])


def test_top_k_regret_is_what_the_proxys_pick_loses():
  truth = [0.80, 0.85, 0.83, 0.90]
  proxy = [3, 4, 1, 2]  # Ranks index 1 first, then 0, 3, 2.
  assert rank_stats.top_k_regret(truth, proxy, 1) == pytest.approx(0.05)
  assert rank_stats.top_k_regret(truth, proxy, 2) == pytest.approx(0.05)
  assert rank_stats.top_k_regret(truth, proxy, 3) == pytest.approx(0.0)


def test_top_k_regret_breaks_proxy_ties_by_position():
  assert rank_stats.top_k_regret([0.7, 0.9], [1, 1], 1) == pytest.approx(0.2)


def test_top_k_regret_rejects_k_beyond_the_architectures():
  with pytest.raises(ValueError, match="k=3"):
    rank_stats.top_k_regret([0.1, 0.2], [1, 2], 3)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
