"""Which paths and which examples a supernet training step trains on.

Every choice is a function of (seed, step) alone (counter-based NumPy
generators), so the state of a run's sampling is its step count, which a
checkpoint holds.

Path rules (`SAMPLING_RULES`):

  uniform    `paths_per_step` paths drawn uniformly (SPOS, TuNAS: one).
  sandwich   the largest and the smallest path, then `paths_per_step` - 2
             uniform ones, their gradients summed into one update (BigNAS,
             Once-for-All's sandwich rule): the extremes of the weight
             sharing are trained at every step.

With `warmup_steps`, the first steps train the largest path alone (warm-up
of the shared weights before the paths compete for them).

Public names: SAMPLING_RULES, largest_path, smallest_path, step_paths,
dropout_seeds, batch_indices.
"""

from typing import List, Tuple

import numpy as np

from akd_tf.space import search_space as space_lib

__all__ = ["SAMPLING_RULES", "batch_indices", "dropout_seeds",
           "largest_path", "smallest_path", "step_paths"]

SAMPLING_RULES = ("uniform", "sandwich")
_PATH_STREAM, _DATA_STREAM, _DROPOUT_STREAM = 0, 1, 2
# Per decision, the choice of most and of least computation.
_LARGEST = {"conv_op": space_lib.CONV_OPS.index("mbconv6"),
            "kernel": space_lib.KERNELS.index(5),
            "se_ratio": space_lib.SE_RATIOS.index(0.25),
            "skip": space_lib.SKIPS.index(True)}
_SMALLEST = {"conv_op": space_lib.CONV_OPS.index("dwconv"),
             "kernel": space_lib.KERNELS.index(3),
             "se_ratio": space_lib.SE_RATIOS.index(None),
             "skip": space_lib.SKIPS.index(True)}


def largest_path(space: space_lib.SearchSpace) -> Tuple[int, ...]:
  """MBConv e6, kernel 5, SE, residual, widest, deepest in every block."""
  return tuple(_LARGEST.get(space_lib.DECISIONS[i % len(space_lib.DECISIONS)],
                            n - 1)
               for i, n in enumerate(space.num_choices))


def smallest_path(space: space_lib.SearchSpace) -> Tuple[int, ...]:
  """Depthwise-separable, kernel 3, no SE, residual, narrowest, shallowest."""
  return tuple(_SMALLEST.get(space_lib.DECISIONS[i % len(space_lib.DECISIONS)],
                             0)
               for i, _ in enumerate(space.num_choices))


def step_paths(space: space_lib.SearchSpace, rule: str, paths_per_step: int,
               warmup_steps: int, seed: int, step: int
               ) -> List[Tuple[int, ...]]:
  """The paths of training step `step` (a function of its arguments).

  Args:
    space: The search space.
    rule: One of `SAMPLING_RULES`.
    paths_per_step: Paths per step (at least 2 for 'sandwich').
    warmup_steps: Steps at the start that train the largest path alone.
    seed: The run's seed.
    step: The step.

  Raises:
    ValueError: an unknown rule, or a sandwich of fewer than 2 paths.
  """
  if rule not in SAMPLING_RULES:
    raise ValueError(f"path sampling '{rule}' is not one of {SAMPLING_RULES}")
  if rule == "sandwich" and paths_per_step < 2:
    raise ValueError(f"sandwich sampling needs paths_per_step >= 2, got "
                     f"{paths_per_step}")
  if step < warmup_steps:
    return [largest_path(space)]
  rng = np.random.default_rng([seed, _PATH_STREAM, step])
  fixed = ([largest_path(space), smallest_path(space)]
           if rule == "sandwich" else [])
  return fixed + [space.sample(rng)
                  for _ in range(paths_per_step - len(fixed))]


def dropout_seeds(seed: int, step: int, count: int) -> np.ndarray:
  """(count, 2) int32 seeds of the dropout of the step's paths."""
  rng = np.random.default_rng([seed, _DROPOUT_STREAM, step])
  return rng.integers(0, 2**31 - 1, size=(count, 2), dtype=np.int32)


def batch_indices(num_examples: int, batch_size: int, seed: int,
                  step: int) -> np.ndarray:
  """Indices of the examples of step `step`.

  Each epoch is a fresh permutation seeded by (seed, epoch); the last
  partial batch of an epoch is dropped.

  Raises:
    ValueError: fewer examples than one batch.
  """
  per_epoch = num_examples // batch_size
  if per_epoch < 1:
    raise ValueError(f"batch_size={batch_size} is larger than the "
                     f"{num_examples} training examples")
  epoch, batch = divmod(step, per_epoch)
  order = np.random.default_rng([seed, _DATA_STREAM, epoch]).permutation(
      num_examples)
  return order[batch * batch_size:(batch + 1) * batch_size]
