"""Tests of akd_tf.memory: what a process keeps of finished candidates."""

import gc
import os
import sys
import weakref

import keras
import psutil
import pytest
import tensorflow as tf

from akd_tf import memory
from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.latency import timing
from akd_tf.nas import evaluate
from akd_tf.nas import local_pool
from akd_tf.nas import reward
from akd_tf.space import arch
from akd_tf.space import builder
from akd_tf.space import search_space
from search_testing import quick_actions

SPACE = search_space.SearchSpace()
DIGITS = data_lib.DataConfig(dataset="digits", train_size=256,
                             minival_size=200)
# Swish: its gradient is a custom gradient too, registered by every trace.
GLOBAL_PARAMS = arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                                  head_size=32, depth_multiplier=0.25,
                                  activation="swish")
TRAIN = candidate_training.TrainConfig(epochs=1, batch_size=32, kd_alpha=0.0,
                                       bn_recalibration_images=64)


def _eval_config(tmp_path) -> evaluate.EvalConfig:
  return evaluate.EvalConfig(
      data=DIGITS, global_params=GLOBAL_PARAMS, space=SPACE.get_config(),
      train=TRAIN, reward=reward.RewardConfig(target_ms=0.05),
      latency=timing.LatencyConfig(runs=5, repeats=1, warmup=2),
      latency_cache_path=str(tmp_path / "latency.jsonl"))


def _registered():
  return set(memory._gradient_registry())  # pylint: disable=protected-access


@tf.custom_gradient
def _doubled(x):
  return 2.0 * x, lambda upstream: 2.0 * upstream


def _gradient_of_doubled(x):
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = _doubled(x)
  return tape.gradient(y, x)


def test_scoped_custom_gradients_unregisters_only_what_the_block_traced():
  traced_before = tf.function(_gradient_of_doubled)
  assert float(traced_before(tf.constant(1.0))) == 2.0
  before = _registered()
  with memory.scoped_custom_gradients():
    inside = tf.function(_gradient_of_doubled)
    assert float(inside(tf.constant(3.0))) == 2.0
    assert _registered() > before
  assert _registered() == before
  assert float(traced_before(tf.constant(5.0))) == 2.0  # Still runs.
  assert float(inside(tf.constant(5.0))) == 2.0  # Runs; not differentiated.


def test_model_trained_in_the_scope_is_freed_once_dropped():
  # Keras' train step registers a custom gradient whose closure held the
  # traced step, and through its captures every variable of the student.
  data = data_lib.load_data(DIGITS)
  spec = arch.ArchSpec(SPACE.decode(quick_actions()), GLOBAL_PARAMS,
                       data.input_shape)
  student = builder.build_from_spec(spec)
  handles = [weakref.ref(v.value.handle) for v in student.weights]
  with memory.scoped_custom_gradients():
    result = candidate_training.train_candidate(student, data.train,
                                                data.minival, TRAIN)
  assert 0.0 <= result.accuracy <= 1.0
  del student
  gc.collect()
  alive = sum(handle() is not None for handle in handles)
  assert alive == 0, f"{alive} of {len(handles)} variables are still alive"


def test_evaluated_candidate_leaves_no_gradient_registered(tmp_path):
  # Training, BN recalibration, evaluation and the TFLite conversion each
  # traced a swish student and left its graphs registered for good.
  evaluator = evaluate.CandidateEvaluator(_eval_config(tmp_path))
  before = _registered()
  record = evaluator.evaluate(evaluate.CandidateTask(0, 0, quick_actions()))
  assert record.ok, record.error
  assert _registered() == before


def test_release_unused_memory_names_layers_afresh():
  keras.layers.Dense(1)
  memory.release_unused_memory()
  assert keras.layers.Dense(1).name == "dense"


def test_child_environment_sets_variables_for_the_block_only(monkeypatch):
  monkeypatch.setenv("AKD_TF_TEST_KEPT", "before")
  monkeypatch.delenv("AKD_TF_TEST_NEW", raising=False)
  with memory.child_environment({"AKD_TF_TEST_KEPT": "inside",
                                 "AKD_TF_TEST_NEW": "inside"}):
    assert os.environ["AKD_TF_TEST_KEPT"] == "inside"
    assert os.environ["AKD_TF_TEST_NEW"] == "inside"
  assert os.environ["AKD_TF_TEST_KEPT"] == "before"
  assert "AKD_TF_TEST_NEW" not in os.environ


def test_worker_environment_preloads_jemalloc_without_onednn(monkeypatch):
  monkeypatch.delenv("LD_PRELOAD", raising=False)
  library = memory.find_jemalloc()
  assert library, "jemalloc is not installed: run .ci/install (libjemalloc2)"
  assert memory.worker_environment() == {
      "TF_ENABLE_ONEDNN_OPTS": "0", "LD_PRELOAD": library,
      "MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0"}


def test_worker_environment_keeps_what_is_already_preloaded(monkeypatch):
  monkeypatch.setenv("LD_PRELOAD", "/opt/profiler.so")
  assert memory.worker_environment()["LD_PRELOAD"] == (
      f"{memory.find_jemalloc()}:/opt/profiler.so")


def test_worker_environment_of_onednn_and_system_malloc_changes_nothing():
  assert memory.worker_environment(onednn=True, allocator="system") == {}


def test_unknown_worker_allocator_is_refused():
  with pytest.raises(ValueError, match="'tcmalloc' is not one of"):
    memory.worker_environment(allocator="tcmalloc")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_return_large_buffers_fixes_glibc_mmap_threshold():
  assert memory.return_large_buffers()


def test_worker_memory_stays_flat_over_14_candidates(tmp_path):
  # A worker grew with every candidate: by about 225 MB when TensorFlow's
  # gradient registry kept each trained graph, then by 4-6 MB a candidate
  # from oneDNN's primitive caches and glibc's rising mmap threshold. Ten
  # candidates after the first four (which fill caches once) tell 6 MB a
  # candidate from flat (jemalloc: +0.3 MB a candidate over 200,
  # benchmarks/memory.py).
  pool = local_pool.LocalPool(_eval_config(tmp_path), num_workers=1)
  resident_mb, workers = [], set()
  try:
    for index in range(14):
      # One at a time: the worker is read between candidates. A search's
      # driver times its candidates; a fixed latency stands in for that.
      (record,) = pool.evaluate([evaluate.CandidateTask(
          index, 0, SPACE.sample(100 + index), latency_ms=0.05,
          latency_source="measured")])
      assert record.ok, record.error
      workers.add(record.worker)
      worker = psutil.Process(int(record.worker.rsplit(":", 1)[1]))
      resident_mb.append(worker.memory_info().rss / 2**20)
  finally:
    pool.shutdown()
  assert len(workers) == 1, workers  # One process, never replaced.
  growth = resident_mb[13] / resident_mb[3] - 1
  assert growth <= 0.07, (
      f"worker RSS grew {growth:.0%} from candidate 4 to 14: "
      f"{[round(mb) for mb in resident_mb]} MB")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
