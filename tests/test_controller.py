"""Tests of akd_tf.nas.controller: sampling, REINFORCE updates, exact
resume."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from akd_tf.nas import controller as controller_lib
from akd_tf.space import search_space

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


def same_probabilities(a, b):
  return all(np.array_equal(p, q)
             for p, q in zip(a.probabilities(), b.probabilities()))


def test_first_update_of_one_candidate_sets_the_baseline_without_a_step():
  # Its advantage is 0: a step would follow the entropy term alone.
  controller, untrained = make(), make()
  stats = controller.update([(controller.sample(), 0.7)])
  assert stats["baseline"] == 0.7
  assert controller.step == 1
  assert same_probabilities(controller, untrained)
  stats = controller.update([(controller.sample(), 0.9)])
  assert stats["baseline"] == pytest.approx(0.95 * 0.7 + 0.05 * 0.9)
  assert controller.step == 2
  assert not same_probabilities(controller, untrained)


def test_failed_candidate_does_not_move_the_baseline():
  controller = make(baseline_decay=0.9)
  before = controller.update([((0, 0, 0, 0, 0), 0.6),
                              ((1, 0, 1, 2, 1), 0.4)])["baseline"]
  stats = controller.update([((2, 0, 1, 0, 0), None)])
  assert stats["baseline"] == before
  assert (stats["failed"], stats["failure_penalty"]) == (1.0, 0.4)
  assert math.isnan(stats["mean_reward"])
  stats = controller.update([((3, 0, 0, 1, 1), 0.5),
                             ((2, 0, 1, 0, 0), None)])
  assert stats["baseline"] == pytest.approx(0.9 * before + 0.1 * 0.5)
  assert stats["mean_reward"] == 0.5


def test_failed_candidate_is_penalized_as_the_lowest_successful_reward():
  first = [((0, 0, 0, 0, 0), 0.6), ((1, 0, 1, 2, 1), 0.4)]
  failed, given_lowest = make(entropy_weight=0.01), make(entropy_weight=0.01)
  baseline = failed.update(first)["baseline"]
  given_lowest.update(first)
  stats = failed.update([((2, 0, 1, 0, 0), None)])
  assert stats["loss"] == pytest.approx(
      -(0.4 - baseline) * stats["mean_log_prob"] - 0.01 * stats["entropy"],
      rel=1e-5)
  # The same step as a success with the lowest reward, but the baseline
  # stays where it was.
  lowest_stats = given_lowest.update([((2, 0, 1, 0, 0), 0.4)])
  assert same_probabilities(failed, given_lowest)
  assert lowest_stats["baseline"] != stats["baseline"]


def test_failures_before_any_success_are_left_out_of_the_update():
  controller, untrained = make(), make()
  stats = controller.update([((0, 0, 0, 0, 0), None), ((1, 0, 1, 2, 1), None)])
  assert controller.step == 1
  assert same_probabilities(controller, untrained)
  assert math.isnan(stats["failure_penalty"])
  # They set no baseline either: the first success does.
  assert controller.update([((2, 0, 1, 0, 0), 0.3)])["baseline"] == 0.3
  assert same_probabilities(controller, untrained)


def test_random_controller_takes_failed_candidates():
  stats = make("random").update([((0, 0, 0, 0, 0), None),
                                 ((1, 0, 1, 2, 1), 0.5)])
  assert (stats["failed"], stats["mean_reward"]) == (1.0, 0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_failure_state_is_restored_exactly(kind, tmp_path):
  batches = [[((0, 0, 0, 0, 0), None)], [((1, 0, 1, 2, 1), 0.4)],
             [((2, 0, 1, 0, 0), 0.8), ((3, 0, 0, 1, 1), None)]]
  controller = make(kind)
  controller.update(batches[0])
  controller.update(batches[1])
  controller.save(tmp_path)
  restored = make(kind)
  assert restored.restore(tmp_path)
  expected = controller.update(batches[2])
  assert restored.update(batches[2]) == pytest.approx(expected, nan_ok=True)
  assert restored.sample() == controller.sample()


def test_restore_rejects_a_checkpoint_without_the_failure_state(tmp_path):
  controller = make()
  objects = controller._checkpoint_objects()  # pylint: disable=protected-access
  del objects["rewards_seen"], objects["lowest_reward"]
  tf.train.Checkpoint(**objects).save(str(tmp_path / "ckpt"))
  with pytest.raises(ValueError, match="written by an older akd_tf"):
    make().restore(tmp_path)


def numpy_greedy_policy(checkpoint_dir, num_choices, tanh_constant=2.5):
  """The LSTM policy's greedy path recomputed in NumPy from a checkpoint.

  Returns the per-decision probabilities and the argmax actions, from the
  saved weights alone (the controller's own code does not run).
  """
  path = tf.train.latest_checkpoint(str(checkpoint_dir))
  w = {name: tf.train.load_variable(path,
                                    f"{name}/.ATTRIBUTES/VARIABLE_VALUE")
       for name in ("embedding", "lstm_kernel", "lstm_bias", "head_kernel",
                    "head_bias")}
  sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))
  units, max_n = w["lstm_bias"].shape[0] // 4, max(num_choices)
  h, c, inputs = np.zeros(units), np.zeros(units), w["embedding"][0]
  probabilities, actions = [], []
  for t, n in enumerate(num_choices):
    gates = np.concatenate([inputs, h]) @ w["lstm_kernel"] + w["lstm_bias"]
    i, f, g, o = np.split(gates, 4)
    c = sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(g)  # Forget bias 1.
    h = sigmoid(o) * np.tanh(c)
    logits = tanh_constant * np.tanh(h @ w["head_kernel"][t][:, :n] +
                                     w["head_bias"][t][:n])
    p = np.exp(logits - logits.max())
    probabilities.append(p / p.sum())
    actions.append(int(np.argmax(p)))
    inputs = w["embedding"][1 + t * max_n + actions[-1]]
  return probabilities, tuple(actions)


def test_greedy_path_and_probabilities_match_a_numpy_policy(tmp_path):
  controller = make(num_choices=SPACE_CHOICES, seed=2)
  run_batches(controller, 20)
  controller.save(tmp_path)
  expected_probs, expected_actions = numpy_greedy_policy(tmp_path,
                                                         SPACE_CHOICES)
  probs = controller.probabilities()
  assert [p.shape for p in probs] == [(n,) for n in SPACE_CHOICES]
  for p, expected in zip(probs, expected_probs):
    np.testing.assert_allclose(p, expected, atol=1e-5)
  assert controller.argmax_actions() == expected_actions
  # Trained enough that the greedy path is not all first choices.
  assert len(set(expected_actions)) > 1


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
      from akd_tf.nas import controller as controller_lib
      from akd_tf.space import search_space
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
  for child_stats, expected in zip(child["stats"], stats, strict=True):
    assert child_stats == pytest.approx(expected, rel=0, nan_ok=True)


def test_checkpoint_survives_sigkill_during_saves(tmp_path):
  script = textwrap.dedent(f"""
      from akd_tf.nas import controller as controller_lib
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


def test_budget_warning_names_the_figure_and_its_source():
  message = controller_lib.budget_warning(10)
  assert message.startswith("num_candidates=10")
  assert (f"below the {controller_lib.REINFORCE_SAMPLES_NEEDED[1]} samples"
          in message)
  assert "at 1 candidate(s) per step" in message
  assert "benchmarks/controller.py" in message and "seed noise 0.0266" in message
  # A batch between benchmarked ones takes the next larger one's figure.
  batched = controller_lib.budget_warning(10, candidates_per_step=2)
  assert (f"below the {controller_lib.REINFORCE_SAMPLES_NEEDED[4]} samples"
          in batched)


def test_no_budget_warning_at_or_above_what_reinforce_needed():
  for batch, needed in controller_lib.REINFORCE_SAMPLES_NEEDED.items():
    assert controller_lib.budget_warning(needed, batch) is None
    assert controller_lib.budget_warning(needed - 1, batch)
  # Beyond the largest benchmarked batch, its figure.
  largest = max(controller_lib.REINFORCE_SAMPLES_NEEDED)
  needed = controller_lib.REINFORCE_SAMPLES_NEEDED[largest]
  assert controller_lib.budget_warning(needed - 1, largest + 4)
  assert controller_lib.budget_warning(needed, largest + 4) is None


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
