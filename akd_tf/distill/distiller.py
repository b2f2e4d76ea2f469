"""Knowledge distillation: the `Distiller` model and one-call candidate training.

The loss of a student with logits s, a teacher with logits t and labels y is

  loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T))
         + (1 - alpha) * CE(y, s)

(Hinton et al. 2015). alpha = 0 is plain cross-entropy training and needs
no teacher at all: the NAS baseline of the search uses it. The teacher's
logits come either from the teacher run online on each batch (needed with
augmentation) or from a cache computed once per search
(`akd_tf.distill.teacher.teacher_logits`) and fed with the batch
(`akd_tf.distill.data.make_dataset(..., teacher_logits=...)`). A teacher that
outputs probabilities distills from its log-probabilities when the caller
says so (`teacher_output='probabilities'`); what it outputs is checked on
real images before training (`akd_tf.distill.teacher.check_teacher_output`).

Conventions follow Keras 3's `keras.distillation.Distiller`: the teacher is
frozen and runs with training=False, `call` returns the student's outputs,
the temperature must be positive, the weights lie in [0, 1], and the loss
parts are reported by `keras.metrics.Mean` trackers (`student_loss`,
`distillation_loss`, and the total as `loss`), so `fit`'s history holds the
real values. Every loss is a `keras.losses` object, which Keras scales per
replica, so the Distiller gives the same updated weights under
`MirroredStrategy` as on one device.

Public names: Distiller, check_alpha, check_temperature, TrainConfig,
CandidateResult, CandidateDiverged, train_candidate, make_optimizer,
set_bn_momentum, recalibrate_batch_norm, top1_accuracy, accuracy_of,
OPTIMIZERS, LR_SCHEDULES.
"""

import dataclasses
import math
import time
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from akd_tf import config_checks
from akd_tf.distill import data as data_lib
from akd_tf.distill import teacher as teacher_lib

__all__ = ["CandidateDiverged", "CandidateResult", "Distiller",
           "LR_SCHEDULES", "OPTIMIZERS", "TrainConfig", "accuracy_of",
           "check_alpha", "check_temperature", "make_optimizer",
           "recalibrate_batch_norm", "set_bn_momentum", "top1_accuracy",
           "train_candidate"]
_NUMBER = (int, float)


def check_alpha(alpha) -> float:
  """Returns `alpha`, the weight of the distillation loss, as a float.

  Raises:
    ValueError: alpha is not a number in [0, 1].
  """
  if isinstance(alpha, bool) or not isinstance(alpha, _NUMBER):
    raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"alpha={alpha} must be in [0, 1] (the weight of the "
                     "distillation loss; 1 - alpha weighs cross-entropy)")
  return float(alpha)


def check_temperature(temperature) -> float:
  """Returns the distillation `temperature` as a float.

  Raises:
    ValueError: temperature is not a finite number > 0.
  """
  if isinstance(temperature, bool) or not isinstance(temperature, _NUMBER):
    raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
  if not temperature > 0.0 or math.isinf(temperature):
    raise ValueError(f"temperature={temperature} must be finite and > 0")
  return float(temperature)


def _num_replicas() -> int:
  return tf.distribute.get_strategy().num_replicas_in_sync


def _shapes_compatible(a, b) -> bool:
  return len(a) == len(b) and all(x is None or y is None or x == y
                                  for x, y in zip(a, b))


