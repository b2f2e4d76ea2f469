"""What the distillation tests share: a small student without BN or dropout.

The fixtures `digits` and `digits_teacher` (conftest.py) are their data and
teacher.
"""

import keras


def plain_student(seed: int = 0) -> keras.Model:
  """A digits student without BN or dropout, its weights drawn from `seed`:
  exact comparisons across strategies and feeds."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((8, 8, 1))
  x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
  x = keras.layers.Flatten()(x)
  return keras.Model(inputs, keras.layers.Dense(10)(x))
