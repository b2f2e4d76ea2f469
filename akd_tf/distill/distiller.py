"""Knowledge distillation: the `Distiller` model, its loss and train step.

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

Training one candidate with it on a proxy task (the recipe, `TrainConfig`,
and `train_candidate`) is in `akd_tf.distill.candidate_training`.

Public names: Distiller, check_alpha, check_temperature.
"""

import math
from typing import List, Optional

import keras
import tensorflow as tf

from akd_tf.distill import data as data_lib
from akd_tf.distill import teacher as teacher_lib

__all__ = ["Distiller", "check_alpha", "check_temperature"]
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
