"""Toy-reward learning curves of the controllers: REINFORCE vs random search.

The reward of an architecture is the fraction of its actions equal to 0 over
the real MnasNet space's decisions (a uniform policy scores about 0.41). For
every seed and controller, the mean reward of each window of samples is
printed as a table and written to benchmarks/results/controller.json with the
median time per sample and per update (batch of `batch_size` samples).

  .venv/bin/python benchmarks/controller.py --seeds=5 --budget=500
"""

import json
import os
import time

from absl import app
from absl import flags
import numpy as np

from akd_tf import controller as controller_lib
from akd_tf import search_space

_SEEDS = flags.DEFINE_integer("seeds", 5, "Number of seeds (0, 1, ...).")
_BUDGET = flags.DEFINE_integer("budget", 500, "Samples per run.")
_WINDOW = flags.DEFINE_integer("window", 50, "Samples per curve point.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "4"],
                                 "REINFORCE batch sizes to compare.")
_OUTPUT = flags.DEFINE_string(
    "output", os.path.join(os.path.dirname(__file__), "results",
                           "controller.json"), "JSON results file.")


def toy_reward(actions):
  return sum(a == 0 for a in actions) / len(actions)


def run(kind, batch_size, seed, num_choices):
  """Returns per-sample rewards and the median seconds per sample and update.

  Medians leave out the first calls, which trace the tf.functions.
  """
  controller = controller_lib.make_controller(
      kind, num_choices, controller_lib.ControllerConfig(seed=seed))
  rewards, sample_s, update_s = [], [], []
  for _ in range(_BUDGET.value // batch_size):
    start = time.perf_counter()
    batch = [controller.sample() for _ in range(batch_size)]
    sample_s.append((time.perf_counter() - start) / batch_size)
    batch = [(actions, toy_reward(actions)) for actions in batch]
    start = time.perf_counter()
    controller.update(batch)
    update_s.append(time.perf_counter() - start)
    rewards.extend(r for _, r in batch)
  return rewards, float(np.median(sample_s)), float(np.median(update_s))


def main(argv):
  del argv
  num_choices = search_space.SearchSpace().num_choices
  window = _WINDOW.value
  variants = [("random", 1)] + [("reinforce", int(b))
                                for b in _BATCH_SIZES.value]
  results = {"num_choices": list(num_choices), "budget": _BUDGET.value,
             "window": window, "runs": []}
  curves = {}
  for kind, batch_size in variants:
    for seed in range(_SEEDS.value):
      rewards, sample_s, update_s = run(kind, batch_size, seed, num_choices)
      curve = [float(np.mean(rewards[i:i + window]))
               for i in range(0, len(rewards), window)]
      curves.setdefault((kind, batch_size), []).append(curve)
      results["runs"].append({
          "controller": kind, "batch_size": batch_size, "seed": seed,
          "curve": curve, "ms_per_sample": 1e3 * sample_s,
          "ms_per_update": 1e3 * update_s})
      print(f"{kind:9s} batch {batch_size} seed {seed}: last window "
            f"{curve[-1]:.3f}, {1e3 * sample_s:.2f} ms/sample, "
            f"{1e3 * update_s:.2f} ms/update")
  names = [f"{k} b{b}" for k, b in variants]
  print("\nmean reward per window of samples (mean +- sd over "
        f"{_SEEDS.value} seeds)")
  print("samples  " + "".join(f"{n:>18s}" for n in names))
  for i in range(len(next(iter(curves.values()))[0])):
    row = [np.asarray(curves[v])[:, i] for v in variants]
    print(f"{(i + 1) * window:7d}  " + "".join(
        f"{r.mean():12.3f}+-{r.std():.3f}" for r in row))
  os.makedirs(os.path.dirname(_OUTPUT.value), exist_ok=True)
  with open(_OUTPUT.value, "w") as f:
    json.dump(results, f, indent=1)
  print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
