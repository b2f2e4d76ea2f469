"""Candidates evaluated in worker processes of this machine: `LocalPool`.

`LocalPool` runs `evaluate.CandidateEvaluator`s in worker processes
(spawned, so each has its own TensorFlow runtime); each worker loads the
data and the cached teacher logits once. A worker that dies mid-candidate
(killed, or by the kernel's OOM killer) costs that candidate a retry in a
rebuilt pool, and after `max_retries` it is recorded as failed; the search
goes on. A worker gives back what a candidate used once it is scored
(`akd_tf.memory`), so it stays flat over a long search; as a backstop the
pool replaces its workers after `candidates_per_worker` candidates each.
`ray_pool.RayPool` is the same pool as Ray tasks.

Public names: LocalPool.
"""

import collections
import concurrent.futures
import multiprocessing
import os
from typing import Iterator, Sequence

from akd_tf import memory
from akd_tf.distill import data as data_lib
from akd_tf.nas import evaluate
from akd_tf.nas import history

__all__ = ["LocalPool"]

_WORKER = {}  # This worker process's config, data and (once used) evaluator.


def _init_worker(config: evaluate.EvalConfig) -> None:
  """Process-pool initializer: TensorFlow and the data, once per worker.

  The evaluator itself (which reads the teacher's logits) is made by the
  first candidate, so workers can start before the logits are written.
  """
  evaluate.prepare_worker_process(config.threads)
  _WORKER["config"] = config
  _WORKER["data"] = data_lib.load_data(config.data)


def _worker_ready() -> int:
  return os.getpid()


def _evaluate_in_worker(task: evaluate.CandidateTask
                        ) -> history.CandidateRecord:
  if "evaluator" not in _WORKER:
    _WORKER["evaluator"] = evaluate.CandidateEvaluator(_WORKER["config"],
                                                       data=_WORKER["data"])
  return _WORKER["evaluator"].evaluate(task)


class LocalPool:
  """Evaluates candidates in `num_workers` local worker processes.

  Args:
    config: The evaluation setup, sent to every worker once.
    num_workers: Worker processes.
    max_retries: Times a candidate is run again after its worker died; then
      it is recorded as failed.
    candidates_per_worker: Once a worker has evaluated this many candidates,
      the workers are replaced by fresh processes before the next batch of
      `evaluate` (0: never). A backstop: a worker releases each candidate
      itself. Not `ProcessPoolExecutor(max_tasks_per_child=...)`: on Python
      3.11-3.13 that executor stops replacing workers, and hangs, when more
      tasks are queued than there are workers (CPython issue gh-115634).
    onednn: Whether the workers' TensorFlow uses its oneDNN kernels. Off by
      default: their caches grow a worker with every candidate
      (`akd_tf.memory`).
    allocator: The workers' C heap allocator, 'jemalloc' (when installed)
      or 'system' (`akd_tf.memory.worker_environment`).

  Raises:
    ValueError: num_workers < 1, candidates_per_worker < 0 or an unknown
      allocator.
  """

  def __init__(self, config: evaluate.EvalConfig, num_workers: int,
               max_retries: int = 1, candidates_per_worker: int = 0,
               onednn: bool = False, allocator: str = "jemalloc"):
    if num_workers < 1:
      raise ValueError(f"num_workers={num_workers} must be >= 1")
    if candidates_per_worker < 0:
      raise ValueError(f"candidates_per_worker={candidates_per_worker} must "
                       "be >= 0 (0: never replace a worker)")
    self.config = config
    self.num_workers = num_workers
    self.max_retries = max_retries
    self.candidates_per_worker = candidates_per_worker
    self._environment = memory.worker_environment(onednn, allocator)
    self._executor = None
    self._starting = []
    self._evaluated = collections.Counter()  # Per worker of this executor.

  def start(self) -> None:
    """Starts the workers now (TensorFlow import, data) without waiting.

    Otherwise they start with the first `evaluate`. Setup errors of a worker
    (missing teacher logits) surface in `evaluate`.
    """
    self._starting = [self._submit(_worker_ready)
                      for _ in range(self.num_workers)]

  def wait_until_started(self) -> None:
    """Returns once the workers `start` began are up and idle."""
    concurrent.futures.wait(self._starting)
    self._starting = []

  def _submit(self, fn, *args) -> concurrent.futures.Future:
    """Submits `fn(*args)`; the executor starts its workers here, so they
    are spawned with the workers' environment."""
    if self._executor is None:
      self._executor = concurrent.futures.ProcessPoolExecutor(
          max_workers=self.num_workers,
          mp_context=multiprocessing.get_context("spawn"),
          initializer=_init_worker, initargs=(self.config,))
    with memory.child_environment(self._environment):
      return self._executor.submit(fn, *args)

  def _recycle_worn_workers(self) -> None:
    """Replaces the workers once one has run `candidates_per_worker`."""
    if (self.candidates_per_worker and self._evaluated and
        max(self._evaluated.values()) >= self.candidates_per_worker):
      self.shutdown()

  def evaluate(self, tasks: Sequence[evaluate.CandidateTask]
               ) -> Iterator[history.CandidateRecord]:
    """Evaluates `tasks`, yielding each record as soon as it is finished.

    When a worker dies, every candidate in flight is run again in a new pool
    (its result was never reported, so nothing is counted twice), up to
    `max_retries` times; after that it is yielded as a failed record.
    """
    self._recycle_worn_workers()
    attempts = {task: 0 for task in tasks}
    pending = list(tasks)
    while pending:
      futures = {self._submit(_evaluate_in_worker, t): t for t in pending}
      pending = []
      for future in concurrent.futures.as_completed(futures):
        task = futures[future]
        try:
          record = future.result()
        except concurrent.futures.process.BrokenProcessPool as error:
          attempts[task] += 1
          if attempts[task] <= self.max_retries:
            pending.append(task)
          else:
            yield evaluate.failed_record(
                task, self.config, f"worker process died (killed or out of "
                f"memory) {attempts[task]} times: {error}")
        else:
          self._evaluated[record.worker] += 1
          yield record
      if pending:
        self.shutdown()

  def shutdown(self) -> None:
    """Stops the workers."""
    if self._executor is not None:
      self._executor.shutdown(wait=True, cancel_futures=True)
      self._executor = None
    self._evaluated.clear()

