"""Evaluation of search candidates: one student from actions to a record.

`CandidateEvaluator.evaluate` decodes a candidate's actions, builds the
student, measures its latency, trains it on the proxy task (with KD for AKD,
plainly for the NAS baseline), measures its mini-validation accuracy and
computes its reward. Anything that goes wrong with one candidate (NaN loss,
a failed conversion, out of memory, any other error) becomes a failed
`CandidateRecord` carrying the error; only a broken setup raises.

`LocalPool` runs evaluators in worker processes (spawned, so each has its own
TensorFlow runtime); each worker loads the data and the cached teacher logits
once. A worker that dies mid-candidate (killed, or by the kernel's OOM
killer) costs that candidate a retry in a rebuilt pool, and after
`max_retries` it is recorded as failed; the search goes on.

Public names: EvalConfig, CandidateTask, CandidateEvaluator, LocalPool,
failed_record, set_worker_threads.
"""

import concurrent.futures
import dataclasses
import multiprocessing
import os
import time
import traceback
from typing import Iterator, Optional, Sequence, Tuple

import keras

from akd_tf import arch
from akd_tf import builder
from akd_tf import data as data_lib
from akd_tf import distill
from akd_tf import history
from akd_tf import latency as latency_lib
from akd_tf import profile
from akd_tf import reward as reward_lib
from akd_tf import search_space
from akd_tf import teacher as teacher_lib

__all__ = ["CandidateEvaluator", "CandidateTask", "EvalConfig", "LocalPool",
           "failed_record", "set_worker_threads"]

