"""Evaluation of search candidates: one student from actions to a record.

`CandidateEvaluator.evaluate` decodes a candidate's actions, builds the
student, measures its latency, trains it on the proxy task (with KD for AKD,
plainly for the NAS baseline), measures its mini-validation accuracy and
computes its reward. Anything that goes wrong with one candidate (NaN loss,
a failed conversion, out of memory, any other error) becomes a failed
`CandidateRecord` carrying the error; only a broken setup raises.

The pools run evaluators in worker processes: `local_pool.LocalPool` on
this machine, `ray_pool.RayPool` as Ray tasks. Each worker process calls
`prepare_worker_process` once, before its first TensorFlow op.

`CandidateTimer` measures a candidate's latency on its own; the search runs
it in the driver before dispatching a batch, so timing never shares the CPU
with a candidate's training.

With `proxy_mode='oneshot'` a candidate is not trained: its accuracy is its
path's through the supernet the driver trained and cached
(`akd_tf.oneshot`), BatchNormalization recomputed for the path, on the same
mini-val split; each evaluator loads the supernet once (from the cache,
or from the weights it is given: a Ray worker gets them through the object
store) and traces its scoring function once, so a candidate costs about a
second. The pools then send a worker many candidates per task
(`task_chunks`), so that a task's overhead stays a small part of it.

Public names: EvalConfig, CandidateTask, CandidateTimer, CandidateEvaluator,
failed_record, error_text, prepare_worker_process, set_worker_threads,
task_chunks, PROXY_MODES.
"""

import dataclasses
import math
import os
import time
import traceback
from typing import List, Optional, Sequence, Tuple, Union

import keras

from akd_tf import memory
from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.distill import teacher as teacher_lib
from akd_tf.latency import measurer as measurer_lib
from akd_tf.latency import timing
from akd_tf.nas import history
from akd_tf.nas import reward as reward_lib
from akd_tf.oneshot import cache as supernet_cache
from akd_tf.oneshot import scorer as scorer_lib
from akd_tf.oneshot import trainer as supernet_trainer
from akd_tf.space import arch
from akd_tf.space import builder
from akd_tf.space import profile
from akd_tf.space import search_space

__all__ = ["CandidateEvaluator", "CandidateTask", "CandidateTimer",
           "EvalConfig", "PROXY_MODES", "error_text", "failed_record",
           "prepare_worker_process", "set_worker_threads", "task_chunks"]

