"""Evaluation of search candidates as Ray tasks, on one machine or a cluster.

`RayPool` has `local_pool.LocalPool`'s interface (`start()` warms the
workers up; `evaluate(tasks)` yields records as they finish; `shutdown()`),
with Ray core as the engine: a Ray task is a chunk of candidates
(`evaluate.task_chunks`: one trained candidate, or a worker's share of a
step's one-shot scores) that asks for `cpus_per_candidate` CPUs and
`gpus_per_candidate` GPUs and streams back a plain
`history.CandidateRecord` per candidate as it is finished (a Ray generator
task). When its worker process or its node dies, the chunk's candidates
that have not reported are run again, up to `max_retries` times. The
controller and the history stay on the driver.

The evaluation setup, the proxy data, the teacher's cached logits and, for
the one-shot proxy, the trained supernet's weights are put in the object
store once, by the first `evaluate` (so the pool can start before the
logits are written and the supernet trained); every task gets a reference
to them, so worker nodes need no shared filesystem and no copy of the
driver's cache (data streamed from disk, such as ImageNet, is loaded by
each worker from `config.data` instead and must be on every node). A Ray
worker process builds one `evaluate.CandidateEvaluator` from them on its
first candidate and reuses it for the next ones, so TensorFlow's import and
the setup happen once per worker process. Ray does not reuse a
process for tasks that hold GPUs (it starts a fresh one per task), so with
`gpus_per_candidate > 0` every candidate pays that start. A CPU worker
process is replaced after `candidates_per_worker` tasks (Ray's
`max_calls`; a trained candidate is one task, a one-shot chunk several
candidates), a backstop: the evaluator releases each trained candidate
itself (`akd_tf.memory`), and a one-shot score allocates nothing.

A candidate whose task still fails after its retries (a lost node, a killed
worker, a worker that cannot set up) is yielded as `evaluate.failed_record`
and the search goes on. A candidate is retried only if it never reported,
so nothing is counted twice.

Ray is an optional dependency (`pip install -e .[ray]`); this module imports
without it and `RayPool` says how to install it.

Public names: RayPool, import_ray, DEFAULT_MAX_RETRIES, INSTALL_HINT.
"""

import collections
import dataclasses
import functools
import logging
import os
from typing import Dict, Iterator, Optional, Sequence

from akd_tf import memory
from akd_tf.distill import data as data_lib
from akd_tf.nas import evaluate
from akd_tf.nas import history
from akd_tf.oneshot import cache as supernet_cache
from akd_tf.space import search_space

__all__ = ["DEFAULT_MAX_RETRIES", "INSTALL_HINT", "RayPool", "import_ray"]

INSTALL_HINT = ("install it with `pip install -e .[ray]` in the akd_tf "
                "checkout (or `bash .ci/install --ray`)")
DEFAULT_MAX_RETRIES = 3
_ERROR_CHARS = 400


def import_ray():
  """Returns the `ray` module.

  Raises:
    ImportError: Ray is not installed; the message says how to install it.
  """
  try:
    import ray  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(f"Ray is not installed ({error}): {INSTALL_HINT}"
                      ) from None
  return ray


@dataclasses.dataclass(frozen=True)
class _WorkerSetup:
  """What a Ray worker builds its evaluator from (one object-store entry)."""

  config: evaluate.EvalConfig
  data: Optional[data_lib.Data]
  teacher_logits: Optional[object]
  supernet_weights: Optional[bytes]


# The evaluator of this Ray worker process, keyed by its setup's object id.
_EVALUATORS: Dict[str, evaluate.CandidateEvaluator] = {}


def _evaluator_for(setup_ref) -> evaluate.CandidateEvaluator:
  """The worker's evaluator for `setup_ref`, built on first use."""
  key = setup_ref.hex()
  if key not in _EVALUATORS:
    setup = import_ray().get(setup_ref)
    evaluate.prepare_worker_process(setup.config.threads)
    _EVALUATORS.clear()
    _EVALUATORS[key] = evaluate.CandidateEvaluator(
        setup.config, data=setup.data, teacher_logits=setup.teacher_logits,
        supernet_weights=setup.supernet_weights)
  return _EVALUATORS[key]


def _warm_up() -> int:
  """A task that only starts a worker process.

  Loading it imports this module, and with it akd_tf.nas.evaluate, Keras and
  TensorFlow, which is most of a worker's start.
  """
  return os.getpid()


def _evaluate_candidates(setup_refs,
                         chunk: Sequence[evaluate.CandidateTask]
                         ) -> Iterator[history.CandidateRecord]:
  """The Ray task: a chunk of candidates in this worker's evaluator, each
  record yielded (so streamed to the driver) as it is finished.

  `setup_refs` is a one-element list so that Ray passes the reference
  itself rather than fetching the setup for every chunk.
  """
  evaluator = _evaluator_for(setup_refs[0])
  for task in chunk:
    yield evaluator.evaluate(task)