_ERROR_CHARS = 600


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Everything a worker needs to evaluate candidates (picklable).

  Attributes:
    data: The proxy task's data (train = proxy training images).
    global_params: Network-wide settings of every student.
    space: `SearchSpace.get_config()` of the space the actions index.
    train: The proxy training recipe; kd_alpha = 0 trains plainly (the NAS
      baseline's accuracy).
    reward: How accuracy and latency make the reward.
    latency_mode: 'measured', 'lut' or 'command' (see latency.MODES).
    latency: The timing setup.
    latency_cache_path: Persistent latency cache, shared by workers.
    lut_path: The lookup table of 'lut' mode.
    latency_command: The on-device command template of 'command' mode.
    teacher_logits_path: `.npy` of the teacher's logits on data.train (the
      cheap way for data that fits in memory).
    teacher_path: The teacher itself, run online when there are no cached
      logits (data streamed from disk, such as ImageNet).
    teacher_output: What that teacher outputs, 'logits' or 'probabilities'.
    threads: TensorFlow intra-op threads of a worker; 0 lets TF choose.
  """

  data: data_lib.DataConfig
  global_params: arch.GlobalParams
  space: dict
  train: distill.TrainConfig
  reward: reward_lib.RewardConfig
  latency_mode: str = "measured"
  latency: latency_lib.LatencyConfig = latency_lib.LatencyConfig()
  latency_cache_path: Optional[str] = None
  lut_path: Optional[str] = None
  latency_command: Optional[str] = None
  teacher_logits_path: Optional[str] = None
  teacher_path: Optional[str] = None
  teacher_output: str = "logits"
  threads: int = 0


@dataclasses.dataclass(frozen=True)
class CandidateTask:
  """One sampled candidate: its place in the search and its actions."""

  step: int
  index: int
  actions: Tuple[int, ...]


def _error_text(error: BaseException) -> str:
  text = f"{type(error).__name__}: {error}"
  return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "..."


def _is_out_of_memory(error: BaseException) -> bool:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return isinstance(error, (MemoryError, tf.errors.ResourceExhaustedError))


class CandidateEvaluator:
  """Evaluates candidates in this process.

  Args:
    config: The evaluation setup.
    data: The data `config.data` describes, already loaded (a Ray worker
      gets it from the object store); None loads it here.
    teacher_logits: The teacher's logits on `data.train`, already loaded;
      None loads them from `config.teacher_logits_path` when KD needs them.

  Raises:
    FileNotFoundError: the data or the teacher logits are missing.
    ValueError: the data is not `config.data`, or the teacher logits do not
      match the training split.
  """

  def __init__(self, config: EvalConfig,
               data: Optional[data_lib.Data] = None,
               teacher_logits=None):
    import numpy as np  # pylint: disable=g-import-not-at-top
    self.config = config
    self.space = search_space.SearchSpace.from_config(config.space)
    if data is not None and data.config != config.data:
      raise ValueError(f"the given data was loaded with {data.config}, not "
                       f"the evaluation's {config.data}")
    self.data = data if data is not None else data_lib.load_data(config.data)
    self.teacher_logits = None
    self.teacher = None
    kd = config.train.kd_alpha > 0
    if kd and teacher_logits is None and not config.teacher_logits_path:
      if not config.teacher_path:
        raise ValueError("kd_alpha > 0 needs teacher_logits_path or "
                         "teacher_path")
      self.teacher = teacher_lib.load_teacher(config.teacher_path)
      teacher_lib.check_teacher(
          self.teacher, self.data.input_shape, self.data.num_classes,
          self.data.name, images=teacher_lib.sample_images(self.data.train),
          teacher_output=config.teacher_output)
    elif kd:
      source = ("the given teacher logits" if teacher_logits is not None
                else f"teacher logits {config.teacher_logits_path}")
      self.teacher_logits = (teacher_logits if teacher_logits is not None
                             else np.load(config.teacher_logits_path))
      if self.teacher_logits.shape[0] != self.data.train.size:
        raise ValueError(
            f"{source} hold {self.teacher_logits.shape[0]} rows; the "
            f"training split has {self.data.train.size} images")
    self.measurer = latency_lib.LatencyMeasurer(
        mode=config.latency_mode, config=config.latency,
        cache_path=config.latency_cache_path, lut_path=config.lut_path,
        command=config.latency_command)
    self.worker = f"{os.uname().nodename}:{os.getpid()}"

  def evaluate(self, task: CandidateTask) -> history.CandidateRecord:
    """Builds, times, trains and scores one candidate; never raises for it."""
    timings = {}
    start = time.perf_counter()
    blocks = ()
    fields = {}

    def record(status, error=""):
      timings["total"] = time.perf_counter() - start
      accuracy = fields.get("accuracy")
      latency_ms = fields.get("latency_ms")
      return history.CandidateRecord(
          step=task.step, index=task.index, actions=task.actions,
          blocks=blocks, status=status, error=error,
          reward=reward_lib.compute_reward(
              self.config.reward, accuracy if status == history.STATUS_OK
              else None, latency_ms),
          timings={k: round(v, 4) for k, v in timings.items()},
          worker=self.worker, **fields)

    phase = "decode"
    try:
      decoded = self.space.decode(task.actions)
      blocks = arch.encode_blocks(decoded)
      phase = "build"
      t = time.perf_counter()
      spec = arch.ArchSpec(decoded, self.config.global_params,
                           self.data.input_shape)
      # Seeded here, not only for training: the initial weights of a
      # candidate must not depend on what its worker process ran before.
      keras.utils.set_random_seed(self.config.train.seed)
      model = builder.build_from_spec(spec)
      size = profile.profile_model(model)
      fields.update(params=size.params, macs=size.macs)
      timings["build"] = time.perf_counter() - t
      phase = "latency"
      t = time.perf_counter()
      result = self.measurer.measure(spec, model)
      fields.update(latency_ms=result.latency_ms,
                    latency_source="cache" if result.cached else result.source)
      timings["latency"] = time.perf_counter() - t
      phase = "train"
      trained = distill.train_candidate(
          model, self.data.train, self.data.minival, self.config.train,
          teacher=self.teacher, teacher_logits=self.teacher_logits,
          teacher_output=self.config.teacher_output)
      timings["train"] = trained.train_seconds
      timings["eval"] = trained.eval_seconds
      fields["accuracy"] = trained.accuracy
      return record(history.STATUS_OK)
    except distill.CandidateDiverged as error:
      timings["train"] = error.train_seconds
      return record(history.STATUS_FAILED, f"diverged: {_error_text(error)}")
    except Exception as error:  # pylint: disable=broad-except
      # One bad candidate must not end a search of hundreds: record it.
      if _is_out_of_memory(error):
        return record(history.STATUS_FAILED,
                      f"out of memory during {phase}: {_error_text(error)}")
      last = traceback.extract_tb(error.__traceback__)[-1]
      return record(history.STATUS_FAILED,
                    f"{phase} failed: {_error_text(error)} "
                    f"(at {os.path.basename(last.filename)}:{last.lineno})")


def set_worker_threads(threads: int) -> None:
  """Limits this worker process's TensorFlow to `threads` (0: TF's default).

  Call it before the process runs any TensorFlow op.
  """
  if threads:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


_WORKER = {}  # This worker process's config, data and (once used) evaluator.


def _init_worker(config: EvalConfig) -> None:
  """Process-pool initializer: TensorFlow and the data, once per worker.

  The evaluator itself (which reads the teacher's logits) is made by the
  first candidate, so workers can start before the logits are written.
  """
  set_worker_threads(config.threads)
  _WORKER["config"] = config
  _WORKER["data"] = data_lib.load_data(config.data)


def _worker_ready() -> int:
  return os.getpid()


def _evaluate_in_worker(task: CandidateTask) -> history.CandidateRecord:
  if "evaluator" not in _WORKER:
    _WORKER["evaluator"] = CandidateEvaluator(_WORKER["config"],
                                              data=_WORKER["data"])
  return _WORKER["evaluator"].evaluate(task)


class LocalPool:
  """Evaluates candidates in `num_workers` local worker processes.

  Args:
    config: The evaluation setup, sent to every worker once.
    num_workers: Worker processes.
    max_retries: Times a candidate is run again after its worker died; then
      it is recorded as failed.
  """

  def __init__(self, config: EvalConfig, num_workers: int,
               max_retries: int = 1):
    if num_workers < 1:
      raise ValueError(f"num_workers={num_workers} must be >= 1")
    self.config = config
    self.num_workers = num_workers
    self.max_retries = max_retries
    self._executor = None

  def start(self) -> None:
    """Starts the workers now (TensorFlow import, data) without waiting.

    Otherwise they start with the first `evaluate`. Setup errors of a worker
    (missing teacher logits) surface in `evaluate`.
    """
    self._ensure_executor()
    for _ in range(self.num_workers):
      self._executor.submit(_worker_ready)

  def _ensure_executor(self) -> None:
    if self._executor is None:
      self._executor = concurrent.futures.ProcessPoolExecutor(
          max_workers=self.num_workers,
          mp_context=multiprocessing.get_context("spawn"),
          initializer=_init_worker, initargs=(self.config,))

  def evaluate(self, tasks: Sequence[CandidateTask]
               ) -> Iterator[history.CandidateRecord]:
    """Evaluates `tasks`, yielding each record as soon as it is finished.

    When a worker dies, every candidate in flight is run again in a new pool
    (its result was never reported, so nothing is counted twice), up to
    `max_retries` times; after that it is yielded as a failed record.
    """
    attempts = {task: 0 for task in tasks}
    pending = list(tasks)
    while pending:
      self._ensure_executor()
      futures = {self._executor.submit(_evaluate_in_worker, t): t
                 for t in pending}
      pending = []
      for future in concurrent.futures.as_completed(futures):
        task = futures[future]
        try:
          yield future.result()
        except concurrent.futures.process.BrokenProcessPool as error:
          attempts[task] += 1
          if attempts[task] <= self.max_retries:
            pending.append(task)
          else:
            yield failed_record(
                task, self.config, f"worker process died (killed or out of "
                f"memory) {attempts[task]} times: {error}")
      if pending:
        self.shutdown()

  def shutdown(self) -> None:
    """Stops the workers."""
    if self._executor is not None:
      self._executor.shutdown(wait=True, cancel_futures=True)
      self._executor = None


def failed_record(task: CandidateTask, config: EvalConfig,
                  error: str) -> history.CandidateRecord:
  """The record of a candidate whose evaluation never reported back."""
  space = search_space.SearchSpace.from_config(config.space)
  return history.CandidateRecord(
      step=task.step, index=task.index, actions=task.actions,
      blocks=arch.encode_blocks(space.decode(task.actions)),
      status=history.STATUS_FAILED, error=error,
      reward=reward_lib.compute_reward(config.reward, None, None),
      worker="lost")
