"""Training one student on a proxy task: the recipe, and `train_candidate`.

`TrainConfig` is how a student is trained, a search candidate (a proxy run
of a few epochs) or a final model (`akd_tf.distill.training`);
`train_candidate` trains a candidate with the `Distiller`
(`akd_tf.distill.distiller`), by KD from cached teacher logits or an online
teacher, or plainly with kd_alpha = 0, and measures its mini-val accuracy.
A short proxy run needs BatchNormalization help: a lower momentum during
training (`set_bn_momentum`) and statistics recomputed after it
(`recalibrate_batch_norm`). A loss that becomes NaN or infinite raises
`CandidateDiverged`, which a search records as a failed candidate.

Public names: TrainConfig, CandidateResult, CandidateDiverged,
train_candidate, make_optimizer, set_bn_momentum, recalibrate_batch_norm,
top1_accuracy, accuracy_of, OPTIMIZERS, LR_SCHEDULES.
"""

import dataclasses
import math
import time
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np

from akd_tf import config_checks
from akd_tf.distill import data as data_lib
from akd_tf.distill import distiller as distiller_lib
from akd_tf.distill import teacher as teacher_lib

__all__ = ["CandidateDiverged", "CandidateResult", "LR_SCHEDULES",
           "OPTIMIZERS", "TrainConfig", "accuracy_of", "make_optimizer",
           "recalibrate_batch_norm", "set_bn_momentum", "top1_accuracy",
           "train_candidate"]

