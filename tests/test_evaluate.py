"""Tests of akd_tf.nas.evaluate: one candidate end to end, its failures,
its latency timed in the driver."""

import dataclasses
import os
import random
import sys

import numpy as np
import pytest

from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.latency import timing
from akd_tf.nas import evaluate
from akd_tf.nas import history
from akd_tf.nas import reward
from akd_tf.space import arch
from akd_tf.space import search_space
from search_testing import quick_actions
from search_testing import tiny_eval_config

SPACE = search_space.SearchSpace()


def test_candidate_is_built_timed_trained_and_rewarded(tmp_path):
  evaluator = evaluate.CandidateEvaluator(tiny_eval_config(tmp_path))
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
      tiny_eval_config(tmp_path, learning_rate=1e-2, epochs=2),
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
      tiny_eval_config(tmp_path, learning_rate=1e30))
  record = evaluator.evaluate(evaluate.CandidateTask(0, 0, quick_actions()))
  assert record.status == history.STATUS_FAILED
  assert record.error.startswith("diverged")
  assert record.accuracy is None
  assert record.reward is None
  assert record.latency_ms > 0


def test_driver_timed_latency_is_used_without_timing_again(tmp_path):
  config = tiny_eval_config(tmp_path)
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
      tiny_eval_config(tmp_path), latency_mode="command",
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
      tiny_eval_config(tmp_path),
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
  config = tiny_eval_config(tmp_path)
  config = evaluate.EvalConfig(**{
      **config.__dict__,
      "train": candidate_training.TrainConfig(kd_alpha=0.5)})
  with pytest.raises(ValueError, match="needs teacher_logits_path"):
    evaluate.CandidateEvaluator(config)


def test_online_softmax_teacher_needs_teacher_output_probabilities(
    tmp_path, softmax_teacher_file):
  config = dataclasses.replace(tiny_eval_config(tmp_path, kd_alpha=0.9),
                               teacher_path=softmax_teacher_file)
  with pytest.raises(ValueError, match="pass --teacher_output=probabilities"):
    evaluate.CandidateEvaluator(config)
  evaluator = evaluate.CandidateEvaluator(
      dataclasses.replace(config, teacher_output="probabilities"))
  record = evaluator.evaluate(evaluate.CandidateTask(0, 0, quick_actions()))
  assert record.ok, record.error


@pytest.mark.parametrize("proxy_mode, max_size, sizes", [
    ("oneshot", 0, [4, 4, 2]), ("oneshot", 3, [3, 3, 3, 1]),
    ("train", 0, [1] * 10)])
def test_task_chunks_give_each_worker_its_share_of_oneshot_scores(
    proxy_mode, max_size, sizes):
  tasks = [evaluate.CandidateTask(0, i, quick_actions()) for i in range(10)]
  chunks = evaluate.task_chunks(tasks, 3, proxy_mode, max_size)
  assert [len(chunk) for chunk in chunks] == sizes
  assert [task for chunk in chunks for task in chunk] == tasks


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