class RayPool:
  """Evaluates candidates as Ray tasks, at most `num_workers` at a time.

  Args:
    config: The evaluation setup.
    num_workers: Ray tasks (chunks of candidates) in flight at once.
    max_retries: Times a candidate is run again after its worker process
      or node died before it reported; then it is recorded as failed.
    address: The Ray cluster to join ('auto', 'HOST:PORT' or
      'ray://HOST:PORT'); None starts a private local Ray instance (or joins
      $RAY_ADDRESS when set). Ignored when Ray is already initialized in
      this process: that Ray is used and left running.
    cpus_per_candidate: CPUs Ray reserves for each candidate.
    gpus_per_candidate: GPUs Ray reserves for each candidate (fractions
      share a GPU).
    data: The data `config.data` describes, if the caller has loaded it.
      The teacher logits are read from `config.teacher_logits_path` by the
      first `evaluate`.
    oneshot_candidates_per_task: Most one-shot candidates in one Ray task
      (0: each worker's share of a batch, `evaluate.task_chunks`).
    candidates_per_worker: Tasks a CPU worker process runs before Ray
      replaces it (0: never): candidates when trained, chunks of them when
      scored one-shot. GPU tasks get a fresh process each anyway.
    onednn: Whether the workers' TensorFlow uses its oneDNN kernels (off:
      their caches grow a worker with every candidate, `akd_tf.memory`).
    allocator: The workers' C heap allocator, 'jemalloc' (when installed
      on the driver's machine, at the same path on every node) or 'system'
      (`akd_tf.memory.worker_environment`).

  Raises:
    ImportError: Ray is not installed.
    ValueError: a bad count, an unknown allocator, no Ray cluster at
      `address`, or no node with the resources one candidate asks for.
  """

  def __init__(self, config: evaluate.EvalConfig, num_workers: int,
               max_retries: int = DEFAULT_MAX_RETRIES,
               address: Optional[str] = None,
               cpus_per_candidate: float = 1.0,
               gpus_per_candidate: float = 0.0,
               data: Optional[data_lib.Data] = None,
               oneshot_candidates_per_task: int = 0,
               candidates_per_worker: int = 0, onednn: bool = False,
               allocator: str = "jemalloc"):
    if num_workers < 1:
      raise ValueError(f"num_workers={num_workers} must be >= 1")
    if max_retries < 0:
      raise ValueError(f"max_retries={max_retries} must be >= 0")
    if candidates_per_worker < 0:
      raise ValueError(f"candidates_per_worker={candidates_per_worker} must "
                       "be >= 0 (0: never replace a worker)")
    if oneshot_candidates_per_task < 0:
      raise ValueError(f"oneshot_candidates_per_task="
                       f"{oneshot_candidates_per_task} must be >= 0 (0: each "
                       "worker's share of a batch)")
    if cpus_per_candidate <= 0 or gpus_per_candidate < 0:
      raise ValueError(
          f"cpus_per_candidate={cpus_per_candidate} must be > 0 and "
          f"gpus_per_candidate={gpus_per_candidate} >= 0")
    environment = memory.worker_environment(onednn, allocator)
    self._ray = import_ray()
    self.config = _absolute_paths(config)
    self.num_workers = num_workers
    self.max_retries = max_retries
    self.oneshot_candidates_per_task = oneshot_candidates_per_task
    self.gpus_per_candidate = gpus_per_candidate
    self._data = data
    self._setup = None
    self._owns_ray = False
    self._in_flight = {}
    self._warming = []
    self._connect(address)
    try:
      self._check_resources(cpus_per_candidate, gpus_per_candidate)
    except BaseException:
      self.shutdown()
      raise
    # Retries are the driver's (`evaluate`): Ray's would run a chunk's
    # reported candidates again.
    options = dict(num_cpus=cpus_per_candidate, num_gpus=gpus_per_candidate,
                   max_retries=0)
    if environment:
      options["runtime_env"] = {"env_vars": environment}
    # Left unset for GPU tasks: Ray's default there is a fresh process each.
    recycle = ({"max_calls": candidates_per_worker}
               if candidates_per_worker and not gpus_per_candidate else {})
    self._remote = self._ray.remote(retry_exceptions=False, **options,
                                    **recycle)(_evaluate_candidates)
    self._remote_warm_up = self._ray.remote(**options)(_warm_up)

  def _connect(self, address: Optional[str]) -> None:
    """Joins `address` or starts a local Ray, unless Ray is running here."""
    ray = self._ray
    if ray.is_initialized():
      return
    if address is None and not os.environ.get("RAY_ADDRESS"):
      address = "local"
    try:
      ray.init(address=address, include_dashboard=False,
               logging_level=logging.WARNING)
    except ConnectionError as error:
      raise ValueError(
          f"ray_address='{address}': no Ray cluster to join ({error}). Start"
          " one with `ray start --head`, or leave ray_address unset for a "
          "local Ray instance") from None
    self._owns_ray = True

  def _check_resources(self, cpus: float, gpus: float) -> None:
    """Fails now rather than leave candidates waiting for no node."""
    nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus
               for r in nodes):
      have = sorted({(r.get("CPU", 0), r.get("GPU", 0)) for r in nodes})
      raise ValueError(
          f"no node of the Ray cluster has cpus_per_candidate={cpus} CPUs and "
          f"gpus_per_candidate={gpus} GPUs for one candidate (its nodes' "
          f"(CPUs, GPUs): {have}); ask for less or add such a node")

  def start(self) -> None:
    """Starts `num_workers` worker processes importing TensorFlow now.

    Without it they start with the first `evaluate`. Ray starts a fresh
    process for every task that holds GPUs, so with GPUs this does nothing.
    """
    if self.gpus_per_candidate == 0 and not self._warming:
      self._warming = [self._remote_warm_up.remote()
                       for _ in range(self.num_workers)]

  def wait_until_started(self) -> None:
    """Returns once the worker processes `start` began are up and idle."""
    if self._warming:
      self._ray.wait(self._warming, num_returns=len(self._warming))
    self._warming = []

  def evaluate(self, tasks: Sequence[evaluate.CandidateTask]
               ) -> Iterator[history.CandidateRecord]:
    """Evaluates `tasks`, yielding each record as soon as it is finished.

    A chunk whose worker process or node died is sent again without the
    candidates it reported, each up to `max_retries` times (a candidate's
    result is reported once, so nothing is counted twice); after that, or
    when its task raised (a worker that cannot set up), a candidate is
    yielded as a failed record.

    Raises:
      FileNotFoundError: the data, the teacher logits or the one-shot
        supernet are missing (read once, into the object store).
    """
    ray = self._ray
    if self._setup is None:
      self._setup = ray.put(_worker_setup(self.config, self._data))
      self._data = None
    chunks = functools.partial(evaluate.task_chunks,
                               num_workers=self.num_workers,
                               proxy_mode=self.config.proxy_mode,
                               max_size=self.oneshot_candidates_per_task)
    queue = collections.deque(chunks(tasks))
    attempts = collections.Counter()
    try:
      while queue or self._in_flight:
        while queue and len(self._in_flight) < self.num_workers:
          chunk = queue.popleft()
          self._in_flight[self._remote.remote([self._setup], chunk)] = {
              (task.step, task.index): task for task in chunk}
        (chunk_ref,), _ = ray.wait(list(self._in_flight), num_returns=1)
        try:
          record = ray.get(next(chunk_ref))
        except StopIteration:  # Every candidate of the chunk reported.
          del self._in_flight[chunk_ref]
          continue
        except ray.exceptions.RayError as error:
          retries = []
          for task in self._in_flight.pop(chunk_ref).values():
            attempts[task] += 1
            if (attempts[task] <= self.max_retries and
                not isinstance(error, ray.exceptions.RayTaskError)):
              retries.append(task)
            else:
              yield evaluate.failed_record(task, self.config, _failure(
                  error, attempts[task] - 1))
          queue.extend(chunks(retries))
          continue
        del self._in_flight[chunk_ref][record.key]
        yield record
    finally:
      self._cancel_in_flight()

  def _cancel_in_flight(self) -> None:
    for ref in self._in_flight:
      self._ray.cancel(ref, force=True)
    self._in_flight = {}

  def shutdown(self) -> None:
    """Cancels candidates in flight; stops the Ray instance it started."""
    if self._in_flight:
      self._cancel_in_flight()
    self._warming = []
    if self._owns_ray and self._ray.is_initialized():
      self._ray.shutdown()
    self._owns_ray = False