OPTIMIZERS = ("adam", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How one student is trained (a search candidate or a final model).

  Attributes:
    epochs: Passes over the training split.
    batch_size: Examples per step (global batch).
    learning_rate: Initial learning rate.
    optimizer: 'adam', 'sgd' (momentum 0.9, Nesterov) or 'rmsprop'.
    lr_schedule: 'cosine' (decay to 0 over the run) or 'constant'.
    kd_alpha: Weight of the distillation term in [0, 1]; 0 trains plainly.
    kd_temperature: Distillation temperature (> 0).
    seed: Seeds Python, NumPy and TensorFlow (dropout) and the shuffle.
    jit_compile: XLA; keep False on CPU (measured about 11x slower).
    bn_momentum: Momentum set on every BatchNormalization layer of the
      student before training; short proxy training needs about 0.9 (with
      0.99 the moving statistics stay near their initial values and
      evaluation accuracy is near chance). None leaves the student's.
    bn_recalibration_images: After training, the BatchNormalization
      statistics are recomputed as the exact average over this many
      training images (0 keeps the moving averages). The weights move fast
      in a short proxy run, so the moving averages lag behind them; measured
      on Fashion-MNIST after 47 steps: 11% mini-val accuracy with the moving
      averages, 24-45% with recomputed statistics.
    augment: Random flips and shifts; the teacher then runs online.
    eval_batch_size: Batch size of evaluation.
    verbose: Keras `fit` verbosity.
  """

  epochs: int = 2
  batch_size: int = 128
  learning_rate: float = 2e-3
  optimizer: str = "adam"
  lr_schedule: str = "cosine"
  kd_alpha: float = 0.9
  kd_temperature: float = 4.0
  seed: int = 0
  jit_compile: bool = False
  bn_momentum: Optional[float] = 0.9
  bn_recalibration_images: int = 1000
  augment: bool = False
  eval_batch_size: int = 512
  verbose: int = 0

  def __post_init__(self):
    distiller_lib.check_alpha(self.kd_alpha)
    distiller_lib.check_temperature(self.kd_temperature)
    checks = (
        (self.epochs >= 1, f"epochs={self.epochs} must be >= 1"),
        (self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1"),
        (self.eval_batch_size >= 1,
         f"eval_batch_size={self.eval_batch_size} must be >= 1"),
        (self.learning_rate > 0,
         f"learning_rate={self.learning_rate} must be > 0"),
        (self.optimizer in OPTIMIZERS,
         f"optimizer='{self.optimizer}' is not one of {OPTIMIZERS}"),
        (self.lr_schedule in LR_SCHEDULES,
         f"lr_schedule='{self.lr_schedule}' is not one of {LR_SCHEDULES}"),
        (self.bn_momentum is None or 0.0 <= self.bn_momentum < 1.0,
         f"bn_momentum={self.bn_momentum} must be in [0, 1) or None"),
        (self.bn_recalibration_images >= 0,
         f"bn_recalibration_images={self.bn_recalibration_images} must be "
         ">= 0"),
    )
    config_checks.require(checks, "TrainConfig")


def make_optimizer(config: TrainConfig,
                   total_steps: int) -> keras.optimizers.Optimizer:
  """Returns the optimizer `config` names with its learning-rate schedule."""
  lr = config.learning_rate
  if config.lr_schedule == "cosine":
    lr = keras.optimizers.schedules.CosineDecay(lr, max(1, total_steps))
  if config.optimizer == "sgd":
    return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
  if config.optimizer == "rmsprop":
    return keras.optimizers.RMSprop(lr)
  return keras.optimizers.Adam(lr)


def _batch_norm_layers(model: keras.Model
                       ) -> List[keras.layers.BatchNormalization]:
  """Every BatchNormalization layer of `model`, nested models included."""
  found = []
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      found.append(layer)
    elif isinstance(layer, keras.Model):
      found.extend(_batch_norm_layers(layer))
  return found


def set_bn_momentum(model: keras.Model, momentum: float) -> int:
  """Sets the momentum of every BatchNormalization layer, nested too.

  Returns:
    How many layers were changed.
  """
  layers = _batch_norm_layers(model)
  for layer in layers:
    layer.momentum = momentum
  return len(layers)


def recalibrate_batch_norm(model: keras.Model, split: data_lib.Split,
                           images: int, batch_size: int = 256) -> int:
  """Recomputes BN statistics as the average over the first `images`.

  Batch k is folded in with momentum k / (k + 1), which makes the moving
  statistics the exact mean of the per-batch statistics; each layer's
  momentum is restored afterwards.

  Returns:
    The number of images used.
  """
  layers = _batch_norm_layers(model)
  momenta = [layer.momentum for layer in layers]
  used = 0
  try:
    for k, (batch, _) in enumerate(data_lib.make_dataset(
        split, min(batch_size, images)).take(-(-images // batch_size))):
      for layer in layers:
        layer.momentum = k / (k + 1)
      model(batch, training=True)
      used += int(batch.shape[0])
  finally:
    for layer, momentum in zip(layers, momenta):
      layer.momentum = momentum
  return used


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
  """The fraction of rows of `logits` whose largest entry is at the label."""
  return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))


def accuracy_of(model: keras.Model, split: data_lib.Split,
                batch_size: int = 512) -> float:
  """Top-1 accuracy of a logits model on every example of `split`.

  The model runs in inference mode on batches of `batch_size`, on the
  current device (a model trained under a distribution strategy can be
  evaluated on one device after saving and loading it).
  """
  logits, labels = [], []
  for images, batch_labels in data_lib.make_dataset(split, batch_size):
    logits.append(np.asarray(model(images, training=False)))
    labels.append(batch_labels.numpy())
  return top1_accuracy(np.concatenate(logits), np.concatenate(labels))


class CandidateDiverged(RuntimeError):
  """Training a candidate gave a NaN or infinite loss.

  `train_candidate` raises it; a search records the candidate as failed.

  Attributes:
    history: The `fit` history up to the failure (lists per metric).
    train_seconds: Wall time spent before the failure.
  """

  def __init__(self, message: str, history: Dict[str, List[float]],
               train_seconds: float):
    super().__init__(message)
    self.history = history
    self.train_seconds = train_seconds


@dataclasses.dataclass(frozen=True)
class CandidateResult:
  """What training and evaluating one student gave.

  Attributes:
    accuracy: Top-1 accuracy on the minival split (what a search rewards).
    loss: Cross-entropy on the minival split.
    train_loss: Total training loss of the last epoch.
    train_student_loss: Training cross-entropy of the last epoch.
    train_distillation_loss: Training T^2 * KL of the last epoch (0 for
      plain training).
    train_accuracy: Training accuracy of the last epoch.
    train_seconds: Wall time of `fit` (tracing included).
    eval_seconds: Wall time of the minival evaluation.
    mode: 'plain', 'kd_cached' (cached teacher logits) or 'kd_online'.
    epochs: Epochs trained.
    history: `fit`'s history: a list of per-epoch values per metric.
  """

  accuracy: float
  loss: float
  train_loss: float
  train_student_loss: float
  train_distillation_loss: float
  train_accuracy: float
  train_seconds: float
  eval_seconds: float
  mode: str
  epochs: int
  history: Dict[str, List[float]]


def _training_mode(config, teacher, teacher_logits) -> str:
  if config.kd_alpha == 0.0:
    return "plain"
  if teacher_logits is not None and not config.augment:
    return "kd_cached"
  if teacher is not None:
    return "kd_online"
  if teacher_logits is not None:
    raise ValueError("cached teacher_logits belong to unaugmented images: "
                     "with augment=True pass the teacher instead")
  raise ValueError(f"kd_alpha={config.kd_alpha} needs a teacher or cached "
                   "teacher_logits (kd_alpha=0 trains without one)")


def train_candidate(student: keras.Model,
                    train_data: data_lib.Split,
                    minival_data: data_lib.Split,
                    config: TrainConfig = TrainConfig(),
                    teacher: Optional[keras.Model] = None,
                    teacher_logits: Optional[np.ndarray] = None,
                    teacher_output: str = "logits",
                    callbacks: Sequence[keras.callbacks.Callback] = ()
                    ) -> CandidateResult:
  """Trains `student` (KD or plain) and measures its minival accuracy.

  Args:
    student: The candidate, freshly built; trained in place. Its BN
      momentum is set to `config.bn_momentum` unless that is None.
    train_data: The training split.
    minival_data: The held-out split the accuracy is measured on.
    config: The recipe. kd_alpha = 0 trains with cross-entropy alone.
    teacher: Runs online each step when no `teacher_logits` are given or
      when `config.augment` (cached logits belong to unaugmented images).
    teacher_logits: The teacher's logits on `train_data`, in its order
      (`akd_tf.distill.teacher.teacher_logits`): the cheap way when many
      candidates share one teacher.
    teacher_output: What `teacher` outputs, 'logits' or 'probabilities';
      checked on the first training images before it runs online.
    callbacks: More Keras callbacks for `fit` (progress lines).

  Returns:
    A `CandidateResult`.

  Raises:
    CandidateDiverged: a training loss became NaN or infinite (training
      stops at that batch).
    ValueError: kd_alpha > 0 without a teacher signal, augmentation with
      cached logits and no teacher, logits that do not fit `train_data`, or
      an online teacher that does not output what teacher_output says.
  """
  mode = _training_mode(config, teacher, teacher_logits)
  keras.utils.set_random_seed(config.seed)
  if config.bn_momentum is not None:
    set_bn_momentum(student, config.bn_momentum)
  train = data_lib.make_dataset(
      train_data, config.batch_size, shuffle=True, seed=config.seed,
      augment=config.augment,
      teacher_logits=teacher_logits if mode == "kd_cached" else None)
  steps = config.epochs * train_data.num_batches(config.batch_size)
  distiller = distiller_lib.Distiller(
      student, teacher=teacher if mode == "kd_online" else None,
      alpha=config.kd_alpha, temperature=config.kd_temperature,
      teacher_output=teacher_output)
  if mode == "kd_online":
    # Checked on the split, not on `train`: reading the shuffled pipeline
    # would move its shuffle on.
    distiller.check_teacher_output(teacher_lib.sample_images(train_data))
  distiller.compile(optimizer=make_optimizer(config, steps),
                    jit_compile=config.jit_compile)
  start = time.perf_counter()
  fit = distiller.fit(train, epochs=config.epochs, verbose=config.verbose,
                      shuffle=False,
                      callbacks=[keras.callbacks.TerminateOnNaN(),
                                 *callbacks])
  train_seconds = time.perf_counter() - start
  history = {k: [float(v) for v in values]
             for k, values in fit.history.items()}
  finite = all(math.isfinite(v) for values in history.values()
               for v in values)
  if distiller.stop_training or not finite:
    raise CandidateDiverged(
        f"training diverged (non-finite loss) after {len(history['loss'])} "
        f"epoch(s) of {config.epochs}: loss {history['loss']}", history,
        train_seconds)
  start = time.perf_counter()
  if config.bn_recalibration_images:
    recalibrate_batch_norm(student, train_data, config.bn_recalibration_images,
                           config.eval_batch_size)
  result = distiller.evaluate(
      data_lib.make_dataset(minival_data, config.eval_batch_size),
      verbose=0, return_dict=True)
  eval_seconds = time.perf_counter() - start
  return CandidateResult(
      accuracy=float(result["accuracy"]), loss=float(result["student_loss"]),
      train_loss=history["loss"][-1],
      train_student_loss=history["student_loss"][-1],
      train_distillation_loss=history.get("distillation_loss", [0.0])[-1],
      train_accuracy=history["accuracy"][-1], train_seconds=train_seconds,
      eval_seconds=eval_seconds, mode=mode, epochs=config.epochs,
      history=history)
