"""What a long-lived process keeps of the candidates it has finished with.

A search worker builds, converts, trains and scores one candidate after
another in one process, for hundreds or thousands of candidates. Two things
of TensorFlow and Keras outlive a candidate unless released:

  - TensorFlow's global gradient registry. A `tf.custom_gradient` called
    while a `tf.function` is traced registers its gradient function under a
    fresh name ('CustomGradient-<uid>') and never removes it. Keras' own
    `train_step` calls one: the optimizer all-reduces the gradients
    (`keras/src/backend/tensorflow/optimizer.py`, `_all_reduce_sum_gradients`
    -> `ReplicaContext.all_reduce`, whose gradient is a custom gradient),
    under the default strategy too. That gradient function's closure holds
    the traced step's tensors, so the registry keeps the whole training
    graph alive, and through its captures the student's and the optimizer's
    variables: measured 190-260 MB per candidate, never given back.
    Swish (`tf.nn.silu`) is a custom gradient too, so every trace of a
    swish student registers more: its conversion to TFLite, its
    evaluation, its BN recalibration. Known to TensorFlow since 2019
    (tensorflow/tensorflow#27492; the open keras-team/tf-keras#898
    purges these entries in `clear_session`). `scoped_custom_gradients`
    removes the entries registered inside its block.
  - What is freed but not given back: Keras' global state (names in use,
    the default graph, kernel caches), garbage cycles, and the free pages
    of the C heap. `release_unused_memory` releases them between
    candidates.

With both, a worker still grew by about 6 MB per candidate (against 190
before, in benchmarks/memory.py) while its count of Python objects stayed
put: what is left is on TensorFlow's native side, and the pools' periodic
replacement of a worker (`candidates_per_worker`) bounds it.

Public names: scoped_custom_gradients, release_unused_memory.
"""

import contextlib
import ctypes
import ctypes.util
import sys
from typing import Iterator

import keras
# The gradient registry has no public API; tf.custom_gradient itself
# registers into this one.
# pylint: disable-next=g-direct-tensorflow-import
from tensorflow.python.framework import ops as tf_ops

__all__ = ["release_unused_memory", "scoped_custom_gradients"]

_CUSTOM_GRADIENT_PREFIX = "CustomGradient-"


def _glibc():
  """The C library when it is glibc (it has `malloc_trim`), else None."""
  if not sys.platform.startswith("linux"):
    return None
  libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def _gradient_registry() -> dict:
  """TensorFlow's {op type name: gradient function} registry."""
  return tf_ops._gradient_registry._registry  # pylint: disable=protected-access


@contextlib.contextmanager
def scoped_custom_gradients() -> Iterator[None]:
  """Unregisters the custom gradients registered inside the block on exit.

  Wrap everything done with a model that is dropped afterwards (a search
  candidate's building, conversion, training and scoring): its traced
  graphs, and the model's variables their captures hold, can then be
  freed. A function traced inside the block cannot be
  differentiated again after it (its custom gradients are gone); running
  it, and running anything traced before the block, is unaffected.

  The registry is process-wide: entries another thread registers while the
  block runs are removed too. A search worker evaluates one candidate at a
  time, and the driver times one at a time.

  Yields:
    None.
  """
  registry = _gradient_registry()
  before = set(registry)
  try:
    yield
  finally:
    for name in [name for name in registry
                 if name.startswith(_CUSTOM_GRADIENT_PREFIX)
                 and name not in before]:
      del registry[name]


def release_unused_memory() -> None:
  """Frees what nothing uses any more and gives it back to the system.

  Clears Keras' global state and collects garbage, so the models no one
  references are freed now, then returns the C heap's free pages to the
  operating system (glibc's `malloc_trim`; elsewhere that step is skipped).
  Without it a worker's resident memory swung by 100-250 MB from one
  candidate to the next, as freed training buffers stayed in malloc's
  arenas. Models still referenced keep working; new layers are named from
  scratch ('conv2d', not 'conv2d_1234'), so a candidate built after it is
  the same whatever the process built before.
  """
  keras.backend.clear_session(free_memory=True)
  if _LIBC is not None:
    _LIBC.malloc_trim(0)
