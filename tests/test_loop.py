"""End-to-end tests of the search: resume after SIGKILL, failures, outputs.

Each test runs the real `akd-search` app in a subprocess on scikit-learn's
digits with a tiny proxy task, so a candidate takes seconds. One
uninterrupted search of the module (`reference`) is run once: the killed
searches must end as it did, and the progress-line and export tests read its
log and its exported winner.
"""

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from akd_tf.nas import controller as controller_lib
from akd_tf.nas import history
from akd_tf.space import search_space
from search_testing import QUICK_SEED

NUM_CANDIDATES = 3
SEED = QUICK_SEED
FINAL_EPOCHS = 3  # The reference's: its log then counts epochs n/3.

Reference = collections.namedtuple("Reference",
                                   ["model_dir", "cache_dir", "stderr"])


@pytest.fixture(name="reference", scope="module")
def fixture_reference(tmp_path_factory):
  """An uninterrupted search of NUM_CANDIDATES, run once for the module.

  It starts from an empty cache, so it trains the built-in teacher; it
  trains its winner FINAL_EPOCHS epochs and exports it; TensorFlow's own
  log level is left unset, as a user's would be.
  """
  root = tmp_path_factory.mktemp("reference")
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  result = run_to_end(root / "search", root / "cache", "--export",
                      f"--final_epochs={FINAL_EPOCHS}", env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  return Reference(root / "search", str(root / "cache"), result.stderr)


@pytest.fixture(name="cache_dir", scope="module")
def fixture_cache_dir(reference):
  """The reference's teacher and logits cache, shared by the searches of
  this module (the killed ones must use the reference's teacher)."""
  return reference.cache_dir


def search_args(model_dir, cache_dir, *extra):
  return [
      sys.executable, "-m", "akd_tf.cli.search", f"--model_dir={model_dir}",
      f"--cache_dir={cache_dir}", "--dataset=digits", "--minival_size=300",
      "--proxy_train_size=320", "--proxy_batch_size=32",
      "--final_train_size=320", "--final_epochs=1", "--teacher_epochs=2",
      "--head_size=32", "--width_multiplier=0.25", "--target_ms=0.05",
      "--latency_runs=5", "--latency_repeats=1", "--noexport",
      f"--num_candidates={NUM_CANDIDATES}", f"--seed={SEED}", *extra]


def run_to_end(model_dir, cache_dir, *extra, env=None):
  result = subprocess.run(search_args(model_dir, cache_dir, *extra),
                          capture_output=True, text=True, timeout=900,
                          check=False, env=env)
  return result


def kill_when_recorded(model_dir, cache_dir, records, *extra):
  """Starts a search and SIGKILLs it (and its workers) after `records`."""
  process = subprocess.Popen(search_args(model_dir, cache_dir, *extra),
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL,
                             start_new_session=True)
  path = os.path.join(model_dir, "history.jsonl")
  deadline = time.time() + 600
  try:
    while time.time() < deadline and process.poll() is None:
      if len(history.History(path).read()) >= records:
        break
      time.sleep(0.2)
    assert process.poll() is None, "the search ended before it was killed"
  finally:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
  return len(history.History(path).read())


def read_history(model_dir):
  return history.History(os.path.join(model_dir, "history.jsonl")).read()


def assert_each_candidate_once(records, num_candidates=NUM_CANDIDATES):
  keys = [r.key for r in records]
  assert len(keys) == len(set(keys)), f"duplicated evaluations: {keys}"
  assert len(keys) == num_candidates, f"lost evaluations: {keys}"


def assert_controller_replays(records, per_step):
  """A fresh controller with the seed samples exactly the recorded actions."""
  controller = controller_lib.ReinforceController(
      search_space.SearchSpace().num_choices,
      controller_lib.ControllerConfig(seed=SEED))
  by_key = {r.key: r for r in records}
  for step in range(len(records) // per_step):
    batch = [by_key[(step, i)] for i in range(per_step)]
    assert [controller.sample() for _ in batch] == [r.actions for r in batch]
    controller.update([(r.actions, r.reward if r.ok else None)
                       for r in batch])


@pytest.mark.slow
def test_killed_search_resumes_as_if_uninterrupted(tmp_path, reference,
                                                   cache_dir):
  expected = read_history(reference.model_dir)
  assert len(expected) == NUM_CANDIDATES

  killed_dir = tmp_path / "killed"
  kept = kill_when_recorded(killed_dir, cache_dir, 2)
  assert 2 <= kept < NUM_CANDIDATES
  resumed = run_to_end(killed_dir, cache_dir)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resuming: {kept} evaluations come from the history" in (
      resumed.stderr)
  records = read_history(killed_dir)
  assert_each_candidate_once(records)
  assert_controller_replays(records, per_step=1)
  assert [r.actions for r in records] == [r.actions for r in expected]
  assert (killed_dir / "best" / "arch.json").exists()
  assert (killed_dir / "pareto.png").exists()


@pytest.mark.slow
def test_killed_two_worker_search_loses_and_repeats_nothing(tmp_path,
                                                             cache_dir):
  # One step of two candidates, killed once one of them is recorded: the
  # resumed search must evaluate the other, and only it.
  model_dir = tmp_path / "two_workers"
  two = ("--num_workers=2", "--num_candidates=2")
  kill_when_recorded(model_dir, cache_dir, 1, *two)
  resumed = run_to_end(model_dir, cache_dir, *two)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  records = read_history(model_dir)
  assert_each_candidate_once(records, num_candidates=2)
  assert_controller_replays(records, per_step=2)


def test_exported_winner_is_verified_as_akd_export_does(reference):
  best = reference.model_dir / "best"
  report = json.loads((best / "export_report.json").read_text())
  assert report["quantize"] == "none"
  assert report["model"] == str(best / "student.keras")
  assert set(report["artifacts"]) == {"keras", "saved_model", "tflite_float"}
  assert report["test_images"] == 359
  # Float32 rounding of XNNPACK vs Keras on trained logits (1.7e-4 seen);
  # a wrong export differs by the size of the logits.
  assert report["float_max_abs_diff"] < 1e-3
  assert (best / "student_float.tflite").exists()
  metrics = json.loads((best / "metrics.json").read_text())
  assert metrics["latency_ms"] == (
      report["artifacts"]["tflite_float"]["latency_ms"])
  assert metrics["test_accuracy"] == pytest.approx(report["keras_top1"],
                                                   abs=0.01)
  serve = tf.saved_model.load(str(best / "saved_model")).signatures[
      "serving_default"]
  assert list(serve.structured_input_signature[1]) == ["image"]
  assert list(serve.structured_outputs) == ["logits"]


def test_diverging_candidates_are_recorded_as_failed(tmp_path, cache_dir):
  # Steps of size 1e30 overflow the activations: the loss becomes NaN.
  result = run_to_end(tmp_path / "nan", cache_dir,
                      "--proxy_learning_rate=1e30", "--num_candidates=2")
  records = read_history(tmp_path / "nan")
  assert [r.status for r in records] == [history.STATUS_FAILED] * 2
  assert all(r.error.startswith("diverged") for r in records)
  assert all(r.reward is None for r in records)
  assert result.returncode == 1
  assert "every candidate failed" in result.stderr
  assert "Traceback" not in result.stderr
  # The controller was told they failed: with no success to compare them
  # to, they taught it nothing (a reward of 0 would have moved its weights).
  restored, untrained = (controller_lib.ReinforceController(
      search_space.SearchSpace().num_choices,
      controller_lib.ControllerConfig(seed=SEED)) for _ in range(2))
  assert restored.restore(str(tmp_path / "nan" / "controller"))
  assert restored.step == 2
  assert all(np.array_equal(p, q) for p, q in zip(
      restored.probabilities(), untrained.probabilities()))


def test_resume_with_other_settings_is_refused(tmp_path):
  model_dir = tmp_path / "config"
  model_dir.mkdir()
  (model_dir / "search_config.json").write_text(json.dumps(
      {"reward_accuracy": "ce"}))
  result = run_to_end(model_dir, tmp_path / "cache")
  assert result.returncode == 1
  assert "holds a search with other settings" in result.stderr


def test_too_few_candidates_for_reinforce_are_warned_about_at_start(
    tmp_path):
  # The refused resume ends each run right after the start.
  for controller in ("reinforce", "random"):
    model_dir = tmp_path / controller
    model_dir.mkdir()
    (model_dir / "search_config.json").write_text(json.dumps({}))
    result = run_to_end(model_dir, tmp_path / "cache",
                        f"--controller={controller}")
    assert "holds a search with other settings" in result.stderr
    warned = (f"warning: --num_candidates={NUM_CANDIDATES}" in result.stderr
              and "seed noise 0.0266" in result.stderr)
    assert warned == (controller == "reinforce"), result.stderr[-2000:]


@pytest.mark.parametrize("flag, message", [
    ("--reward_accuracy=acc", "--reward_accuracy=acc: value should be one of"),
    ("--target_ms=0",
     "akd-search: error: --target_ms=0.0: latency target 0.0"),
    ("--kd_alpha=1.5", "alpha=1.5 must be in [0, 1]"),
    ("--teacher=/nonexistent.keras", "--teacher=/nonexistent.keras: neither"),
    ("--latency=command", "--latency_command"),
])
def test_bad_flags_are_clear_errors(tmp_path, flag, message):
  result = run_to_end(tmp_path / "bad", tmp_path / "cache", flag)
  assert result.returncode != 0
  assert message in result.stderr
  assert "Traceback" not in result.stderr


def test_progress_lines_count_steps_and_time_teacher_and_final_training(
    reference):
  lines = reference.stderr.splitlines()
  # Neither the app nor its worker process prints TensorFlow's start-up.
  assert "oneDNN custom operations" not in reference.stderr
  # The built-in teacher and the winner's final training log their epochs.
  assert any("teacher resnet_wide training: epoch 2/2 took" in line
             for line in lines), reference.stderr[-3000:]
  assert any(f"final training: epoch {FINAL_EPOCHS}/{FINAL_EPOCHS} took"
             in line for line in lines)
  candidates = [line for line in lines if "] step " in line]
  assert [re.search(r"\[\d/\d\] step \d candidate \d:", line).group(0)
          for line in candidates] == [
              f"[{i + 1}/{NUM_CANDIDATES}] step {i} candidate 0:"
              for i in range(NUM_CANDIDATES)]
  # Once no candidate is left, the ETA is the final training's.
  eta, final = re.search(r"ETA ([\d.]+ \w+), final training ([\d.]+ \w+) "
                         r"of it\)", candidates[-1]).groups()
  assert eta == final and final != "0 s", candidates[-1]


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
