"""Full training runs: strategies, resumable `fit`, one teacher or student job.

`akd-train` turns its flags into a `TrainJob` and calls `run_job`, which
  1. loads the data (`akd_tf.distill.data`);
  2. builds the model under the distribution strategy: a built-in teacher
     (role 'teacher') or the student of an `ArchSpec` (role 'student'),
     taking the input shape and class count from the data;
  3. for a student with kd_alpha > 0, loads or trains the teacher and, when
     not augmenting, computes its logits on the training split once
     (cached on disk) instead of running it every step;
  4. trains with `Distiller` (kd_alpha = 0: plain cross-entropy), scaling
     the batch and learning rate by the number of replicas, backing up the
     whole training state every epoch (a killed run resumes from the last
     finished epoch when started again with the same model_dir), writing
     TensorBoard logs and logging progress with an ETA;
  5. recomputes the BatchNormalization statistics over the recipe's
     `bn_recalibration_images` training images, when there are any;
  6. saves `<model_dir>/<role>.keras` (and `arch.json` for a student) and
     `result.json` with minival and test accuracy.

Public names: STRATEGIES, ROLES, TrainJob, JobResult, JobInputError,
split_cpu, make_strategy, EtaLogger, fit_resumable, run_job.
"""

import dataclasses
import importlib.util
import json
import logging
import os
import time
from typing import Callable, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from akd_tf import config_checks
from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.distill import distiller as distiller_lib
from akd_tf.distill import teacher as teacher_lib
from akd_tf.space import arch as arch_lib
from akd_tf.space import builder

__all__ = ["EtaLogger", "JobInputError", "JobResult", "ROLES", "STRATEGIES",
           "TrainJob", "fit_resumable", "make_strategy", "run_job",
           "split_cpu"]

_LOG = logging.getLogger(__name__)

STRATEGIES = ("one_device", "mirrored", "multi_worker", "tpu")
ROLES = ("teacher", "student")


def split_cpu(count: int) -> None:
  """Splits the CPU into `count` logical devices, so that strategy
  'mirrored' can be tried without GPUs.

  Call it before any other TensorFlow work: TensorFlow fixes its devices
  when it first uses them.

  Raises:
    ValueError: count < 2.
    RuntimeError: TensorFlow has already set up its devices.
  """
  if count < 2:
    raise ValueError(f"{count} logical CPUs: give 2 or more")
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def make_strategy(name: str, tpu: Optional[str] = None
                  ) -> tf.distribute.Strategy:
  """Returns the tf.distribute strategy `name` names.

  one_device    the first GPU, else the CPU
  mirrored      every local GPU (or every logical CPU when there is none)
  multi_worker  MultiWorkerMirroredStrategy; workers from TF_CONFIG
  tpu           TPUStrategy on the TPU `tpu` names ('' or 'local' for a
                TPU VM)

  Create it before any other TensorFlow work (multi_worker needs that).

  Raises:
    ValueError: unknown name, or 'tpu' without a TPU address.
  """
  if name == "one_device":
    device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
    return tf.distribute.OneDeviceStrategy(device)
  if name == "mirrored":
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if not devices:
      devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    if tpu is None:
      raise ValueError("strategy 'tpu' needs the TPU's name or address "
                       "(--tpu; 'local' on a TPU VM)")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu="" if tpu == "local" else tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"unknown strategy '{name}'; choose one of {STRATEGIES}")


