"""The one-shot proxy: a candidate's mini-val accuracy with supernet weights.

A candidate (a path of actions) is scored as in SPOS: its
BatchNormalization statistics are recomputed on training images (under
weight sharing the trained moving statistics belong to no path in
particular; without recalibration the ranking collapses), then its top-1
accuracy is measured on the mini-validation split.

  recalibration  one forward pass of `calibration_images` training images
                 (a seeded random subset, fixed for every candidate) in the
                 supernet's 'calibrate' mode: the batch statistics become
                 the moving statistics of the path's channels, as
                 `akd_tf.distill.candidate_training.recalibrate_batch_norm`
                 does with one batch (calibration_images 0: none, the
                 supernet's trained moving statistics; an ablation)
  evaluation     the mini-val split in 'infer' mode, `eval_batch_size`
                 images at a time (a `tf.while_loop`)

Both are one traced function whose input is the path: scoring thousands of
candidates traces it once, builds no model and allocates nothing per
candidate. Scoring overwrites the supernet's moving statistics in the
channels of the scored path.

Do not seed TensorFlow between scores (`tf.random.set_seed`,
`keras.utils.set_random_seed`): it clears TensorFlow's kernel cache, and the
next score instantiates the function again (measured on the quick preset's
supernet: 11 s, against 0.4 s for a score).

Public names: OneShotConfig, OneShotScore, OneShotScorer.
"""

import dataclasses
import time
from typing import List, Sequence

import numpy as np
import tensorflow as tf

from akd_tf.distill import data as data_lib
from akd_tf.oneshot import supernet as supernet_lib
from akd_tf.space import arch

__all__ = ["OneShotConfig", "OneShotScore", "OneShotScorer"]


@dataclasses.dataclass(frozen=True)
class OneShotConfig:
  """How candidates are scored.

  Attributes:
    calibration_images: Training images the BatchNormalization statistics
      of each candidate are recomputed on (in one batch); 0 keeps the
      supernet's trained moving statistics.
    calibration_seed: Seeds which training images those are.
    eval_batch_size: Mini-val images per forward pass.
  """

  calibration_images: int = 512
  calibration_seed: int = 0
  eval_batch_size: int = 500

  def __post_init__(self):
    if self.calibration_images < 0:
      raise ValueError(f"OneShotConfig: calibration_images="
                       f"{self.calibration_images} must be >= 0")
    if self.eval_batch_size < 1:
      raise ValueError(f"OneShotConfig: eval_batch_size="
                       f"{self.eval_batch_size} must be >= 1")

  def get_config(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class OneShotScore:
  """What scoring one candidate gave.

  Attributes:
    accuracy: Top-1 accuracy on the mini-val split.
    loss: Mean cross-entropy on the mini-val split.
    seconds: Wall time of the scoring (recalibration and evaluation).
  """

  accuracy: float
  loss: float
  seconds: float


class OneShotScorer:
  """Scores paths of a trained supernet on a fixed mini-val split.

  Args:
    supernet: The trained supernet (its moving statistics are overwritten).
    train: The split calibration images are drawn from.
    minival: The split accuracy is measured on.
    config: How.

  Raises:
    ValueError: an empty mini-val split.
  """

  def __init__(self, supernet: supernet_lib.Supernet, train: data_lib.Split,
               minival: data_lib.Split,
               config: OneShotConfig = OneShotConfig()):
    if minival.size < 1:
      raise ValueError("the mini-val split is empty: nothing to score on")
    self.supernet = supernet
    self.config = config
    self._calibration = None
    if config.calibration_images:
      calibration, _ = data_lib.arrays(train, config.calibration_images,
                                       seed=config.calibration_seed)
      self._calibration = tf.constant(calibration)
    images, labels = data_lib.arrays(minival)
    batch = min(config.eval_batch_size, len(labels))
    chunks = -(-len(labels) // batch)
    padding = chunks * batch - len(labels)
    self._count = len(labels)
    self._images = tf.constant(np.concatenate(
        [images, np.zeros((padding,) + images.shape[1:], images.dtype)]
    ).reshape((chunks, batch) + images.shape[1:]))
    self._labels = tf.constant(np.concatenate(
        [labels, np.zeros(padding, labels.dtype)]).reshape(chunks, batch))
    self._valid = tf.constant(
        (np.arange(chunks * batch) < len(labels)).reshape(chunks, batch),
        tf.float32)
    self._traced = tf.function(self._score_path, autograph=False)

  def _score_path(self, path):
    if self._calibration is not None:
      self.supernet.forward(self._calibration, path, "calibrate")

    def body(i, correct, loss):
      logits = self.supernet.forward(self._images[i], path, "infer")
      labels, valid = self._labels[i], self._valid[i]
      hits = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                              labels), tf.float32)
      losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
      return (i + 1, correct + tf.reduce_sum(hits * valid),
              loss + tf.reduce_sum(losses * valid))

    _, correct, loss = tf.while_loop(
        lambda i, *_: i < tf.shape(self._images)[0], body,
        (tf.constant(0), tf.constant(0.0), tf.constant(0.0)))
    return correct / self._count, loss / self._count

  def score(self, actions: Sequence[int]) -> OneShotScore:
    """Recalibrates the path's BatchNormalization and measures its accuracy.

    Raises:
      ValueError: actions not of the supernet's space.
    """
    start = time.perf_counter()
    accuracy, loss = self._traced(self.supernet.path_tensor(actions))
    accuracy, loss = float(accuracy), float(loss)
    return OneShotScore(accuracy=accuracy, loss=loss,
                        seconds=time.perf_counter() - start)

  def score_many(self, paths: Sequence[Sequence[int]]) -> List[OneShotScore]:
    """`score` of every path, in order."""
    return [self.score(actions) for actions in paths]

  def score_blocks(self, block_strings: Sequence[str]) -> OneShotScore:
    """`score` of the student written as MnasNet block strings.

    The blocks must be a student of the supernet's space (as
    `akd_tf.nas.history` records them), so that a list of architectures
    from elsewhere (a ground-truth benchmark) can be scored.

    Raises:
      ValueError: a malformed block string, or a block not in the space
        (the message names the block and the field).
    """
    blocks = arch.decode_blocks(block_strings)
    return self.score(self.supernet.space.encode(blocks))

  @property
  def tracing_count(self) -> int:
    """How many times the scoring function was traced (1 after any use)."""
    return self._traced.experimental_get_tracing_count()
