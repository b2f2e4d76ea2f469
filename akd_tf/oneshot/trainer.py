"""Supernet training by KD or cross-entropy, a few paths per step; resumable.

Each step trains the paths `akd_tf.oneshot.sampling` picks for it (one
uniform path as in SPOS and TuNAS, the sandwich rule of BigNAS, or the
largest path and neighbours of it that redraw more decisions as training
goes on, after an optional warm-up on the largest path): the paths are an input of the one
traced training step (`Supernet.forward` inside a `tf.while_loop` over
them, their gradients summed into one update), so no path and no number of
paths retraces it. The loss is the `akd_tf.distill.distiller.Distiller`'s:
KD from the teacher's cached logits with the recipe's alpha and temperature
(AKD), or plain cross-entropy when kd_alpha is 0 (the NAS+KD baseline),
from the same code.

Only the sampled paths move: the optimizer is lazy
(`akd_tf.oneshot.path_optimizer`), and BatchNormalization statistics move
only in the paths' channels (`akd_tf.oneshot.path_ops`).

Reproducible and resumable: the paths, the batch and the dropout of step s
are functions of (seed, s) alone, so the sampler's whole state is the step
count, which the checkpoint holds with the weights and the optimizer. A
checkpoint is written every `checkpoint_every` steps
(`tf.train.CheckpointManager`: the index is replaced atomically after the
files are complete, and the previous checkpoint is kept), and a run
restarted after SIGKILL continues from the last one with the same step
count, paths and batches as an uninterrupted run.

Public names: SupernetTrainConfig, SupernetTrainer.
"""

import dataclasses
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from akd_tf.distill import candidate_training
from akd_tf.distill import distiller
from akd_tf.oneshot import path_optimizer
from akd_tf.oneshot import sampling
from akd_tf.oneshot import supernet as supernet_lib

__all__ = ["SupernetTrainConfig", "SupernetTrainer"]


@dataclasses.dataclass(frozen=True)
class SupernetTrainConfig:
  """How a supernet is trained (all but checkpoint_every is in its key).

  Attributes:
    steps: Training steps (optimizer updates).
    batch_size: Examples per step (every path of a step sees the same).
    learning_rate: Initial learning rate.
    optimizer: 'adam', 'sgd' or 'rmsprop' (made lazy).
    lr_schedule: 'cosine' (to 0 over `steps`) or 'constant'.
    kd_alpha: Weight of the distillation term; 0 trains with labels alone.
    kd_temperature: Distillation temperature.
    sampling: Path rule, one of `sampling.SAMPLING_RULES`.
    paths_per_step: Paths whose gradients make one update.
    warmup_steps: First steps that train the largest path alone.
    seed: Seeds the paths, the batches, the dropout and the initial weights.
    checkpoint_every: Steps between checkpoints.
  """

  steps: int = 1000
  batch_size: int = 128
  learning_rate: float = 2e-3
  optimizer: str = "adam"
  lr_schedule: str = "cosine"
  kd_alpha: float = 0.9
  kd_temperature: float = 4.0
  sampling: str = "uniform"
  paths_per_step: int = 1
  warmup_steps: int = 0
  seed: int = 0
  checkpoint_every: int = 100

  def __post_init__(self):
    # TrainConfig checks alpha, temperature, optimizer, schedule and sizes.
    self.train_config()
    checks = ((self.steps >= 1, f"steps={self.steps} must be >= 1"),
              (self.checkpoint_every >= 1,
               f"checkpoint_every={self.checkpoint_every} must be >= 1"),
              (self.sampling in sampling.SAMPLING_RULES,
               f"sampling='{self.sampling}' is not one of "
               f"{sampling.SAMPLING_RULES}"),
              (self.paths_per_step >= (1 if self.sampling == "uniform"
                                       else 2),
               f"paths_per_step={self.paths_per_step} must be >= 1 (>= 2 "
               "for sampling='sandwich': the largest and the smallest path, "
               "and for 'progressive': the largest path and a neighbour)"),
              (0 <= self.warmup_steps <= self.steps,
               f"warmup_steps={self.warmup_steps} must be in [0, steps="
               f"{self.steps}]"))
    for ok, message in checks:
      if not ok:
        raise ValueError(f"SupernetTrainConfig: {message}")

  @classmethod
  def from_train_config(cls, config: candidate_training.TrainConfig,
                        steps: int, **changes) -> "SupernetTrainConfig":
    """A candidate's recipe (`TrainConfig`) run for `steps` updates.

    Args:
      config: The candidates' proxy recipe (batch size, optimizer,
        learning rate and schedule, KD alpha and temperature, seed).
      steps: Updates of the supernet.
      **changes: Other fields (sampling, paths_per_step, ...).
    """
    return cls(steps=steps, batch_size=config.batch_size,
               learning_rate=config.learning_rate,
               optimizer=config.optimizer, lr_schedule=config.lr_schedule,
               kd_alpha=config.kd_alpha, kd_temperature=config.kd_temperature,
               seed=config.seed, **changes)

  def train_config(self) -> candidate_training.TrainConfig:
    """The `TrainConfig` with this recipe's loss and optimizer."""
    return candidate_training.TrainConfig(
        batch_size=self.batch_size, learning_rate=self.learning_rate,
        optimizer=self.optimizer, lr_schedule=self.lr_schedule,
        kd_alpha=self.kd_alpha, kd_temperature=self.kd_temperature,
        seed=self.seed)

  def get_config(self) -> dict:
    return dataclasses.asdict(self)