PROXY_MODES = ("train", "oneshot")

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
    proxy_mode: 'train' (each candidate trained on the proxy task) or
      'oneshot' (scored through the cached supernet).
    supernet: How the supernet was trained ('oneshot' only): with the data,
      the students' settings and the teacher logits, its cache key.
    scorer: How a path is scored ('oneshot' only).
    cache_dir: Where the trained supernet is cached ('oneshot' only).
  """

  data: data_lib.DataConfig
  global_params: arch.GlobalParams
  space: dict
  train: candidate_training.TrainConfig
  reward: reward_lib.RewardConfig
  latency_mode: str = "measured"
  latency: timing.LatencyConfig = timing.LatencyConfig()
  latency_cache_path: Optional[str] = None
  lut_path: Optional[str] = None
  latency_command: Optional[str] = None
  teacher_logits_path: Optional[str] = None
  teacher_path: Optional[str] = None
  teacher_output: str = "logits"
  threads: int = 0
  proxy_mode: str = "train"
  supernet: Optional[supernet_trainer.SupernetTrainConfig] = None
  scorer: scorer_lib.OneShotConfig = scorer_lib.OneShotConfig()
  cache_dir: Optional[str] = None

  def __post_init__(self):
    if self.proxy_mode not in PROXY_MODES:
      raise ValueError(f"proxy_mode='{self.proxy_mode}' is not one of "
                       f"{PROXY_MODES}")
    if self.proxy_mode == "oneshot" and (self.supernet is None or
                                         self.cache_dir is None):
      raise ValueError("proxy_mode='oneshot' needs the supernet's recipe "
                       "and cache_dir")


@dataclasses.dataclass(frozen=True)
class CandidateTask:
  """One sampled candidate: its place in the search, its actions and, once
  `CandidateTimer` has measured it in the driver, its latency.

  Attributes:
    step: The controller step (batch) it was sampled in.
    index: Its position in the batch.
    actions: The controller's actions.
    latency_ms: Its latency, measured before dispatch; None: the evaluator
      measures it.
    latency_source: Where `latency_ms` came from ('measured', 'cache',
      'lut', 'command').
    latency_seconds: Wall time that measurement took.
  """

  step: int
  index: int
  actions: Tuple[int, ...]
  latency_ms: Optional[float] = None
  latency_source: str = ""
  latency_seconds: float = 0.0


def error_text(error: BaseException, last_line: bool = False,
               max_chars: int = _ERROR_CHARS) -> str:
  """'<type>: <message>' of a failed candidate's error, cut to `max_chars`.

  Args:
    error: The exception.
    last_line: Keep only the message's last non-blank line (a Ray task's
      error carries the worker's traceback before the error itself).
    max_chars: Longest text kept; a longer one ends with '...'.
  """
  message = str(error)
  if last_line:
    lines = [line for line in message.splitlines() if line.strip()]
    message = lines[-1] if lines else ""
  text = f"{type(error).__name__}: {message}"
  return text if len(text) <= max_chars else text[:max_chars] + "..."


def _is_out_of_memory(error: BaseException) -> bool:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return isinstance(error, (MemoryError, tf.errors.ResourceExhaustedError))


def _process_name() -> str:
  return f"{os.uname().nodename}:{os.getpid()}"


class _Attempt:
  """What one evaluation (or timing) of a task has found so far.

  Phases fill `blocks`, `fields` (params, macs, latency, accuracy) and
  `timings`; `record` and `failure` turn them into a `CandidateRecord`.
  """

  def __init__(self, task: CandidateTask, reward: reward_lib.RewardConfig,
               worker: str):
    self.task = task
    self.reward = reward
    self.worker = worker
    self.start = time.perf_counter()
    self.phase = "decode"
    self.blocks = ()
    self.fields = {}
    self.timings = {}

  def record(self, status: str, error: str = "") -> history.CandidateRecord:
    self.timings["total"] = time.perf_counter() - self.start
    accuracy = (self.fields.get("accuracy") if status == history.STATUS_OK
                else None)
    return history.CandidateRecord(
        step=self.task.step, index=self.task.index,
        actions=self.task.actions, blocks=self.blocks, status=status,
        error=error, reward=reward_lib.compute_reward(
            self.reward, accuracy, self.fields.get("latency_ms")),
        timings={k: round(v, 4) for k, v in self.timings.items()},
        worker=self.worker, **self.fields)

  def failure(self, error: BaseException) -> history.CandidateRecord:
    """The failed record of `error`, raised in the current phase."""
    if isinstance(error, candidate_training.CandidateDiverged):
      self.timings["train"] = error.train_seconds
      return self.record(history.STATUS_FAILED,
                         f"diverged: {error_text(error)}")
    if _is_out_of_memory(error):
      return self.record(history.STATUS_FAILED, f"out of memory during "
                         f"{self.phase}: {error_text(error)}")
    last = traceback.extract_tb(error.__traceback__)[-1]
    return self.record(history.STATUS_FAILED,
                       f"{self.phase} failed: {error_text(error)} "
                       f"(at {os.path.basename(last.filename)}:{last.lineno})")

  def decode(self, space: search_space.SearchSpace,
             global_params: arch.GlobalParams,
             input_shape) -> arch.ArchSpec:
    """The candidate's architecture (phase 'decode')."""
    self.phase = "decode"
    decoded = space.decode(self.task.actions)
    self.blocks = arch.encode_blocks(decoded)
    return arch.ArchSpec(decoded, global_params, input_shape)


