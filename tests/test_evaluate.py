"""Tests of akd_tf.nas.evaluate: one candidate end to end, failures, lost
workers."""

import dataclasses
import multiprocessing
import os
import random
import signal
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from akd_tf.distill import data as data_lib
from akd_tf.distill import distiller
from akd_tf.latency import timing
from akd_tf.nas import evaluate
from akd_tf.nas import history
from akd_tf.nas import reward
from akd_tf.space import arch
from akd_tf.space import search_space
from search_testing import quick_actions

SPACE = search_space.SearchSpace()


def make_config(tmp_path, **train_changes):
  train = distiller.TrainConfig(**{"epochs": 1, "batch_size": 32,
                                   "kd_alpha": 0.0, **train_changes})
  return evaluate.EvalConfig(
      data=data_lib.DataConfig(dataset="digits", train_size=256,
                               minival_size=200),
      global_params=arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                                      head_size=32, depth_multiplier=0.25),
      space=SPACE.get_config(), train=train,
      reward=reward.RewardConfig(target_ms=0.05),
      latency=timing.LatencyConfig(runs=5, repeats=1, warmup=2),
      latency_cache_path=str(tmp_path / "latency.jsonl"))


def test_candidate_is_built_timed_trained_and_rewarded(tmp_path):
  evaluator = evaluate.CandidateEvaluator(make_config(tmp_path))
  actions = quick_actions()
  record = evaluator.evaluate(evaluate.CandidateTask(4, 1, actions))
  assert record.ok, record.error
  assert (record.step, record.index, record.actions) == (4, 1, actions)
  assert record.blocks == arch.encode_blocks(SPACE.decode(actions))
  assert 0.0 <= record.accuracy <= 1.0
  assert record.latency_ms > 0 and record.latency_source == "measured"
  assert record.reward == pytest.approx(reward.compute_reward(
      reward.RewardConfig(target_ms=0.05), record.accuracy, record.latency_ms))
  assert record.params > 0 and record.macs > 0
  assert set(record.timings) >= {"build", "latency", "train", "eval", "total"}
  again = evaluator.evaluate(evaluate.CandidateTask(5, 0, actions))
  assert again.latency_source == "cache"
  assert again.latency_ms == record.latency_ms


def test_same_candidate_scores_the_same_whatever_ran_before(tmp_path):
  # A worker's first candidate used to get unseeded initial weights, so a
  # search's scores depended on which worker ran what.
  config = dataclasses.replace(
      make_config(tmp_path, learning_rate=1e-2, epochs=2),
      data=data_lib.DataConfig(dataset="digits", train_size=1000,
                               minival_size=200))
  actions = quick_actions()
  first = evaluate.CandidateEvaluator(config).evaluate(
      evaluate.CandidateTask(0, 0, actions))
  random.seed(12345)  # Anything else this process might have drawn.
  np.random.rand(7)
  again = evaluate.CandidateEvaluator(config).evaluate(
      evaluate.CandidateTask(1, 0, actions))
  assert first.ok and again.ok, (first.error, again.error)
  assert again.accuracy == first.accuracy


def test_diverged_candidate_is_a_failed_record(tmp_path):
  evaluator = evaluate.CandidateEvaluator(
      make_config(tmp_path, learning_rate=1e30))
  record = evaluator.evaluate(evaluate.CandidateTask(0, 0, quick_actions()))
  assert record.status == history.STATUS_FAILED
  assert record.error.startswith("diverged")
  assert record.accuracy is None
  assert record.reward is None
  assert record.latency_ms > 0


