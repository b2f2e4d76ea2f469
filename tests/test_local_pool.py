"""Tests of akd_tf.nas.local_pool: candidates in local worker processes,
one-shot scores in chunks, lost workers, replaced workers, the workers'
environment."""

import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from akd_tf.distill import data as data_lib
from akd_tf.nas import evaluate
from akd_tf.nas import history
from akd_tf.nas import local_pool
from search_testing import oneshot_tasks
from search_testing import quick_actions
from search_testing import tiny_eval_config


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
  config = tiny_eval_config(tmp_path)
  pool = local_pool.LocalPool(config, num_workers=1, max_retries=max_retries)
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


@pytest.fixture(name="oneshot_runs", scope="module")
def fixture_oneshot_runs(oneshot_eval_config):
  """One-shot records of one worker: 6 candidates in one chunk, the same
  one per `evaluate`, and 24 more in one chunk (a second of scoring) whose
  worker is killed as its first record arrives (max_retries 1), with the
  killed worker's pid."""
  tasks = oneshot_tasks(6)
  pool = local_pool.LocalPool(oneshot_eval_config, num_workers=1,
                              max_retries=1)
  try:
    chunked = list(pool.evaluate(tasks))
    single = [record for task in tasks for record in pool.evaluate([task])]
    records = pool.evaluate(oneshot_tasks(24, step=1))
    first = next(records)
    killed = int(first.worker.rsplit(":", 1)[1])
    os.kill(killed, signal.SIGKILL)
    after_kill = [first] + list(records)
  finally:
    pool.shutdown()
  return chunked, single, after_kill, killed


def test_a_chunk_of_oneshot_scores_equals_one_candidate_per_task(
    oneshot_runs):
  chunked, single, _, _ = oneshot_runs
  assert [r.key for r in chunked] == [r.key for r in single] == [
      (0, i) for i in range(6)]
  assert all(r.ok for r in chunked + single), [
      r.error for r in chunked + single]
  assert [r.accuracy for r in chunked] == [r.accuracy for r in single]
  assert len({r.worker for r in chunked + single}) == 1


def test_worker_killed_mid_chunk_retries_only_what_it_had_not_reported(
    oneshot_runs):
  chunked, _, after_kill, killed = oneshot_runs
  assert sorted(r.key for r in after_kill) == [(1, i) for i in range(24)]
  assert all(r.ok for r in after_kill), [r.error for r in after_kill]
  by_worker = [r.worker.endswith(f":{killed}") for r in after_kill]
  # Records the killed worker sent come first; the rest were scored again by
  # a new worker.
  assert by_worker[0] and not by_worker[-1], by_worker
  assert by_worker == sorted(by_worker, reverse=True)
  # Candidates sampled with the same seeds as the first six score the same.
  by_index = sorted(after_kill, key=lambda r: r.index)
  assert [r.accuracy for r in by_index[:6]] == [r.accuracy for r in chunked]


def test_fresh_and_used_workers_score_a_candidate_the_same(tmp_path):
  # With candidates_per_worker=2, the worker that evaluated `first` evaluates
  # `second` after it (having released `first`, akd_tf.memory, and cleared
  # Keras' state); then a fresh worker replaces it and evaluates `second`
  # again.
  config = dataclasses.replace(
      tiny_eval_config(tmp_path, learning_rate=1e-2, epochs=2),
      data=data_lib.DataConfig(dataset="digits", train_size=1000,
                               minival_size=200))
  first, second = quick_actions(filters=2), quick_actions()
  pool = local_pool.LocalPool(config, num_workers=1, candidates_per_worker=2)
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
  pool = local_pool.LocalPool(tiny_eval_config(tmp_path), num_workers=1,
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


def _worker_libraries(pool) -> str:
  """The shared libraries mapped by `pool`'s one worker process."""
  (worker,) = [child for child in psutil.Process().children()
               if "spawn_main" in " ".join(child.cmdline())]
  return " ".join(region.path for region in worker.memory_maps())


def test_jemalloc_worker_scores_a_candidate_as_a_system_malloc_worker(
    tmp_path):
  records, libraries = {}, {}
  for allocator in ("jemalloc", "system"):
    (tmp_path / allocator).mkdir()
    pool = local_pool.LocalPool(tiny_eval_config(tmp_path / allocator),
                                num_workers=1, allocator=allocator)
    try:
      (records[allocator],) = pool.evaluate(
          [evaluate.CandidateTask(0, 0, quick_actions())])
      libraries[allocator] = _worker_libraries(pool)
    finally:
      pool.shutdown()
  assert "libjemalloc" in libraries["jemalloc"]
  assert "libjemalloc" not in libraries["system"]
  jemalloc, system = records["jemalloc"], records["system"]
  assert jemalloc.ok and system.ok, (jemalloc.error, system.error)
  assert (jemalloc.accuracy, jemalloc.params, jemalloc.macs) == (
      system.accuracy, system.params, system.macs)


# A driver that starts a pool of two workers, says so, and waits.
_DRIVER = """
import sys, time
sys.path[:0] = {path!r}
from akd_tf.nas import local_pool
from search_testing import tiny_eval_config
import pathlib
pool = local_pool.LocalPool(tiny_eval_config(pathlib.Path({tmp!r})),
                            num_workers=2)
pool.start()
pool.wait_until_started()
print("started", flush=True)
time.sleep(600)
"""


def test_workers_of_a_killed_driver_exit(tmp_path):
  driver = subprocess.Popen(
      [sys.executable, "-c", _DRIVER.format(path=sys.path, tmp=str(tmp_path))],
      stdout=subprocess.PIPE, text=True)
  try:
    assert driver.stdout.readline().strip() == "started"
    workers = psutil.Process(driver.pid).children()
    assert len(workers) >= 2  # The workers (and multiprocessing's tracker).
    driver.kill()
    driver.wait()
    # A worker may still be importing TensorFlow when its driver dies.
    _, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, f"workers outlived their driver: {alive}"
  finally:
    driver.kill()


def test_negative_candidates_per_worker_is_refused(tmp_path):
  with pytest.raises(ValueError, match="candidates_per_worker=-1 must be"):
    local_pool.LocalPool(tiny_eval_config(tmp_path), num_workers=1,
                         candidates_per_worker=-1)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