class CandidateTimer:
  """Measures candidates' latencies where nothing else of the search runs.

  The search calls it in the driver for every candidate of a batch before
  the batch is dispatched: the workers are idle then (they wait for the
  batch), so no candidate's training shares the CPU with the timing, which
  made one student's recorded latency vary by up to 25% between searches
  when workers timed their own candidates beside each other's training
  (benchmarks/latency.py). It also gives every candidate of a search one
  timing machine, whatever node trains it.

  int8 latencies are calibrated on real training images of `data`, not on
  random ones.

  Args:
    config: The evaluation setup (latency mode, timing, caches, reward).
    data: The loaded data (input shape, int8 calibration images).
  """

  def __init__(self, config: EvalConfig, data: data_lib.Data):
    self.config = config
    self.space = search_space.SearchSpace.from_config(config.space)
    self.input_shape = data.input_shape
    self.measurer = measurer_lib.LatencyMeasurer(
        mode=config.latency_mode, config=config.latency,
        cache_path=config.latency_cache_path, lut_path=config.lut_path,
        command=config.latency_command)
    self.calibration_images = None
    if config.latency.quantize != "none":
      self.calibration_images = data_lib.arrays(
          data.train, config.latency.calibration_samples,
          seed=config.train.seed)[0]
    self.worker = _process_name()

  def time(self, task: CandidateTask
           ) -> Union[CandidateTask, history.CandidateRecord]:
    """Returns `task` with its latency, or its failed record; never raises.

    A candidate that cannot be decoded, converted or timed fails here and
    is not trained. What the timing built (the model, its converted graph)
    is released before it returns (`akd_tf.memory`), so the driver stays
    flat over a long search.
    """
    with memory.scoped_custom_gradients():
      timed = self._time(task)
    # Here, not in _time: its frame holds the model until it returns.
    memory.release_unused_memory()
    return timed

  def _time(self, task: CandidateTask
            ) -> Union[CandidateTask, history.CandidateRecord]:
    attempt = _Attempt(task, self.config.reward, self.worker)
    try:
      spec = attempt.decode(self.space, self.config.global_params,
                            self.input_shape)
      attempt.phase = "latency"
      # The weights set int8 calibration ranges: seed them as the worker does.
      keras.utils.set_random_seed(self.config.train.seed)
      result = self.measurer.measure(spec, None, self.calibration_images)
    except Exception as error:  # pylint: disable=broad-except
      return attempt.failure(error)
    return dataclasses.replace(
        task, latency_ms=result.latency_ms,
        latency_source="cache" if result.cached else result.source,
        latency_seconds=time.perf_counter() - attempt.start)


class CandidateEvaluator:
  """Evaluates candidates in this process.

  Args:
    config: The evaluation setup.
    data: The data `config.data` describes, already loaded (a Ray worker
      gets it from the object store); None loads it here.
    teacher_logits: The teacher's logits on `data.train`, already loaded;
      None loads them from `config.teacher_logits_path` when KD needs them.
    supernet_weights: The trained supernet's `.weights.h5` file as bytes
      (`akd_tf.oneshot.cache.read_trained_weights`), 'oneshot' only; None
      loads it from `config.cache_dir`.

  Raises:
    FileNotFoundError: the data, the teacher logits or the trained supernet
      are missing.
    ValueError: the data is not `config.data`, or the teacher logits do not
      match the training split.
  """

  def __init__(self, config: EvalConfig,
               data: Optional[data_lib.Data] = None,
               teacher_logits=None, supernet_weights: Optional[bytes] = None):
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
    self._timer = None
    self.worker = _process_name()
    self.scorer = None
    if config.proxy_mode == "oneshot" and supernet_weights is not None:
      supernet = supernet_cache.supernet_from_weights(
          self.space, config.global_params, self.data.input_shape,
          supernet_weights)
    elif config.proxy_mode == "oneshot":
      supernet, _ = supernet_cache.get_trained_supernet(
          self.space, config.global_params, self.data.input_shape,
          self.data.train, config.supernet, config.cache_dir,
          teacher_logits=self.teacher_logits, train_if_missing=False)
      self.scorer = scorer_lib.OneShotScorer(
          supernet, self.data.train, self.data.minival, config.scorer)

  def _measure_latency(self, attempt: _Attempt, spec: arch.ArchSpec,
                       model) -> None:
    """Phase 'latency': the task's driver-measured figure, or a timing here."""
    attempt.phase = "latency"
    task = attempt.task
    if task.latency_ms is not None:
      attempt.fields.update(latency_ms=task.latency_ms,
                            latency_source=task.latency_source)
      attempt.timings["latency"] = task.latency_seconds
      return
    if self._timer is None:
      self._timer = CandidateTimer(self.config, self.data)
    start = time.perf_counter()
    result = self._timer.measurer.measure(spec, model,
                                          self._timer.calibration_images)
    attempt.fields.update(
        latency_ms=result.latency_ms,
        latency_source="cache" if result.cached else result.source)
    attempt.timings["latency"] = time.perf_counter() - start

  def evaluate(self, task: CandidateTask) -> history.CandidateRecord:
    """Builds, times, trains and scores one candidate; never raises for it.

    The latency comes with the task when the driver measured it
    (`CandidateTimer`); otherwise it is measured here before training.
    Everything the candidate used is released before it returns
    (`akd_tf.memory`), so a worker stays flat over thousands of candidates.
    A one-shot score (`_score`) releases nothing: it builds no model and
    reuses the scorer's one trace, and clearing Keras' state would clear
    TensorFlow's kernel cache, so that the next score instantiated the
    scoring function again.
    """
    if self.scorer is not None:
      return self._score(task)
    with memory.scoped_custom_gradients():
      record = self._evaluate(task)
    # Here, not in _evaluate: its frame holds the model until it returns.
    memory.release_unused_memory()
    return record

  def _evaluate(self, task: CandidateTask) -> history.CandidateRecord:
    attempt = _Attempt(task, self.config.reward, self.worker)
    try:
      spec = attempt.decode(self.space, self.config.global_params,
                            self.data.input_shape)
      attempt.phase = "build"
      start = time.perf_counter()
      # Seeded here, not only for training: the initial weights of a
      # candidate must not depend on what its worker process ran before.
      keras.utils.set_random_seed(self.config.train.seed)
      model = builder.build_from_spec(spec)
      size = profile.profile_model(model)
      attempt.fields.update(params=size.params, macs=size.macs)
      attempt.timings["build"] = time.perf_counter() - start
      self._measure_latency(attempt, spec, model)
      attempt.phase = "train"
      trained = candidate_training.train_candidate(
          model, self.data.train, self.data.minival, self.config.train,
          teacher=self.teacher, teacher_logits=self.teacher_logits,
          teacher_output=self.config.teacher_output)
      attempt.timings["train"] = trained.train_seconds
      attempt.timings["eval"] = trained.eval_seconds
      attempt.fields["accuracy"] = trained.accuracy
      return attempt.record(history.STATUS_OK)
    except Exception as error:  # pylint: disable=broad-except
      # One bad candidate must not end a search of hundreds: record it.
      return attempt.failure(error)

  def _score(self, task: CandidateTask) -> history.CandidateRecord:
    """The one-shot evaluation: the path's score through the supernet.

    Builds no model and seeds nothing (seeding TensorFlow clears its kernel
    cache, and the next score would instantiate the scoring function
    again); params are counted from the path's supernet weights.
    """
    attempt = _Attempt(task, self.config.reward, self.worker)
    try:
      spec = attempt.decode(self.space, self.config.global_params,
                            self.data.input_shape)
      attempt.fields["params"] = sum(
          piece.positions().size
          for piece in self.scorer.supernet.path_weight_slices(task.actions))
      self._measure_latency(attempt, spec, None)
      attempt.phase = "score"
      score = self.scorer.score(task.actions)
      attempt.timings["score"] = score.seconds
      attempt.fields["accuracy"] = score.accuracy
      return attempt.record(history.STATUS_OK)
    except Exception as error:  # pylint: disable=broad-except
      return attempt.failure(error)


