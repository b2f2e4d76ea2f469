"""Tests of akd_tf.controller: sampling, REINFORCE updates, exact resume."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from akd_tf import controller as controller_lib
from akd_tf import search_space

SPACE_CHOICES = search_space.SearchSpace().num_choices
SMALL_CHOICES = (4, 1, 2, 3, 2)
KINDS = controller_lib.CONTROLLER_KINDS


def toy_reward(actions):
  return sum(a == 0 for a in actions) / len(actions)


def make(kind="reinforce", num_choices=SMALL_CHOICES, **config):
  return controller_lib.make_controller(
      kind, num_choices, controller_lib.ControllerConfig(**config))


def run_batches(controller, num_batches, batch_size=2):
  """Samples and updates on the toy reward; returns samples and stats."""
  samples, stats = [], []
  for _ in range(num_batches):
    batch = [controller.sample() for _ in range(batch_size)]
    samples.append(batch)
    stats.append(controller.update([(a, toy_reward(a)) for a in batch]))
  return samples, stats


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_choices", [SMALL_CHOICES, SPACE_CHOICES])
def test_samples_have_one_in_range_action_per_decision(kind, num_choices):
  controller = make(kind, num_choices)
  for _ in range(20):
    actions = controller.sample()
    assert isinstance(actions, tuple)
    assert len(actions) == len(num_choices)
    assert all(isinstance(a, int) and 0 <= a < n
               for a, n in zip(actions, num_choices))


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_same_samples_and_updates(kind):
  first = run_batches(make(kind, seed=3), 3)
  second = run_batches(make(kind, seed=3), 3)
  other = run_batches(make(kind, seed=4), 3)
  assert first == second
  assert first[0] != other[0]


def test_random_controller_samples_uniformly():
  controller = make("random", (2, 3, 4))
  counts = [np.zeros(n) for n in (2, 3, 4)]
  for _ in range(1200):
    for t, a in enumerate(controller.sample()):
      counts[t][a] += 1
  for count in counts:
    expected = 1200 / len(count)
    assert np.all(np.abs(count - expected) < 5 * math.sqrt(expected))


def test_update_follows_reinforce_loss_and_moving_average_baseline():
  controller = make(entropy_weight=0.01, baseline_decay=0.9)
  stats = controller.update([((0, 0, 0, 0, 0), 1.0), ((1, 0, 1, 2, 1), 0.0)])
  # The first baseline is the batch mean (0.5), then moves towards 1 and 0.
  assert stats["baseline"] == pytest.approx(0.9 * (0.9 * 0.5 + 0.1) + 0.0)
  assert stats["mean_reward"] == 0.5
  baseline = stats["baseline"]
  stats = controller.update([((2, 0, 1, 0, 0), 0.8)])
  advantage = 0.8 - baseline
  assert stats["loss"] == pytest.approx(
      -advantage * stats["mean_log_prob"] - 0.01 * stats["entropy"],
      rel=1e-5)
  assert stats["baseline"] == pytest.approx(0.9 * baseline + 0.1 * 0.8)
  assert stats["mean_log_prob"] < 0
  assert 0 < stats["entropy"] <= sum(math.log(n) for n in SMALL_CHOICES)
  assert controller.step == 2
  assert all(isinstance(v, float) for v in stats.values())


def test_probabilities_follow_the_greedy_path():
  controller = make()
  run_batches(controller, 5)
  probs = controller.probabilities()
  assert [p.shape for p in probs] == [(n,) for n in SMALL_CHOICES]
  for p in probs:
    assert np.all(p >= 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
  assert controller.argmax_actions() == tuple(int(np.argmax(p))
                                              for p in probs)


def test_probabilities_and_argmax_do_not_advance_sampling():
  controller, reference = make(), make()
  controller.probabilities()
  controller.argmax_actions()
  assert [controller.sample() for _ in range(3)] == [
      reference.sample() for _ in range(3)]


@pytest.mark.parametrize("kind", KINDS)
def test_restored_controller_continues_exactly(kind, tmp_path):
  controller = make(kind, seed=1)
  run_batches(controller, 3)
  controller.save(tmp_path)
  expected = run_batches(controller, 4)
  restored = make(kind, seed=2)  # The checkpoint's RNG state replaces seed 2.
  assert restored.restore(tmp_path)
  assert restored.step == 3
  assert run_batches(restored, 4) == expected
  assert restored.probabilities()[0].tolist() == (
      controller.probabilities()[0].tolist())


@pytest.mark.parametrize("kind", KINDS)
def test_controller_restored_in_a_new_process_continues_exactly(kind,
                                                                tmp_path):
  controller = make(kind, SPACE_CHOICES, seed=5)
  run_batches(controller, 2)
  controller.save(tmp_path)
  samples, stats = run_batches(controller, 3)
  script = textwrap.dedent(f"""
      import json
      from akd_tf import controller as controller_lib
      from akd_tf import search_space
      controller = controller_lib.make_controller(
          {kind!r}, search_space.SearchSpace().num_choices,
          controller_lib.ControllerConfig(seed=5))
      assert controller.restore({str(tmp_path)!r})
      samples, stats = [], []
      for _ in range(3):
        batch = [controller.sample() for _ in range(2)]
        samples.append(batch)
        stats.append(controller.update(
            [(a, sum(x == 0 for x in a) / len(a)) for a in batch]))
      print(json.dumps({{"step": controller.step, "samples": samples,
                        "stats": stats}}))
      """)
  result = subprocess.run([sys.executable, "-c", script], check=True,
                          capture_output=True, text=True, timeout=120)
  child = json.loads(result.stdout.strip().splitlines()[-1])
  assert child["step"] == 5
  assert child["samples"] == [[list(a) for a in batch] for batch in samples]
  assert child["stats"] == stats


def test_checkpoint_survives_sigkill_during_saves(tmp_path):
  script = textwrap.dedent(f"""
      from akd_tf import controller as controller_lib
      controller = controller_lib.make_controller(
          "reinforce", {SMALL_CHOICES!r}, controller_lib.ControllerConfig())
      while True:
        controller.update([(controller.sample(), 0.5)])
        controller.save({str(tmp_path)!r})
        print(controller.step, flush=True)
      """)
  process = subprocess.Popen([sys.executable, "-c", script],
                             stdout=subprocess.PIPE, text=True)
  try:
    for _ in range(15):
      last_saved = int(process.stdout.readline())
  finally:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
  restored = make()
  assert restored.restore(tmp_path)
  assert restored.step >= last_saved
  restored.update([(restored.sample(), 0.5)])


def test_restore_returns_false_without_a_checkpoint(tmp_path):
  controller = make()
  assert not controller.restore(tmp_path)
  assert controller.step == 0


def test_restore_rejects_a_checkpoint_of_another_search_space(tmp_path):
  make(num_choices=(2, 2, 2)).save(tmp_path)
  with pytest.raises(ValueError, match=r"num_choices \(2, 2, 2\); this one"):
    make(num_choices=(2, 2, 3)).restore(tmp_path)


@pytest.mark.parametrize("saved, restored", [("random", "reinforce"),
                                              ("reinforce", "random")])
def test_restore_rejects_a_checkpoint_of_another_controller_kind(
    saved, restored, tmp_path):
  make(saved).save(tmp_path)
  with pytest.raises(ValueError, match=f"with kind '{saved}'; this one has"):
    make(restored).restore(tmp_path)


@pytest.mark.parametrize("num_choices, message", [
    ((), "num_choices is empty"),
    ((2, 0, 3), r"num_choices\[1\] = 0"),
    ((2, 1.5), r"num_choices\[1\] = 1.5"),
])
@pytest.mark.parametrize("kind", KINDS)
def test_constructor_rejects_bad_num_choices(kind, num_choices, message):
  with pytest.raises(ValueError, match=message):
    make(kind, num_choices)


@pytest.mark.parametrize("batch, message", [
    ([], "non-empty batch"),
    ([((0, 0, 0, 0), 1.0)], r"batch\[0\] has 4 actions, expected 5"),
    ([((0, 0, 0, 0, 0), 1.0), ((0, 1, 0, 0, 0), 1.0)],
     r"batch\[1\] action 1 = 1 is not an integer in \[0, 0\]"),
    ([((0, 0, -1, 0, 0), 1.0)], r"action 2 = -1"),
    ([((0, 0, 0, 0, 0), float("nan"))], "not finite"),
])
@pytest.mark.parametrize("kind", KINDS)
def test_update_rejects_bad_batches(kind, batch, message):
  controller = make(kind)
  with pytest.raises(ValueError, match=message):
    controller.update(batch)
  assert controller.step == 0


def test_make_controller_rejects_unknown_kind():
  with pytest.raises(ValueError, match="unknown controller kind 'ppo'"):
    controller_lib.make_controller("ppo", SMALL_CHOICES)


def test_config_round_trips_and_rejects_bad_values():
  config = controller_lib.ControllerConfig(lstm_units=32, seed=7)
  assert controller_lib.ControllerConfig(**config.get_config()) == config
  with pytest.raises(ValueError, match="baseline_decay=1.0"):
    controller_lib.ControllerConfig(baseline_decay=1.0)


def mean_toy_reward_at_end(kind, seed, budget=300, batch_size=4, last=50):
  controller = make(kind, SPACE_CHOICES, seed=seed)
  rewards = []
  for _ in range(budget // batch_size):
    batch = [(a, toy_reward(a))
             for a in (controller.sample() for _ in range(batch_size))]
    controller.update(batch)
    rewards.extend(r for _, r in batch)
  return float(np.mean(rewards[-last:])), controller


@pytest.mark.parametrize("seed", [0, 1])
def test_reinforce_learns_toy_reward_clearly_faster_than_random(seed):
  random_reward, _ = mean_toy_reward_at_end("random", seed)
  reinforce_reward, controller = mean_toy_reward_at_end("reinforce", seed)
  assert random_reward == pytest.approx(0.41, abs=0.05)
  assert reinforce_reward > random_reward + 0.25
  assert sum(a == 0 for a in controller.argmax_actions()) >= 0.8 * len(
      SPACE_CHOICES)