class EtaLogger(keras.callbacks.Callback):
  """Logs progress with an ETA: every finished epoch, and within an epoch
  at most every `interval_seconds`.

  Args:
    log: Where lines go (default: the INFO log of logger
      'akd_tf.distill.training'; absl's logging.info in the app).
    interval_seconds: Least time between two lines within an epoch.
  """

  def __init__(self, log: Callable[[str], None] = _LOG.info,
               interval_seconds: float = 30.0):
    super().__init__()
    self._log = log
    self._interval = interval_seconds
    self._epoch_seconds = []
    self._start = self._last = 0.0
    self._epoch = 0

  def _epochs_left(self, epoch):
    total = self.params.get("epochs") or epoch + 1
    return total, total - epoch - 1

  def on_epoch_begin(self, epoch, logs=None):
    self._start = self._last = time.perf_counter()
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    now = time.perf_counter()
    steps = self.params.get("steps")
    if now - self._last < self._interval or not steps:
      return
    self._last = now
    per_step = (now - self._start) / (batch + 1)
    total, left = self._epochs_left(self._epoch)
    epoch_eta = per_step * (steps - batch - 1)
    mean = (sum(self._epoch_seconds) / len(self._epoch_seconds)
            if self._epoch_seconds else per_step * steps)
    self._log(f"epoch {self._epoch + 1}/{total} step {batch + 1}/{steps}: "
              f"loss={(logs or {}).get('loss', float('nan')):.4f}; ETA "
              f"{epoch_eta:.0f}s for this epoch, "
              f"{epoch_eta + mean * left:.0f}s for the run")

  def on_epoch_end(self, epoch, logs=None):
    seconds = time.perf_counter() - self._start
    self._epoch_seconds.append(seconds)
    total, left = self._epochs_left(epoch)
    mean = sum(self._epoch_seconds) / len(self._epoch_seconds)
    metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
    self._log(f"epoch {epoch + 1}/{total} took {seconds:.1f}s; ETA "
              f"{mean * left:.0f}s ({left} epoch(s) left); {metrics}")


