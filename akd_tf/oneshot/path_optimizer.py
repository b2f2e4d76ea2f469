"""An optimizer under which a zero gradient changes nothing (lazy updates).

Under single-path weight sharing, the branches a path does not take get
zero gradients (not None), and Adam's momentum would still move them. The
recipe's optimizer (`akd_tf.distill.candidate_training.make_optimizer`) is
made lazy: an element whose gradient is exactly zero keeps its value and
its optimizer state (momentum, velocity). That also covers the parts of a
shared weight a path does not use (the ring of a 5x5 kernel on a 3x3
path, the channels beyond its width).

Public names: make_path_optimizer.
"""

import keras
import tensorflow as tf

from akd_tf.distill import candidate_training

__all__ = ["make_path_optimizer"]


def _lazy(optimizer_class):
  """`optimizer_class` changed so that a zero gradient changes nothing."""

  class Lazy(optimizer_class):
    """Updates only the elements whose gradient is not exactly zero."""

    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      self._slots_of = {}

    def add_variable_from_reference(self, reference_variable, name=None,
                                    initializer="zeros"):
      slot = super().add_variable_from_reference(
          reference_variable, name=name, initializer=initializer)
      self._slots_of.setdefault(self._var_key(reference_variable),
                                []).append(slot)
      return slot

    def update_step(self, gradient, variable, learning_rate):
      moving = tf.not_equal(gradient, 0.0)
      state = [variable] + self._slots_of.get(self._var_key(variable), [])

      def update():
        before = [tf.identity(v) for v in state]
        super(Lazy, self).update_step(gradient, variable, learning_rate)
        for v, old in zip(state, before):
          v.assign(tf.where(moving, tf.convert_to_tensor(v), old))
        return tf.constant(True)

      # A variable of a branch the path did not take: skip it at once.
      tf.cond(tf.reduce_any(moving), update, lambda: tf.constant(False))

  Lazy.__name__ = f"Lazy{optimizer_class.__name__}"
  return Lazy


def make_path_optimizer(config: candidate_training.TrainConfig, steps: int
                        ) -> keras.optimizers.Optimizer:
  """The recipe's optimizer (`candidate_training.make_optimizer`), lazy.

  An element whose gradient is exactly zero keeps its value and its
  optimizer state; every other element is updated as the optimizer does.

  Args:
    config: The recipe (optimizer, learning rate and schedule).
    steps: Steps the schedule runs over.
  """
  standard = candidate_training.make_optimizer(config, steps)
  return _lazy(type(standard)).from_config(standard.get_config())