def test_driver_timed_latency_is_used_without_timing_again(tmp_path):
  config = make_config(tmp_path)
  timer = evaluate.CandidateTimer(config, data_lib.load_data(config.data))
  timed = timer.time(evaluate.CandidateTask(0, 0, quick_actions()))
  assert isinstance(timed, evaluate.CandidateTask)
  assert timed.latency_ms > 0 and timed.latency_source == "measured"
  assert timer.measurer.num_conversions == 1
  evaluator = evaluate.CandidateEvaluator(config)
  record = evaluator.evaluate(timed)
  assert record.ok, record.error
  assert record.latency_ms == timed.latency_ms
  assert record.latency_source == "measured"
  assert record.timings["latency"] == pytest.approx(timed.latency_seconds,
                                                    abs=1e-4)
  assert evaluator._timer is None  # pylint: disable=protected-access


def test_candidate_whose_latency_fails_is_failed_before_training(tmp_path):
  fake = os.path.join(os.path.dirname(__file__), "fake_benchmark_model.py")
  config = dataclasses.replace(
      make_config(tmp_path), latency_mode="command",
      latency_command=f"{sys.executable} {fake} --graph={{tflite}} --fail")
  timer = evaluate.CandidateTimer(config, data_lib.load_data(config.data))
  record = timer.time(evaluate.CandidateTask(2, 1, SPACE.sample(0)))
  assert isinstance(record, history.CandidateRecord)
  assert record.status == history.STATUS_FAILED
  assert record.error.startswith("latency failed: CommandError")
  assert (record.step, record.index) == (2, 1)
  assert record.blocks == arch.encode_blocks(SPACE.decode(SPACE.sample(0)))
  assert record.accuracy is None and "train" not in record.timings
  assert record.reward is None


def test_int8_latency_of_untrained_se_student_is_measured(tmp_path):
  # With width x0.25 this student's squeeze-excitation ReLUs never fire
  # untrained, and XNNPACK refused its int8 model whatever the calibration
  # images: a bias against SE in any int8-latency search.
  config = dataclasses.replace(
      make_config(tmp_path),
      data=data_lib.DataConfig(dataset="fashion_mnist", train_size=256,
                               minival_size=200),
      global_params=arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                                      head_size=64, depth_multiplier=0.25),
      latency=timing.LatencyConfig(runs=5, repeats=1, warmup=2,
                                    quantize="int8"))
  actions = SPACE.sample(0)
  assert any(b.se_ratio for b in SPACE.decode(actions))
  timer = evaluate.CandidateTimer(config, data_lib.load_data(config.data))
  timed = timer.time(evaluate.CandidateTask(0, 0, actions))
  assert isinstance(timed, evaluate.CandidateTask), timed.error
  assert timed.latency_ms > 0


def test_kd_without_teacher_is_a_setup_error(tmp_path):
  config = make_config(tmp_path)
  config = evaluate.EvalConfig(**{**config.__dict__, "train":
                                  distiller.TrainConfig(kd_alpha=0.5)})
  with pytest.raises(ValueError, match="needs teacher_logits_path"):
    evaluate.CandidateEvaluator(config)


def test_online_softmax_teacher_needs_teacher_output_probabilities(
    tmp_path, softmax_teacher_file):
  config = dataclasses.replace(make_config(tmp_path, kd_alpha=0.9),
                               teacher_path=softmax_teacher_file)
  with pytest.raises(ValueError, match="pass --teacher_output=probabilities"):
    evaluate.CandidateEvaluator(config)
  evaluator = evaluate.CandidateEvaluator(
      dataclasses.replace(config, teacher_output="probabilities"))
  record = evaluator.evaluate(evaluate.CandidateTask(0, 0, quick_actions()))
  assert record.ok, record.error


def kill_worker_mid_candidate(cache_path, killed, stop):
  """SIGKILLs the pool's worker once it reports being inside a candidate.

  The worker appends the candidate's latency-cache line after building and
  timing the student and before training it (seconds), so the line's
  appearance is the observable moment the worker is mid-candidate.
  """
  while not stop.is_set():
    workers = multiprocessing.active_children()
    if workers and os.path.exists(cache_path) and os.path.getsize(cache_path):
      os.kill(workers[0].pid, signal.SIGKILL)
      killed.append(workers[0].pid)
      return
    time.sleep(0.02)