def set_worker_threads(threads: int) -> None:
  """Limits this worker process's TensorFlow to `threads` (0: TF's default).

  Call it before the process runs any TensorFlow op.
  """
  if threads:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def prepare_worker_process(threads: int) -> None:
  """Sets this process up to evaluate candidates: once, before any TF op.

  Every worker process of a pool (`local_pool`, `ray_pool`) calls it: freed
  large buffers go back to the system (`akd_tf.memory.return_large_buffers`)
  and TensorFlow runs `threads` threads (`set_worker_threads`).

  Args:
    threads: TensorFlow's intra- and inter-op threads
      (`EvalConfig.threads`); 0: TF's default.
  """
  memory.return_large_buffers()
  set_worker_threads(threads)


def task_chunks(tasks: Sequence[CandidateTask], num_workers: int,
                proxy_mode: str, max_size: int = 0
                ) -> List[Tuple[CandidateTask, ...]]:
  """`tasks` cut into the pool tasks a pool's workers run, in order.

  A trained candidate (30-100 s) is a pool task of its own. One-shot
  scores take about a second each, so each of `num_workers` workers gets
  its fair share of them in one task (ceil(len(tasks) / num_workers)
  candidates, at most `max_size`), and a task's cost (sending it, a Ray
  task's scheduling) stays a small part of its work.

  Args:
    tasks: The candidates to evaluate, e.g. a controller step's.
    num_workers: Workers (or Ray tasks in flight) sharing them.
    proxy_mode: 'train' or 'oneshot' (`EvalConfig.proxy_mode`).
    max_size: Most one-shot candidates in a chunk; 0: no bound.

  Returns:
    The chunks, each a tuple of consecutive tasks; every task is in one.
  """
  size = 1
  if proxy_mode == "oneshot":
    size = max(1, math.ceil(len(tasks) / num_workers))
    if max_size:
      size = min(size, max_size)
  return [tuple(tasks[i:i + size]) for i in range(0, len(tasks), size)]


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
