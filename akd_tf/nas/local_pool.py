"""Candidates evaluated in worker processes of this machine: `LocalPool`.

`LocalPool` runs `evaluate.CandidateEvaluator`s in worker processes
(spawned, so each has its own TensorFlow runtime); each worker loads the
data and the cached teacher logits once. A pool task is a chunk of
candidates (`evaluate.task_chunks`: one trained candidate, or a worker's
share of a step's one-shot scores); the worker sends each record back
through a pipe as soon as it is finished. A worker that dies mid-chunk
(killed, or by the kernel's OOM killer) costs the candidates in flight that
had not reported a retry in a rebuilt pool, and after `max_retries` they
are recorded as failed; the search goes on. A worker gives back what a
candidate used once it is scored (`akd_tf.memory`), so it stays flat over a
long search; as a backstop the pool replaces its workers after
`candidates_per_worker` candidates each. A worker whose driver dies (a
search killed by SIGKILL) exits within a second instead of holding its
memory: the executor's task queue never reports the end, since every worker
holds both ends of its pipe.
`ray_pool.RayPool` is the same pool as Ray tasks.

Public names: LocalPool.
"""

import collections
import concurrent.futures
import multiprocessing
import os
import threading
import time
from typing import Iterator, Optional, Sequence, Tuple

from akd_tf import memory
from akd_tf.distill import data as data_lib
from akd_tf.nas import evaluate
from akd_tf.nas import history

__all__ = ["LocalPool"]

# This worker process's config, data, record pipe and (once used) evaluator.
_WORKER = {}
# How often the driver, waiting for a record, looks for a dead worker, and a
# worker for a dead driver.
_POLL_SECONDS = 0.5


def _init_worker(config: evaluate.EvalConfig, records, records_lock,
                 driver: int) -> None:
  """Process-pool initializer: TensorFlow and the data, once per worker.

  The evaluator itself (which reads the teacher's logits) is made by the
  first candidate, so workers can start before the logits are written.
  `records` is the sending end of the pool's record pipe, shared by its
  workers under `records_lock`; `driver` is the pool's process id.
  """
  _exit_with_parent(driver)
  evaluate.prepare_worker_process(config.threads)
  _WORKER.update(config=config, data=data_lib.load_data(config.data),
                 records=records, records_lock=records_lock)


def _exit_with_parent(parent: int) -> None:
  """Ends this process as soon as `parent` is no longer its parent (also
  when it died before this process got here)."""

  def watch():
    while os.getppid() == parent:
      time.sleep(_POLL_SECONDS)
    os._exit(1)  # pylint: disable=protected-access

  threading.Thread(target=watch, name="exit_with_parent", daemon=True).start()


def _worker_ready() -> int:
  return os.getpid()


def _evaluate_in_worker(chunk: Sequence[evaluate.CandidateTask]) -> None:
  """Evaluates `chunk` in order, sending each record as it is finished.

  A record is about a kilobyte: written in one piece (a pipe write below
  PIPE_BUF is atomic), so a worker killed mid-chunk leaves whole records.
  """
  if "evaluator" not in _WORKER:
    _WORKER["evaluator"] = evaluate.CandidateEvaluator(_WORKER["config"],
                                                       data=_WORKER["data"])
  for task in chunk:
    record = _WORKER["evaluator"].evaluate(task)
    with _WORKER["records_lock"]:
      _WORKER["records"].send(record)


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
    oneshot_candidates_per_task: Most one-shot candidates in one pool task
      (0: each worker's share of a batch, `evaluate.task_chunks`).
    onednn: Whether the workers' TensorFlow uses its oneDNN kernels. Off by
      default: their caches grow a worker with every candidate
      (`akd_tf.memory`).
    allocator: The workers' C heap allocator, 'jemalloc' (when installed)
      or 'system' (`akd_tf.memory.worker_environment`).

  Raises:
    ValueError: num_workers < 1, candidates_per_worker or
      oneshot_candidates_per_task < 0, or an unknown allocator.
  """

  def __init__(self, config: evaluate.EvalConfig, num_workers: int,
               max_retries: int = 1, candidates_per_worker: int = 0,
               oneshot_candidates_per_task: int = 0,
               onednn: bool = False, allocator: str = "jemalloc"):
    if num_workers < 1:
      raise ValueError(f"num_workers={num_workers} must be >= 1")
    if candidates_per_worker < 0:
      raise ValueError(f"candidates_per_worker={candidates_per_worker} must "
                       "be >= 0 (0: never replace a worker)")
    if oneshot_candidates_per_task < 0:
      raise ValueError(f"oneshot_candidates_per_task="
                       f"{oneshot_candidates_per_task} must be >= 0 (0: each "
                       "worker's share of a batch)")
    self.config = config
    self.num_workers = num_workers
    self.max_retries = max_retries
    self.candidates_per_worker = candidates_per_worker
    self.oneshot_candidates_per_task = oneshot_candidates_per_task
    self._environment = memory.worker_environment(onednn, allocator)
    self._executor = None
    self._records = None  # The receiving end of the workers' record pipe.
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
      context = multiprocessing.get_context("spawn")
      self._records, records = context.Pipe(duplex=False)
      self._executor = concurrent.futures.ProcessPoolExecutor(
          max_workers=self.num_workers, mp_context=context,
          initializer=_init_worker,
          initargs=(self.config, records, context.Lock(), os.getpid()))
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

    When a worker dies, every candidate in flight that has not reported is
    run again in a new pool (its result was never reported, so nothing is
    counted twice), up to `max_retries` times; after that it is yielded as
    a failed record.

    Raises:
      Exception: what a worker's setup raised (missing teacher logits or
        supernet).
    """
    self._recycle_worn_workers()
    attempts = collections.Counter()
    pending = list(tasks)
    while pending:
      unreported = {(task.step, task.index): task for task in pending}
      futures = [self._submit(_evaluate_in_worker, chunk)
                 for chunk in evaluate.task_chunks(
                     pending, self.num_workers, self.config.proxy_mode,
                     self.oneshot_candidates_per_task)]
      pending, lost = [], None
      try:
        while unreported and lost is None:
          record, lost = self._next_record(futures)
          if record is not None:
            del unreported[record.key]
            self._evaluated[record.worker] += 1
            yield record
      finally:
        if unreported:  # A worker died, or the caller stopped listening.
          self.shutdown()
      for task in unreported.values():
        attempts[task] += 1
        if attempts[task] <= self.max_retries:
          pending.append(task)
        else:
          yield evaluate.failed_record(
              task, self.config, f"worker process died (killed or out of "
              f"memory) {attempts[task]} times: {lost}")

  def _next_record(self, futures: Sequence[concurrent.futures.Future]
                   ) -> Tuple[Optional[history.CandidateRecord],
                              Optional[BaseException]]:
    """(the next record a worker sent, None), or (None, the error) once a
    worker died and every record sent before it is read.

    Raises:
      Exception: what a chunk raised other than its worker's death.
    """
    while True:
      if self._records.poll(_POLL_SECONDS):
        return self._records.recv(), None
      for future in futures:
        if future.done() and future.exception() is not None:
          error = future.exception()
          if not isinstance(error,
                            concurrent.futures.process.BrokenProcessPool):
            raise error
          if not self._records.poll():
            return None, error

  def shutdown(self) -> None:
    """Stops the workers."""
    if self._executor is not None:
      self._executor.shutdown(wait=True, cancel_futures=True)
      self._executor = None
      self._records.close()  # Records a dead pool's workers sent late.
      self._records = None
    self._evaluated.clear()