def fit_resumable(model: keras.Model, train: tf.data.Dataset, epochs: int,
                  model_dir: str,
                  validation_data: Optional[tf.data.Dataset] = None,
                  callbacks: Sequence[keras.callbacks.Callback] = (),
                  log: Callable[[str], None] = _LOG.info,
                  verbose: int = 0) -> keras.callbacks.History:
  """`model.fit` that backs up its state every epoch and resumes from it.

  The weights, optimizer state and epoch are saved under
  `<model_dir>/backup` after every epoch, keeping the previous backup too;
  a later call with the same model_dir (after a kill) continues from the
  last finished epoch, or from the one before when the kill interrupted
  the writing of the last backup. The backup is deleted once all epochs
  are done. Per-epoch metrics are appended to `<model_dir>/metrics.csv`
  and, when the tensorboard package is installed, written as TensorBoard
  logs to `<model_dir>/logs`.
  """
  backup = os.path.join(model_dir, "backup")
  if os.path.exists(os.path.join(backup, "training_metadata.json")):
    with open(os.path.join(backup, "training_metadata.json")) as f:
      done = json.load(f).get("epoch", 0)
    log(f"resuming from {backup}: {done} of {epochs} epoch(s) done")
  all_callbacks = [
      # double_checkpoint keeps the previous backup, so a kill while the
      # weights are being written resumes from the epoch before.
      keras.callbacks.BackupAndRestore(backup, save_freq="epoch",
                                       double_checkpoint=True),
      keras.callbacks.CSVLogger(os.path.join(model_dir, "metrics.csv"),
                                append=True),
      keras.callbacks.TerminateOnNaN(),
      EtaLogger(log),
  ]
  if importlib.util.find_spec("tensorboard") is not None:
    all_callbacks.append(
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")))
  else:
    log("tensorboard is not installed (pip install tensorboard): metrics "
        f"go to {model_dir}/metrics.csv only")
  all_callbacks += list(callbacks)
  return model.fit(train, epochs=epochs, validation_data=validation_data,
                   callbacks=all_callbacks, verbose=verbose, shuffle=False)


@dataclasses.dataclass(frozen=True)
class TrainJob:
  """One `akd-train` run.

  Attributes:
    role: 'teacher' (train built-in teacher `teacher`) or 'student'.
    model_dir: Output folder: checkpoints, logs, the final model.
    data: Which data.
    train: The recipe; batch_size and learning_rate are per replica and
      scaled by the number of replicas. bn_momentum None keeps the model's.
    arch: The student (role 'student'); its input shape and class count
      are replaced by the data's.
    teacher: A built-in teacher name (`akd_tf.distill.teacher.TEACHERS`): the
      one to train (role 'teacher') or to distill from (trained and cached
      under cache_dir when absent).
    teacher_path: A `.keras` file or SavedModel to distill from.
    teacher_output: What the teacher outputs: 'logits', or 'probabilities'
      (it then distills from its log-probabilities). Checked on training
      images.
    cache_dir: Cache of built-in teachers and teacher logits (default
      `<model_dir>/cache`).
    strategy: One of STRATEGIES.
    tpu: TPU name or address for strategy 'tpu'.
  """

  role: str
  model_dir: str
  data: data_lib.DataConfig
  train: candidate_training.TrainConfig
  arch: Optional[arch_lib.ArchSpec] = None
  teacher: Optional[str] = None
  teacher_path: Optional[str] = None
  teacher_output: str = "logits"
  cache_dir: Optional[str] = None
  strategy: str = "one_device"
  tpu: Optional[str] = None

  def __post_init__(self):
    teachers = list(teacher_lib.TEACHERS)
    student = self.role == "student"
    checks = (
        (self.role in ROLES, f"role '{self.role}' is not one of {ROLES}"),
        (self.strategy in STRATEGIES,
         f"strategy '{self.strategy}' is not one of {STRATEGIES}"),
        (self.teacher is None or self.teacher_path is None,
         "give a built-in teacher or a teacher_path, not both"),
        (self.teacher_output in teacher_lib.TEACHER_OUTPUTS,
         f"teacher_output '{self.teacher_output}' is not one of "
         f"{teacher_lib.TEACHER_OUTPUTS}"),
        (self.teacher is None or self.teacher in teacher_lib.TEACHERS,
         f"unknown built-in teacher '{self.teacher}'; choose one of "
         f"{teachers}"),
        (student or self.teacher is not None,
         f"role 'teacher' trains a built-in teacher: name one of {teachers}"),
        (student or self.arch is None,
         "role 'teacher' takes no student architecture"),
        (not student or self.arch is not None,
         "role 'student' needs the student's architecture"),
        (not student or self.train.kd_alpha == 0 or
         self.teacher is not None or self.teacher_path is not None,
         f"kd_alpha={self.train.kd_alpha} needs a teacher (a built-in name "
         "or a teacher_path); kd_alpha=0 trains without one"),
    )
    config_checks.require(checks)


class JobInputError(ValueError):
  """The job's data, teacher or architecture is missing or does not fit.

  Attributes:
    source: 'data', 'teacher' or 'arch': which input was wrong.
  """

  def __init__(self, source: str, message: str):
    super().__init__(message)
    self.source = source


@dataclasses.dataclass(frozen=True)
class JobResult:
  """What `run_job` produced (also written to `<model_dir>/result.json`)."""

  model_path: str
  minival_accuracy: float
  test_accuracy: float
  train_seconds: float
  epochs: int
  replicas: int
  global_batch_size: int
  mode: str


def _load_teacher(job, data, strategy, cache_dir, log):
  """Loads (or trains) the job's teacher and checks it against the data."""
  if job.teacher_path is not None:
    with strategy.scope():
      model = teacher_lib.load_teacher(job.teacher_path)
  else:
    progress = EtaLogger(
        lambda line: log(f"teacher {job.teacher} training: {line}"))
    model, info = teacher_lib.get_builtin_teacher(job.teacher, data,
                                                  cache_dir,
                                                  callbacks=[progress])
    log(f"teacher {info.name}: minival accuracy {info.minival_accuracy:.4f} "
        f"({'cached ' + info.path if info.cached else 'trained in %.0fs' % info.train_seconds})")
    if strategy.num_replicas_in_sync > 1:
      with strategy.scope():
        model = teacher_lib.load_teacher(info.path)
  teacher_lib.check_teacher(model, data.input_shape, data.num_classes,
                            data.name,
                            images=teacher_lib.sample_images(data.train),
                            teacher_output=job.teacher_output)
  return model


def _first_batch(batch_size: int, split_size: int, replicas: int) -> int:
  """A batch size whose first batch splits evenly over the replicas.

  Keras averages the first batch over the replicas to build the model and
  fails when the replicas' shares differ in size.
  """
  if split_size >= batch_size or replicas == 1:
    return batch_size
  return max(replicas, split_size - split_size % replicas)


def _accuracies(model_path: str, splits: Sequence[data_lib.Split],
                batch_size: int) -> Tuple[float, ...]:
  """Accuracies of the saved model on every example of each split, on one
  device."""
  model = keras.saving.load_model(model_path, safe_mode=True)
  return tuple(candidate_training.accuracy_of(model, split, batch_size)
               for split in splits)


def _stored_result(model_path: str, result_path: str,
                   log) -> Optional[JobResult]:
  """The result of a job that already finished, else None."""
  if not (os.path.exists(model_path) and os.path.exists(result_path)):
    return None
  log(f"{model_path} exists: already trained (remove it to retrain)")
  with open(result_path) as f:
    return JobResult(**json.load(f))


def _load_job_data(job: TrainJob, replicas: int, log) -> data_lib.Data:
  try:
    data = data_lib.load_data(job.data)
  except (OSError, ImportError, ValueError) as error:
    raise JobInputError("data", str(error)) from error
  log(f"data {data.name}: train {data.train.size}, minival "
      f"{data.minival.size}, test {data.test.size}, images "
      f"{data.input_shape}, {data.num_classes} classes; {replicas} "
      "replica(s)")
  return data


def _global_recipe(train: candidate_training.TrainConfig, data: data_lib.Data,
                   replicas: int) -> candidate_training.TrainConfig:
  """The per-replica recipe scaled to all replicas: batch sizes and the
  learning rate times their number."""
  return dataclasses.replace(
      train,
      batch_size=_first_batch(train.batch_size * replicas, data.train.size,
                              replicas),
      learning_rate=train.learning_rate * replicas,
      eval_batch_size=train.eval_batch_size * replicas)


def _job_teacher(job, config, data, strategy, cache_dir, log):
  """The teacher a student distills from, or None."""
  if job.role != "student" or config.kd_alpha == 0:
    return None
  try:
    return _load_teacher(job, data, strategy, cache_dir, log)
  except (OSError, ValueError) as error:
    raise JobInputError("teacher", str(error)) from error


def _build_model(job, data, config, strategy):
  """Builds the job's model under the strategy; returns (model, the
  student's spec or None)."""
  spec = None
  with strategy.scope():
    if job.role == "teacher":
      model = teacher_lib.build_teacher(job.teacher, data.input_shape,
                                        data.num_classes)
    else:
      try:
        spec = arch_lib.ArchSpec(
            job.arch.blocks,
            dataclasses.replace(job.arch.global_params,
                                num_classes=data.num_classes),
            data.input_shape)
        model = builder.build_from_spec(spec)
      except ValueError as error:
        raise JobInputError("arch", str(error)) from error
    if config.bn_momentum is not None:
      candidate_training.set_bn_momentum(model, config.bn_momentum)
  return model, spec


def _datasets(job, data, config, teacher, cache_dir, replicas):
  """Returns (training mode, training dataset, minival dataset, steps)."""
  logits = None
  mode = "plain"
  if teacher is not None:
    mode = "kd_online" if config.augment else "kd_cached"
    if not config.augment:
      logits = teacher_lib.teacher_logits(teacher, data.train, cache_dir,
                                          teacher_output=job.teacher_output)
  train = data_lib.make_dataset(data.train, config.batch_size, shuffle=True,
                                seed=config.seed, augment=config.augment,
                                teacher_logits=logits,
                                drop_remainder=replicas > 1)
  # With several replicas the last partial batch can leave a replica with no
  # examples, which Keras cannot take: training and per-epoch validation
  # then drop it; the final accuracies use every example.
  minival = data_lib.make_dataset(
      data.minival, _first_batch(config.eval_batch_size, data.minival.size,
                                 replicas), drop_remainder=replicas > 1)
  steps = config.epochs * data.train.num_batches(config.batch_size,
                                                 drop_remainder=replicas > 1)
  return mode, train, minival, steps


def _compiled_distiller(job, model, teacher, mode, config, steps, strategy,
                        data):
  """The Distiller that trains the model (alpha 0 for a teacher)."""
  with strategy.scope():
    distiller = distiller_lib.Distiller(
        model, teacher=teacher if mode == "kd_online" else None,
        alpha=config.kd_alpha if job.role == "student" else 0.0,
        temperature=config.kd_temperature, teacher_output=job.teacher_output)
    distiller.compile(
        optimizer=candidate_training.make_optimizer(config, steps),
        jit_compile=config.jit_compile)
  if mode == "kd_online":
    # On the split: reading the shuffled pipeline would move it on.
    distiller.check_teacher_output(teacher_lib.sample_images(data.train))
  return distiller


def _fit(job, model, distiller, train, minival, mode, config, callbacks,
         log) -> float:
  """Trains (resumably) for the recipe's epochs; returns the seconds.

  Raises:
    candidate_training.CandidateDiverged: the loss became NaN or infinite.
  """
  log(f"training {job.role} '{model.name}' ({model.count_params():,} "
      f"params, {mode}) for {config.epochs} epoch(s), global batch "
      f"{config.batch_size}, learning rate {config.learning_rate:g}")
  start = time.perf_counter()
  history = fit_resumable(distiller, train, config.epochs, job.model_dir,
                          validation_data=minival, callbacks=callbacks,
                          log=log, verbose=config.verbose)
  seconds = time.perf_counter() - start
  if distiller.stop_training:
    raise candidate_training.CandidateDiverged(
        f"training diverged: loss {history.history.get('loss')}",
        history.history, seconds)
  return seconds


def _write_result(result: JobResult, result_path: str, log) -> None:
  with open(result_path, "w") as f:
    json.dump(dataclasses.asdict(result), f, indent=2, sort_keys=True)
    f.write("\n")
  log(f"saved {result.model_path}: minival accuracy "
      f"{result.minival_accuracy:.4f}, test accuracy "
      f"{result.test_accuracy:.4f}")


def _save_model(model: keras.Model, model_path: str) -> None:
  """Saves through a temporary file, so a kill leaves no partial model."""
  tmp = f"{model_path[:-len('.keras')]}.tmp{os.getpid()}.keras"
  model.save(tmp)
  os.replace(tmp, model_path)


def run_job(job: TrainJob,
            strategy: Optional[tf.distribute.Strategy] = None,
            callbacks: Sequence[keras.callbacks.Callback] = (),
            log: Callable[[str], None] = _LOG.info) -> JobResult:
  """Runs one training job; see the module docstring for the steps.

  Args:
    job: What to train.
    strategy: Overrides `make_strategy(job.strategy, job.tpu)`.
    callbacks: Extra Keras callbacks for `fit`.
    log: Where progress lines go (default: the INFO log of logger
      'akd_tf.distill.training').

  Returns:
    A `JobResult`. When `<model_dir>/<role>.keras` and result.json already
    exist the job is not rerun and the stored result is returned.

  Raises:
    JobInputError: the data, teacher or architecture is missing or does
      not fit; `source` says which.
    candidate_training.CandidateDiverged: the loss became NaN or infinite.
  """
  model_path = os.path.join(job.model_dir, f"{job.role}.keras")
  result_path = os.path.join(job.model_dir, "result.json")
  stored = _stored_result(model_path, result_path, log)
  if stored is not None:
    return stored
  strategy = strategy or make_strategy(job.strategy, job.tpu)
  replicas = strategy.num_replicas_in_sync
  cache_dir = job.cache_dir or os.path.join(job.model_dir, "cache")
  os.makedirs(job.model_dir, exist_ok=True)
  data = _load_job_data(job, replicas, log)
  config = _global_recipe(job.train, data, replicas)
  keras.utils.set_random_seed(config.seed)
  teacher = _job_teacher(job, config, data, strategy, cache_dir, log)
  model, spec = _build_model(job, data, config, strategy)
  mode, train, minival, steps = _datasets(job, data, config, teacher,
                                          cache_dir, replicas)
  distiller = _compiled_distiller(job, model, teacher, mode, config, steps,
                                  strategy, data)
  seconds = _fit(job, model, distiller, train, minival, mode, config,
                 callbacks, log)
  if config.bn_recalibration_images:
    used = candidate_training.recalibrate_batch_norm(
        model, data.train, config.bn_recalibration_images,
        job.train.eval_batch_size)
    log(f"BatchNormalization statistics recomputed over {used} training "
        "images")
  _save_model(model, model_path)
  minival_acc, test_acc = _accuracies(model_path, (data.minival, data.test),
                                      job.train.eval_batch_size)
  if spec is not None:
    spec.to_json(os.path.join(job.model_dir, "arch.json"))
  result = JobResult(model_path=model_path, minival_accuracy=minival_acc,
                     test_accuracy=test_acc, train_seconds=seconds,
                     epochs=config.epochs, replicas=replicas,
                     global_batch_size=config.batch_size, mode=mode)
  _write_result(result, result_path, log)
  return result