@pytest.mark.parametrize("max_retries, status", [
    (1, history.STATUS_OK), (0, history.STATUS_FAILED)])
def test_lost_worker_costs_a_retry_then_fails(tmp_path, max_retries, status):
  config = make_config(tmp_path)
  pool = evaluate.LocalPool(config, num_workers=1, max_retries=max_retries)
  killed, stop = [], threading.Event()
  killer = threading.Thread(target=kill_worker_mid_candidate, args=(
      config.latency_cache_path, killed, stop))
  killer.start()
  try:
    records = list(pool.evaluate([evaluate.CandidateTask(0, 0,
                                                         quick_actions())]))
  finally:
    stop.set()
    killer.join()
    pool.shutdown()
  assert killed, "the worker was never seen inside the candidate"
  assert [r.status for r in records] == [status]
  if status == history.STATUS_OK:
    # The retry ran in a new worker and found the killed one's timing.
    assert records[0].latency_source == "cache"
    assert not records[0].worker.endswith(f":{killed[0]}")
  else:
    assert "worker process died" in records[0].error


def test_fresh_and_used_workers_score_a_candidate_the_same(tmp_path):
  # With candidates_per_worker=2, the worker that evaluated `first` evaluates
  # `second` after it (having released `first`, akd_tf.memory, and cleared
  # Keras' state); then a fresh worker replaces it and evaluates `second`
  # again.
  config = dataclasses.replace(
      make_config(tmp_path, learning_rate=1e-2, epochs=2),
      data=data_lib.DataConfig(dataset="digits", train_size=1000,
                               minival_size=200))
  first, second = quick_actions(filters=2), quick_actions()
  pool = evaluate.LocalPool(config, num_workers=1, candidates_per_worker=2)
  try:
    before_used, used, fresh = [
        record for step, actions in enumerate((first, second, second))
        for record in pool.evaluate([evaluate.CandidateTask(step, 0,
                                                            actions)])]
  finally:
    pool.shutdown()
  assert used.worker == before_used.worker
  assert fresh.worker != used.worker
  assert fresh.ok and used.ok, (fresh.error, used.error)
  assert (fresh.accuracy, fresh.params, fresh.macs) == (
      used.accuracy, used.params, used.macs)


@pytest.mark.parametrize("onednn", [False, True])
def test_workers_use_onednn_only_when_asked(tmp_path, monkeypatch, onednn):
  # TensorFlow reads the switch at import, before a pool's initializer runs:
  # the worker must be spawned with it, and the driver keep its own.
  monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
  pool = evaluate.LocalPool(make_config(tmp_path), num_workers=1,
                            onednn=onednn)
  try:
    pool.start()
    pool.wait_until_started()
    (worker,) = [child for child in psutil.Process().children()
                 if "spawn_main" in " ".join(child.cmdline())]
    environment = worker.environ()
  finally:
    pool.shutdown()
  assert environment.get("TF_ENABLE_ONEDNN_OPTS") == (None if onednn
                                                      else "0")
  assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ


def test_negative_candidates_per_worker_is_refused(tmp_path):
  with pytest.raises(ValueError, match="candidates_per_worker=-1 must be"):
    evaluate.LocalPool(make_config(tmp_path), num_workers=1,
                       candidates_per_worker=-1)


def test_error_text_names_the_type_and_can_keep_only_the_last_line():
  error = RuntimeError("Traceback (most recent call last):\n  File x\n\n"
                       "ValueError: bad block\n")
  assert evaluate.error_text(error) == f"RuntimeError: {error}"
  assert evaluate.error_text(error, last_line=True) == (
      "RuntimeError: ValueError: bad block")
  assert evaluate.error_text(ValueError("x" * 50), max_chars=20) == (
      "ValueError: xxxxxxxx...")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
