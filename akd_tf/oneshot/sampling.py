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
  progressive  the largest path, then `paths_per_step` - 1 neighbours of
             it: each redraws k decisions of the largest path, chosen at
             random, and k grows from 1 after the warm-up to every
             decision at 3/4 of the remaining steps; then the neighbours
             are uniform paths. Once-for-All's progressive shrinking,
             over every decision at once: drawn uniformly from the start,
             paths of unrelated ops (the regular, the separable and the
             MBConv convs have their own weights) compound features no
             shared layer can read, and the supernet learns nothing
             (benchmarks/results/supernet_training.json).

With `warmup_steps`, the first steps train the largest path alone (warm-up
of the shared weights before the paths compete for them).

Public names: SAMPLING_RULES, largest_path, smallest_path, step_paths,
dropout_seeds, batch_indices.
"""

from typing import List, Optional, Tuple

import numpy as np

from akd_tf.space import search_space as space_lib

__all__ = ["SAMPLING_RULES", "batch_indices", "dropout_seeds",
           "largest_path", "smallest_path", "step_paths"]

SAMPLING_RULES = ("uniform", "sandwich", "progressive")
# Of the steps after the warm-up, the share over which a progressive
# neighbour's redrawn decisions grow from one to all.
_GROWTH_SHARE = 0.75
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


def _redrawn_decisions(warmup_steps: int, steps: int, step: int,
                       num_decisions: int) -> int:
  """How many decisions a 'progressive' neighbour of step `step` redraws."""
  growth = max(1, int(_GROWTH_SHARE * (steps - warmup_steps)))
  grown = (step - warmup_steps) / growth
  return min(num_decisions, 1 + int(grown * (num_decisions - 1)))


def step_paths(space: space_lib.SearchSpace, rule: str, paths_per_step: int,
               warmup_steps: int, seed: int, step: int,
               steps: Optional[int] = None) -> List[Tuple[int, ...]]:
  """The paths of training step `step` (a function of its arguments).

  Args:
    space: The search space.
    rule: One of `SAMPLING_RULES`.
    paths_per_step: Paths per step (at least 2 for 'sandwich' and
      'progressive').
    warmup_steps: Steps at the start that train the largest path alone.
    seed: The run's seed.
    step: The step.
    steps: The run's steps ('progressive' grows its neighbourhood over
      them; the other rules ignore it).

  Raises:
    ValueError: an unknown rule, a sandwich or a progressive step of fewer
      than 2 paths, or a progressive step without `steps`.
  """
  if rule not in SAMPLING_RULES:
    raise ValueError(f"path sampling '{rule}' is not one of {SAMPLING_RULES}")
  if rule in ("sandwich", "progressive") and paths_per_step < 2:
    raise ValueError(f"{rule} sampling needs paths_per_step >= 2, got "
                     f"{paths_per_step}")
  if rule == "progressive" and steps is None:
    raise ValueError("progressive sampling needs the run's steps")
  if step < warmup_steps:
    return [largest_path(space)]
  rng = np.random.default_rng([seed, _PATH_STREAM, step])
  if rule == "progressive":
    largest = largest_path(space)
    redrawn = _redrawn_decisions(warmup_steps, steps, step,
                                 space.num_decisions)
    paths = [largest]
    for _ in range(paths_per_step - 1):
      path, drawn = list(largest), space.sample(rng)
      for i in rng.choice(space.num_decisions, size=redrawn, replace=False):
        path[i] = drawn[i]
      paths.append(tuple(path))
    return paths
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