def _failure(error: BaseException, retries: int) -> str:
  """The error of a candidate whose task failed after `retries` retries."""
  reason = evaluate.error_text(error, last_line=True, max_chars=_ERROR_CHARS)
  return f"Ray task failed after {retries} retries: {reason}"


def _absolute_paths(config: evaluate.EvalConfig) -> evaluate.EvalConfig:
  """`config` with its paths absolute: Ray workers run in other folders."""
  paths = {}
  for name in ("latency_cache_path", "lut_path", "teacher_logits_path",
               "teacher_path"):
    value = getattr(config, name)
    if value:
      paths[name] = os.path.abspath(value)
  return dataclasses.replace(config, **paths)


def _worker_setup(config: evaluate.EvalConfig,
                  data: Optional[data_lib.Data]) -> _WorkerSetup:
  """What goes into the object store: the data and the teacher logits (None
  where streamed from disk) and the one-shot proxy's trained supernet.

  Raises:
    FileNotFoundError: the data, the teacher logits or the trained supernet
      are missing.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  if data is None:
    data = data_lib.load_data(config.data)
  logits = None
  if (data.train.images is not None and config.train.kd_alpha > 0 and
      config.teacher_logits_path):
    logits = np.load(config.teacher_logits_path)
  weights = None
  if config.proxy_mode == "oneshot":
    weights = supernet_cache.read_trained_weights(
        search_space.SearchSpace.from_config(config.space),
        config.global_params, data.input_shape, data.train, config.supernet,
        config.cache_dir, teacher_logits=logits)
  if data.train.images is None:
    data = None
  return _WorkerSetup(config, data, logits, weights)
