"""Tests of the MnasNet and TuNAS rewards and their corner cases."""

import math
import sys

import pytest

from akd_tf.nas import reward


@pytest.mark.parametrize("kind", ["soft", "hard", "abs"])
def test_reward_exactly_at_target_is_the_accuracy(kind):
  config = reward.RewardConfig(target_ms=5.0, kind=kind)
  assert reward.compute_reward(config, 0.8, 5.0) == pytest.approx(0.8)


def test_soft_reward_matches_mnasnet_formula_on_both_sides():
  config = reward.RewardConfig(target_ms=10.0)
  assert reward.compute_reward(config, 0.7, 20.0) == pytest.approx(
      0.7 * 2.0 ** -0.07)
  assert reward.compute_reward(config, 0.7, 5.0) == pytest.approx(
      0.7 * 0.5 ** -0.07)
  assert reward.compute_reward(config, 0.7, 5.0) > 0.7


def test_hard_reward_ignores_latency_under_target_and_divides_over_it():
  config = reward.RewardConfig(target_ms=10.0, kind="hard")
  assert reward.compute_reward(config, 0.7, 1.0) == pytest.approx(0.7)
  assert reward.compute_reward(config, 0.7, 20.0) == pytest.approx(0.35)


def test_mnas_kind_uses_the_given_exponents():
  config = reward.RewardConfig(target_ms=4.0, kind="mnas", alpha=-0.1,
                               beta=-0.5)
  assert reward.compute_reward(config, 0.5, 2.0) == pytest.approx(
      0.5 * 0.5 ** -0.1)
  assert reward.compute_reward(config, 0.5, 16.0) == pytest.approx(0.25)


def test_absolute_reward_penalizes_both_sides_equally():
  config = reward.RewardConfig(target_ms=10.0, kind="abs", beta=-0.2)
  under = reward.compute_reward(config, 0.9, 5.0)
  over = reward.compute_reward(config, 0.9, 15.0)
  assert under == pytest.approx(0.9 - 0.1)
  assert over == pytest.approx(under)


@pytest.mark.parametrize("kind", ["soft", "hard", "abs"])
def test_zero_accuracy_gives_no_reward_from_latency_alone(kind):
  config = reward.RewardConfig(target_ms=10.0, kind=kind)
  value = reward.compute_reward(config, 0.0, 3.0)
  if kind == "abs":
    assert value == pytest.approx(-0.07 * 0.7)
  else:
    assert value == 0.0


@pytest.mark.parametrize("accuracy, latency", [(None, 3.0), (0.9, None),
                                               (None, None)])
def test_failed_candidate_has_no_reward(accuracy, latency):
  # Not 0: that sat below every real reward; the controller has its own
  # penalty for a failure.
  for kind in ("soft", "abs"):
    config = reward.RewardConfig(target_ms=10.0, kind=kind)
    assert reward.compute_reward(config, accuracy, latency) is None


@pytest.mark.parametrize("target", [0.0, -5.0, math.inf, math.nan])
def test_invalid_target_is_rejected(target):
  with pytest.raises(ValueError, match="target"):
    reward.RewardConfig(target_ms=target)
  with pytest.raises(ValueError, match="target"):
    reward.mnas_reward(0.5, 1.0, target)


@pytest.mark.parametrize("accuracy, latency, message", [
    (0.5, 0.0, "latency"), (0.5, -1.0, "latency"), (1.5, 1.0, "accuracy"),
    (math.nan, 1.0, "accuracy")])
def test_invalid_measurement_is_rejected(accuracy, latency, message):
  with pytest.raises(ValueError, match=message):
    reward.compute_reward(reward.RewardConfig(target_ms=1.0), accuracy,
                          latency)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "fast"}, "not one of"),
    ({"kind": "soft", "alpha": -0.5}, "use kind='mnas'"),
    ({"kind": "mnas", "alpha": -0.1}, "needs both"),
    ({"kind": "abs", "alpha": -0.1}, "no alpha"),
    ({"kind": "mnas", "alpha": 0.1, "beta": -0.1}, "must be <= 0"),
])
def test_bad_reward_config_names_the_problem(kwargs, message):
  with pytest.raises(ValueError, match=message):
    reward.RewardConfig(target_ms=1.0, **kwargs)


def test_config_round_trip():
  config = reward.RewardConfig(target_ms=3.0, kind="abs", beta=-0.3)
  assert reward.RewardConfig.from_config(config.get_config()) == config
  assert config.get_config()["alpha"] is None


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
