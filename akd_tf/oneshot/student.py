"""The stand-alone student of a supernet path, with the supernet's weights.

`inherit_student` builds the student of a path exactly as a search builds a
candidate (`akd_tf.space.search_space` decode,
`akd_tf.space.builder.build_from_spec`) and copies into it the slices of
the supernet weights that the path uses (`Supernet.path_weight_slices`).
Its outputs then equal the supernet's on that path; the student can be
trained further, timed or exported like any other.

Public names: inherit_student, path_spec.
"""

from typing import Sequence

import keras

from akd_tf.oneshot import supernet as supernet_lib
from akd_tf.space import arch
from akd_tf.space import builder

__all__ = ["inherit_student", "path_spec"]


def path_spec(supernet: supernet_lib.Supernet,
              actions: Sequence[int]) -> arch.ArchSpec:
  """The `ArchSpec` of the student of `actions` in `supernet`.

  Raises:
    ValueError: see `SearchSpace.validate_actions`.
  """
  return arch.ArchSpec(blocks=supernet.space.decode(actions),
                       global_params=supernet.global_params,
                       input_shape=supernet.image_shape)


def inherit_student(supernet: supernet_lib.Supernet, actions: Sequence[int],
                    name: str = "student") -> keras.Model:
  """Builds the student of `actions` and gives it the supernet's weights.

  Args:
    supernet: The (trained) supernet.
    actions: The path: one int per decision of the supernet's space.
    name: Name of the Keras model.

  Returns:
    The functional student of `akd_tf.builder`, every weight copied from
    the supernet (BatchNormalization moving statistics included).

  Raises:
    ValueError: invalid actions; or a student weight the supernet does not
      provide, or one it provides twice (the layouts disagree).
  """
  student = builder.build_from_spec(path_spec(supernet, actions), name=name)
  assigned = set()
  for piece in supernet.path_weight_slices(actions):
    weight = getattr(student.get_layer(piece.layer), piece.attribute)
    value = piece.read()
    if tuple(weight.shape) != value.shape:
      raise ValueError(f"{piece.layer}.{piece.attribute}: the student's "
                       f"shape {tuple(weight.shape)} differs from the "
                       f"supernet slice's {value.shape}")
    if weight.path in assigned:
      raise ValueError(f"{weight.path} is assigned twice")
    weight.assign(value)
    assigned.add(weight.path)
  missing = sorted(w.path for w in student.weights if w.path not in assigned)
  if missing:
    raise ValueError(f"the supernet provides no value for {missing}")
  return student
