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

With both, a worker still grew by 4-6 MB per candidate while its count of
Python objects stayed put. The rest is native; two settings of a search
worker's process cut it by more than half:

  - TensorFlow's oneDNN kernels (on by default on x86) keep every primitive
    they create in per-thread caches of up to 1024 entries keyed by tensor
    shapes, and every candidate brings new shapes. TensorFlow reads the
    switch once, when it is imported, so `child_environment` sets it for
    the worker processes a pool starts (`worker_environment`).
  - glibc's malloc raises its mmap threshold each time a large block is
    freed, so later tensors come from the heap, which fragments and is
    not handed back whole. `return_large_buffers` fixes the threshold.

benchmarks/memory.py, the same 20 candidates: with oneDNN the worker held
1081 MB after candidate 20 and grew 4.4 MB per candidate from candidate 10;
without it and with the fixed threshold, 826 MB and 1.9 MB per candidate,
its training no slower (434 s against 450 s).

What still grew is glibc's fragmentation, not a leak. heaptrack, the same
candidate evaluated 3 and 9 times in one process: 295 KB more left
allocated after 9 than after 3 (50 KB per candidate), while the resident
memory grew 1.8 MB per candidate and the main arena's free chunks by about
1,000 per candidate: what stays allocated between candidates (caches that
are cleared and refilled) lands somewhere new each time, and pins pages
among the freed ones that `malloc_trim` cannot return. jemalloc, told to
return freed pages at once, keeps such a process flatter, so
`worker_environment` preloads it into the workers when it is installed
(Debian's `libjemalloc2`; `allocator='system'` keeps glibc's). The same 20
candidates, two runs started together: glibc 807 -> 826 MB from candidate
10 to 20 (+1.9 MB per candidate), jemalloc 791 -> 798 (+0.7), its training
no slower (369 s against 396 s for the 20).

The pools' periodic replacement of a worker (`candidates_per_worker`) stays
as a backstop.

Public names: scoped_custom_gradients, release_unused_memory,
child_environment, return_large_buffers, worker_environment, find_jemalloc,
WORKER_ALLOCATORS.
"""

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys
import threading
from typing import Dict, Iterator, Optional

import keras
# The gradient registry has no public API; tf.custom_gradient itself
# registers into this one.
# pylint: disable-next=g-direct-tensorflow-import
from tensorflow.python.framework import ops as tf_ops

__all__ = ["WORKER_ALLOCATORS", "child_environment", "find_jemalloc",
           "release_unused_memory", "return_large_buffers",
           "scoped_custom_gradients", "worker_environment"]

_LOG = logging.getLogger(__name__)
_CUSTOM_GRADIENT_PREFIX = "CustomGradient-"
# The C heap allocators a search worker can run on.
WORKER_ALLOCATORS = ("jemalloc", "system")
# jemalloc gives freed pages back at once instead of after 10 s, so that a
# worker's resident memory between candidates is what it still uses.
_JEMALLOC_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"
# glibc's mallopt parameter and the threshold it is fixed at: blocks of
# 128 KiB and more are mapped (glibc's own initial value, which it would
# otherwise raise up to 32 MiB).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 128 * 1024
_ENVIRONMENT_LOCK = threading.Lock()


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


@contextlib.contextmanager
def child_environment(variables: Dict[str, str]) -> Iterator[None]:
  """Sets `variables` in this process's environment for the block.

  Processes started inside the block (a pool's spawned workers) inherit
  them; on exit the environment is as it was. For settings a child must
  have before it imports TensorFlow, which a process-pool initializer runs
  too late for.

  Args:
    variables: {name: value}; empty changes nothing.

  Yields:
    None.
  """
  with _ENVIRONMENT_LOCK:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
      yield
    finally:
      for name, value in saved.items():
        if value is None:
          del os.environ[name]
        else:
          os.environ[name] = value


def return_large_buffers() -> bool:
  """Maps this process's large allocations, so that freeing gives them back.

  Fixes glibc's mmap threshold at 128 KiB. Otherwise glibc raises it each
  time such a block is freed, up to 32 MiB, after which a worker's tensors
  come from the heap, which fragments: its resident memory then climbs a
  little with every candidate of a new size. Call it once, when a
  long-lived process starts.

  Returns:
    Whether the threshold was set (False off glibc).
  """
  if _LIBC is None:
    return False
  return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


def find_jemalloc() -> Optional[str]:
  """The installed jemalloc shared library, or None.

  Returns:
    Its soname as the dynamic linker's cache knows it (Debian's
    `libjemalloc2`: 'libjemalloc.so.2'), which LD_PRELOAD resolves the way
    it resolves any library; None when it is not installed.
  """
  return ctypes.util.find_library("jemalloc")


def worker_environment(onednn: bool = False,
                       allocator: str = "jemalloc") -> Dict[str, str]:
  """The environment a search worker process starts with.

  Both settings act when the process starts (TensorFlow reads its switch at
  import; a preloaded allocator replaces malloc before anything runs), so
  the pools spawn their workers with them (`child_environment`, Ray's
  runtime_env).

  Args:
    onednn: Whether the worker's TensorFlow uses its oneDNN kernels.
    allocator: 'jemalloc' preloads jemalloc (when it is not installed, a
      warning says so and glibc's malloc is used); 'system' keeps the C
      library's malloc.

  Returns:
    {variable: value}; variables not in it are inherited unchanged.

  Raises:
    ValueError: an allocator not in WORKER_ALLOCATORS.
  """
  if allocator not in WORKER_ALLOCATORS:
    raise ValueError(f"worker allocator {allocator!r} is not one of "
                     f"{WORKER_ALLOCATORS}")
  environment = {} if onednn else {"TF_ENABLE_ONEDNN_OPTS": "0"}
  if allocator == "jemalloc":
    library = find_jemalloc()
    if library is None:
      _LOG.warning(
          "jemalloc is not installed (Debian: apt-get install libjemalloc2);"
          " search workers use the system malloc, and grow by 1-2 MB per "
          "candidate (README, Memory)")
    else:
      preloaded = os.environ.get("LD_PRELOAD")
      environment["LD_PRELOAD"] = (f"{library}:{preloaded}" if preloaded
                                   else library)
      environment["MALLOC_CONF"] = _JEMALLOC_CONF
  return environment