class Distiller(keras.Model):
  """Trains a student from labels and a teacher's softened logits.

  Args:
    student: The `keras.Model` to train; it outputs logits.
    teacher: A trained `keras.Model`, run online on each training batch
      whose input carries no cached logits. Frozen here. None when alpha is
      0 or every batch carries cached teacher logits.
    alpha: Weight of the distillation term in [0, 1]; 0 is plain
      cross-entropy.
    temperature: Softmax temperature T > 0 of the distillation term.
    teacher_output: What the teacher outputs: 'logits', or 'probabilities'
      (then its log-probabilities serve as logits,
      `akd_tf.distill.teacher.outputs_as_logits`). Checked on real images before
      training: `fit` checks the teacher on the first images of its input
      (`check_teacher_output`) unless `check_teacher_output` was called
      before. Reading that first batch starts one pass over a tf.data
      input, which moves a reshuffling pipeline on by one shuffle; call
      `check_teacher_output(images)` first to avoid it. A custom loop that
      calls `train_step` itself must call it too.
    name: Model name.

  Inputs: a batch is (images, labels), ({IMAGES_KEY: images}, labels), or,
  with cached teacher logits, ({IMAGES_KEY: images, TEACHER_LOGITS_KEY:
  logits}, labels) (see `akd_tf.distill.data.make_dataset`); labels are int
  class indices. In training with alpha > 0, a batch without cached logits (a
  tensor, or a dict without TEACHER_LOGITS_KEY) gets its logits from the
  teacher, and raises a ValueError when there is no teacher: no batch
  trains without its distillation term.

  Metrics: loss (the total), student_loss (cross-entropy), and, when
  alpha > 0, distillation_loss (T^2 * KL), then accuracy. Evaluation
  measures the student and never runs the teacher: its distillation_loss
  comes from cached logits in the batch when there are some; without them
  loss is the cross-entropy.

  Raises:
    ValueError: alpha outside [0, 1], temperature <= 0, an unknown
      teacher_output, a student or teacher that is not a keras.Model, or
      teacher and student of incompatible input or output shapes.
  """

  def __init__(self, student: keras.Model,
               teacher: Optional[keras.Model] = None,
               alpha: float = 0.5, temperature: float = 4.0,
               teacher_output: str = "logits",
               name: str = "distiller", **kwargs):
    super().__init__(name=name, **kwargs)
    self.alpha = check_alpha(alpha)
    self.temperature = check_temperature(temperature)
    if teacher_output not in teacher_lib.TEACHER_OUTPUTS:
      raise ValueError(f"teacher_output='{teacher_output}' is not one of "
                       f"{teacher_lib.TEACHER_OUTPUTS} (--teacher_output)")
    self.teacher_output = teacher_output
    self._teacher_checked = False
    if not isinstance(student, keras.Model):
      raise ValueError(f"student must be a keras.Model, got "
                       f"{type(student).__name__}")
    if teacher is not None:
      if not isinstance(teacher, keras.Model):
        raise ValueError(f"teacher must be a keras.Model or None, got "
                         f"{type(teacher).__name__}")
      for what in ("input", "output"):
        t_shape = getattr(teacher, f"{what}_shape")
        s_shape = getattr(student, f"{what}_shape")
        if not _shapes_compatible(t_shape, s_shape):
          raise ValueError(f"teacher and student {what} shapes are "
                           f"incompatible: teacher {t_shape}, student "
                           f"{s_shape}")
      teacher.trainable = False
    self.student = student
    self.teacher = teacher
    self._ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    self._soft_ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    self.loss_tracker = keras.metrics.Mean(name="loss")
    self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
    self.distillation_loss_tracker = keras.metrics.Mean(
        name="distillation_loss")
    self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy(
        name="accuracy")
    self.built = True

  @property
  def metrics(self) -> List[keras.metrics.Metric]:
    # Only these: Keras' own untouched "loss" tracker would show 0.0.
    trackers = [self.loss_tracker, self.student_loss_tracker]
    if self.alpha > 0:
      trackers.append(self.distillation_loss_tracker)
    return trackers + [self.accuracy_metric]

  def compile(self, optimizer="adam", **kwargs):
    """Compiles with `optimizer`; the loss and metrics are fixed.

    Raises:
      ValueError: `loss` or `metrics` is given (alpha and temperature
        define the loss; the metrics are the Distiller's own).
    """
    for key in ("loss", "loss_weights", "metrics", "weighted_metrics"):
      if kwargs.get(key) is not None:
        raise ValueError(f"Distiller.compile: '{key}' cannot be set; the "
                         "loss is alpha * T^2 * KL + (1 - alpha) * CE and "
                         "the metrics are loss, student_loss, "
                         "distillation_loss and accuracy")
      kwargs.pop(key, None)
    super().compile(optimizer=optimizer, **kwargs)

  def check_teacher_output(self, images) -> None:
    """Checks the teacher's outputs on `images` against teacher_output.

    Args:
      images: A batch of real training images.

    Raises:
      ValueError: see `akd_tf.distill.teacher.check_teacher_output`.
    """
    if self.teacher is not None:
      teacher_lib.check_teacher_output(self.teacher, images,
                                       self.teacher_output)
    self._teacher_checked = True

  def fit(self, x=None, y=None, **kwargs):
    """`keras.Model.fit`, after checking the teacher on x's first images.

    Raises:
      ValueError: the teacher does not output what teacher_output says, or
        x is of a kind whose first images cannot be read without consuming
        them (call `check_teacher_output` first).
    """
    if (self.teacher is not None and self.alpha > 0 and
        not self._teacher_checked):
      self.check_teacher_output(_first_images(x))
    return super().fit(x, y, **kwargs)

  def call(self, inputs, training=None):
    """Returns the student's logits."""
    if isinstance(inputs, dict):
      inputs = inputs[data_lib.IMAGES_KEY]
    return self.student(inputs, training=training)

  def distillation_loss(self, teacher_logits, student_logits,
                        sample_weight=None):
    """T^2 * KL(softmax(t/T) || softmax(s/T)), mean over the batch.

    Computed as two cross-entropies from logits (log-softmax, no clipping):
    CE(p_t, s/T) - CE(p_t, t/T) = KL(p_t || p_s). Under a distribution
    strategy the value is scaled per replica, as every keras.losses value.
    """
    t = keras.ops.divide(keras.ops.stop_gradient(teacher_logits),
                         self.temperature)
    s = keras.ops.divide(student_logits, self.temperature)
    soft = keras.ops.softmax(t, axis=-1)
    kl = (self._soft_ce(soft, s, sample_weight=sample_weight) -
          self._soft_ce(soft, t, sample_weight=sample_weight))
    return kl * (self.temperature ** 2)

  def compute_losses(self, y, student_logits, teacher_logits=None,
                     sample_weight=None):
    """Returns (total, student_loss, distillation_loss) of one batch.

    `teacher_logits` None gives total = cross-entropy and a zero
    distillation loss. Values are scaled per replica under a strategy.
    """
    student_loss = self._ce(y, student_logits, sample_weight=sample_weight)
    if teacher_logits is None or self.alpha == 0.0:
      return student_loss, student_loss, keras.ops.zeros_like(student_loss)
    kd = self.distillation_loss(teacher_logits, student_logits,
                                sample_weight)
    total = self.alpha * kd + (1.0 - self.alpha) * student_loss
    return total, student_loss, kd

  def _split_inputs(self, x, run_teacher):
    """Returns (images, teacher logits or None) of a batch's inputs.

    Cached logits in the batch win; otherwise the teacher runs when
    `run_teacher` (training with alpha > 0), whether the images come as a
    tensor or in a dict.

    Raises:
      ValueError: the teacher must run and there is none.
    """
    images, logits = x, None
    if isinstance(x, dict):
      images = x[data_lib.IMAGES_KEY]
      logits = x.get(data_lib.TEACHER_LOGITS_KEY)
    if logits is not None or not run_teacher or self.alpha == 0.0:
      return images, logits
    if self.teacher is None:
      raise ValueError(f"alpha={self.alpha} needs teacher logits: give the "
                       "Distiller a teacher, or feed cached logits with "
                       "make_dataset(..., teacher_logits=...)")
    outputs = self.teacher(images, training=False)
    return images, teacher_lib.outputs_as_logits(outputs, self.teacher_output)

  def _update_metrics(self, images, y, student_logits, losses,
                      sample_weight, has_teacher):
    replicas = _num_replicas()
    batch = tf.shape(images)[0]
    total, student_loss, kd = (v * replicas for v in losses)
    self.loss_tracker.update_state(total, sample_weight=batch)
    self.student_loss_tracker.update_state(student_loss, sample_weight=batch)
    if self.alpha > 0 and has_teacher:
      self.distillation_loss_tracker.update_state(kd, sample_weight=batch)
    self.accuracy_metric.update_state(y, student_logits,
                                      sample_weight=sample_weight)

  def train_step(self, data):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    images, teacher_logits = self._split_inputs(x, run_teacher=True)
    with tf.GradientTape() as tape:
      student_logits = self.student(images, training=True)
      losses = self.compute_losses(y, student_logits, teacher_logits,
                                   sample_weight)
      total = losses[0]
      if self.student.losses:
        total = total + keras.ops.sum(self.student.losses) / _num_replicas()
      scaled = self.optimizer.scale_loss(total)
    weights = self.trainable_weights
    gradients = tape.gradient(scaled, weights)
    self.optimizer.apply_gradients(zip(gradients, weights))
    self._update_metrics(images, y, student_logits, losses, sample_weight,
                         teacher_logits is not None)
    return self.get_metrics_result()

  def test_step(self, data):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    images, teacher_logits = self._split_inputs(x, run_teacher=False)
    student_logits = self.student(images, training=False)
    losses = self.compute_losses(y, student_logits, teacher_logits,
                                 sample_weight)
    self._update_metrics(images, y, student_logits, losses, sample_weight,
                         teacher_logits is not None)
    results = self.get_metrics_result()
    if teacher_logits is None:
      # Nothing measured it: leave it out rather than report a false 0.0.
      results.pop(self.distillation_loss_tracker.name, None)
    return results

  def get_config(self):
    return {
        "name": self.name,
        "student": keras.saving.serialize_keras_object(self.student),
        "teacher": (None if self.teacher is None else
                    keras.saving.serialize_keras_object(self.teacher)),
        "alpha": self.alpha,
        "temperature": self.temperature,
        "teacher_output": self.teacher_output,
    }

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    for key in ("student", "teacher"):
      if config.get(key) is not None:
        config[key] = keras.saving.deserialize_keras_object(config[key])
    return cls(**config)


def _first_images(x, count: int = 64):
  """The first images of `fit`'s input x, read without consuming them.

  Raises:
    ValueError: x is a kind (a generator, a distributed dataset) whose
      first batch cannot be read without consuming it.
  """
  if isinstance(x, tf.data.Dataset):
    x = next(iter(x.take(1)))
  elif isinstance(x, keras.utils.PyDataset):
    x = x[0]
  if isinstance(x, (tuple, list)):
    x = x[0]
  if isinstance(x, dict):
    x = x.get(data_lib.IMAGES_KEY)
  if not hasattr(x, "shape"):
    raise ValueError(
        "Distiller.fit cannot read the first images of an input of type "
        f"{type(x).__name__} to check its teacher: call "
        "distiller.check_teacher_output(images) with a batch of training "
        "images first")
  return x[:count]


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
    check_alpha(self.kd_alpha)
    check_temperature(self.kd_temperature)
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
  distiller = Distiller(student,
                        teacher=teacher if mode == "kd_online" else None,
                        alpha=config.kd_alpha,
                        temperature=config.kd_temperature,
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