class SupernetTrainer:
  """Trains a supernet, the sampled paths of each step in one update.

  Args:
    supernet: The supernet, trained in place.
    config: The recipe.
    images: (N, H, W, C) float32 training images.
    labels: (N,) int labels.
    teacher_logits: (N, classes) cached teacher logits in the same order;
      None when kd_alpha is 0.

  Raises:
    ValueError: kd_alpha > 0 without teacher logits, or logits, labels and
      images of different lengths.
  """

  def __init__(self, supernet: supernet_lib.Supernet,
               config: SupernetTrainConfig, images: np.ndarray,
               labels: np.ndarray,
               teacher_logits: Optional[np.ndarray] = None):
    if config.kd_alpha > 0 and teacher_logits is None:
      raise ValueError(f"kd_alpha={config.kd_alpha} needs the teacher's "
                       "cached logits (kd_alpha=0 trains without them)")
    sizes = {len(images), len(labels)} | (
        set() if teacher_logits is None else {len(teacher_logits)})
    if len(sizes) != 1:
      raise ValueError(
          f"images, labels and teacher logits differ in length: "
          f"{len(images)}, {len(labels)}, "
          f"{None if teacher_logits is None else len(teacher_logits)}")
    self.supernet = supernet
    self.config = config
    self._images = np.asarray(images, np.float32)
    self._labels = np.asarray(labels, np.int32)
    self._logits = (None if teacher_logits is None or config.kd_alpha == 0
                    else np.asarray(teacher_logits, np.float32))
    self.optimizer = path_optimizer.make_path_optimizer(
        config.train_config(), config.steps)
    self.optimizer.build(supernet.trainable_variables)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    # The Distiller holds the loss (KD with alpha and T, or plain CE).
    self._loss = distiller.Distiller(supernet, alpha=config.kd_alpha,
                                     temperature=config.kd_temperature)
    # Shapes left open where a run varies them (the number of paths: one
    # in the warm-up, more after it; the batch): a call of another shape
    # would trace the whole space's gradient again, minutes of compiling.
    height, width, channels = self._images.shape[1:]
    self._num_classes = supernet.global_params.num_classes
    self._traced_step = tf.function(
        self._step, autograph=False, input_signature=[
            tf.TensorSpec([None, height, width, channels], tf.float32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None, self._num_classes], tf.float32),
            tf.TensorSpec([None, supernet.space.num_decisions], tf.int32),
            tf.TensorSpec([None, 2], tf.int32)])
    # The supernet's variables as a list: its layers sit in nested Python
    # lists, which tf.train.Checkpoint does not follow (the BatchNormalization
    # statistics of every block were lost on resume).
    self._checkpoint = tf.train.Checkpoint(
        weights=list(supernet.weights), optimizer=self.optimizer,
        step=self.step)
    self._managers: Dict[str, tf.train.CheckpointManager] = {}

  def _step(self, images, labels, teacher_logits, paths, seeds):
    """One update from the summed gradients of `paths` ([k, decisions])."""
    variables = self.supernet.trainable_variables

    def body(i, gradients, totals):
      with tf.GradientTape() as tape:
        logits = self.supernet.forward(images, paths[i], "train", seeds[i])
        total, student_loss, kd = self._loss.compute_losses(
            labels, logits, teacher_logits)
      path_gradients = tape.gradient(total, variables)
      gradients = [g if p is None else g + p
                   for g, p in zip(gradients, path_gradients)]
      correct = tf.reduce_sum(tf.cast(tf.equal(
          tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
      return i + 1, gradients, totals + tf.stack([total, student_loss, kd,
                                                  correct])

    count = tf.shape(paths)[0]
    # One path at a time: each writes BatchNormalization statistics in
    # place, and iterations run in parallel by default (four paths per
    # step then corrupted the heap: "malloc_consolidate(): invalid chunk
    # size").
    _, gradients, totals = tf.while_loop(
        lambda i, *_: i < count, body,
        (tf.constant(0), [tf.zeros_like(v) for v in variables],
         tf.zeros([4])), parallel_iterations=1)
    self.optimizer.apply_gradients(zip(gradients, variables))
    self.step.assign_add(1)
    return totals / tf.cast(count, tf.float32)

  def train_step(self, paths: Optional[Sequence[Sequence[int]]] = None
                 ) -> Dict[str, float]:
    """Runs the next step: its batch, and its sampled paths unless given.

    Args:
      paths: The paths to train (None: the config's sampling).

    Returns:
      {'step', 'loss', 'student_loss', 'distillation_loss', 'accuracy',
      'paths'} of the step: losses and accuracy of the batch before the
      update, averaged over its paths.
    """
    step = int(self.step.numpy())
    config = self.config
    if paths is None:
      paths = sampling.step_paths(
          self.supernet.space, config.sampling, config.paths_per_step,
          config.warmup_steps, config.seed, step, config.steps)
    paths = [tuple(self.supernet.space.validate_actions(p)) for p in paths]
    index = sampling.batch_indices(len(self._images), config.batch_size,
                                   config.seed, step)
    # Cross-entropy ignores the logits; zeros keep the step's one signature.
    logits = (np.zeros((len(index), self._num_classes), np.float32)
              if self._logits is None else self._logits[index])
    total, student_loss, kd, correct = self._traced_step(
        self._images[index], self._labels[index], logits,
        tf.constant(paths, tf.int32),
        tf.constant(sampling.dropout_seeds(config.seed, step, len(paths))))
    return {"step": step, "loss": float(total),
            "student_loss": float(student_loss),
            "distillation_loss": float(kd),
            "accuracy": float(correct) / len(index),
            "paths": paths}

  @property
  def tracing_count(self) -> int:
    """How many times the training step was traced (1 after any use)."""
    return self._traced_step.experimental_get_tracing_count()

  def _manager(self, directory: str) -> tf.train.CheckpointManager:
    if directory not in self._managers:
      self._managers[directory] = tf.train.CheckpointManager(
          self._checkpoint, directory, max_to_keep=2)
    return self._managers[directory]

  def save(self, directory: str) -> None:
    """Checkpoints weights, optimizer and step; the previous one is kept."""
    self._manager(directory).save(checkpoint_number=int(self.step.numpy()))

  def restore(self, directory: str) -> bool:
    """Loads the latest checkpoint of `directory`; False if there is none."""
    path = self._manager(directory).latest_checkpoint
    if path is None:
      return False
    self._checkpoint.restore(path).assert_existing_objects_matched()
    return True

  def train(self, checkpoint_dir: Optional[str] = None,
            on_step: Optional[Callable[[Dict[str, float]], None]] = None
            ) -> int:
    """Trains to `config.steps`, from the last checkpoint if there is one.

    Args:
      checkpoint_dir: Where checkpoints go and are resumed from (None: no
        checkpoints).
      on_step: Called with each step's `train_step` result.

    Returns:
      The step training resumed from (0 for a fresh run).

    Raises:
      FloatingPointError: a non-finite loss (the step's paths are named).
    """
    if checkpoint_dir is not None:
      self.restore(checkpoint_dir)
    start = int(self.step.numpy())
    while int(self.step.numpy()) < self.config.steps:
      result = self.train_step()
      if not np.isfinite(result["loss"]):
        raise FloatingPointError(
            f"supernet training diverged at step {result['step']} (paths "
            f"{[list(p) for p in result['paths']]}): loss {result['loss']}")
      if on_step is not None:
        on_step(result)
      done = result["step"] + 1
      if checkpoint_dir is not None and (
          done % self.config.checkpoint_every == 0 or
          done == self.config.steps):
        self.save(checkpoint_dir)
    return start
