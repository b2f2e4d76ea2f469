"""Does supernet training learn? Sampling rules against stand-alone paths.

  python benchmarks/supernet_training.py [--steps=600] [--paths=6]

On the quick preset's proxy task (flags/fashion_mnist_quick.cfg: 3,000
Fashion-MNIST training images, 2,000 mini-val, width 1.0, head 256, BN
momentum 0.9, batch 32, Adam 3e-3 with a cosine schedule, KD from the
cached resnet_wide teacher's logits, alpha 0.9, T 4), one supernet is
trained --steps updates by each rule, from the same initial weights:

  uniform     one uniform path per step (SPOS, TuNAS)
  warmup      the largest path alone for the first quarter, then uniform
  sandwich    largest + smallest + 2 uniform paths per step, gradients
              summed (BigNAS)
  progressive the largest path alone for the first 5%, then the largest
              plus a neighbour of it that redraws more of its decisions
              as training goes on, a uniform path in the last quarter
  standalone  each evaluated path alone for --steps updates (the same
              computation as its builder student's training: see
              tests/test_supernet_training.py)

and the evaluated paths (largest, smallest, and sampled ones) are scored
as the one-shot proxy scores them: weights inherited, BatchNormalization
recomputed on 512 training images, mini-val accuracy
(`akd_tf.oneshot.scorer`), at a quarter, half and all of the steps.
Spearman's rho of each rule's final scores against the stand-alone ones
is printed too (few paths: an indication, not a fidelity figure).

One supernet, one trainer and one scorer serve every rule (the weights,
the optimizer state and the step are reset between rules), so each is
traced once. Prints a table and writes
benchmarks/results/supernet_training.json.
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from akd_tf import jsonl  # pylint: disable=g-import-not-at-top
from akd_tf.analysis import rank_stats  # pylint: disable=g-import-not-at-top
from akd_tf.distill import data as data_lib  # pylint: disable=g-import-not-at-top
from akd_tf.distill import teacher as teacher_lib  # pylint: disable=g-import-not-at-top
from akd_tf.oneshot import sampling  # pylint: disable=g-import-not-at-top
from akd_tf.oneshot import scorer as scorer_lib  # pylint: disable=g-import-not-at-top
from akd_tf.oneshot import supernet as supernet_lib  # pylint: disable=g-import-not-at-top
from akd_tf.oneshot import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
from akd_tf.space import arch  # pylint: disable=g-import-not-at-top
from akd_tf.space import search_space  # pylint: disable=g-import-not-at-top

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "supernet_training.json")
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "akd_tf")
PARAMS = arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                           head_size=256)
# name -> (rule, paths per step, fraction of steps on the largest path)
RULES = {"uniform": ("uniform", 1, 0.0), "warmup": ("uniform", 1, 0.25),
         "sandwich": ("sandwich", 4, 0.0),
         "progressive": ("progressive", 2, 0.05)}


def load_proxy_task(cache_dir):
  """The quick preset's proxy data and its teacher's cached logits."""
  data = data_lib.load_data(data_lib.DataConfig(
      "fashion_mnist", train_size=3000, minival_size=2000))
  final = data_lib.load_data(data_lib.DataConfig(
      "fashion_mnist", train_size=20000, minival_size=2000))
  teacher, _ = teacher_lib.get_builtin_teacher(
      "resnet_wide", final, cache_dir, teacher_lib.TeacherRecipe(epochs=2))
  return data, teacher_lib.teacher_logits(teacher, data.train, cache_dir)


class Resettable:
  """A trainer whose weights, optimizer state and step can be reset."""

  def __init__(self, trainer):
    self.trainer = trainer
    self._state = (list(trainer.supernet.weights) +
                   list(trainer.optimizer.variables) + [trainer.step])
    self._initial = [v.numpy().copy() for v in self._state]

  def reset(self):
    for variable, value in zip(self._state, self._initial):
      variable.assign(value)


def run_rule(trainer, steps, paths_of_step, scorer, evaluated, checkpoints):
  """Trains `steps` updates; scores of `evaluated` at the checkpoints."""
  scores, seconds = {}, []
  for step in range(steps):
    start = time.perf_counter()
    trainer.train_step(paths_of_step(step))
    seconds.append(time.perf_counter() - start)
    if step + 1 in checkpoints:
      scores[step + 1] = [scorer.score(p).accuracy for p in evaluated]
  return scores, seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=600,
                      help="optimizer updates per rule (batch 32)")
  parser.add_argument("--paths", type=int, default=6,
                      help="evaluated paths: largest, smallest, sampled")
  parser.add_argument("--rules", default="uniform,warmup,sandwich,"
                      "progressive,standalone",
                      help="comma-separated rules to run")
  parser.add_argument("--cache_dir", default=CACHE_DIR)
  parser.add_argument("--output", default=RESULTS)
  args = parser.parse_args()

  space = search_space.SearchSpace()
  data, logits = load_proxy_task(args.cache_dir)
  config = trainer_lib.SupernetTrainConfig(
      steps=args.steps, batch_size=32, learning_rate=3e-3, kd_alpha=0.9,
      kd_temperature=4.0)
  keras.utils.set_random_seed(config.seed)
  net = supernet_lib.Supernet(space, PARAMS, data.input_shape)
  trainer = trainer_lib.SupernetTrainer(net, config, data.train.images,
                                        data.train.labels, logits)
  state = Resettable(trainer)
  scorer = scorer_lib.OneShotScorer(net, data.train, data.minival)
  rng = np.random.default_rng(1)
  evaluated = [sampling.largest_path(space), sampling.smallest_path(space)]
  evaluated += [space.sample(rng) for _ in range(args.paths - 2)]
  checkpoints = {args.steps // 4, args.steps // 2, args.steps}

  results = {}
  for name in args.rules.split(","):
    state.reset()
    start = time.perf_counter()
    if name == "standalone":
      scores, seconds = {c: [] for c in checkpoints}, []
      for path in evaluated:
        state.reset()
        path_scores, path_seconds = run_rule(
            trainer, args.steps, lambda step, p=path: [p], scorer, [path],
            checkpoints)
        for c in checkpoints:
          scores[c] += path_scores[c]
        seconds += path_seconds
    else:
      rule, per_step, warmup = RULES[name]
      scores, seconds = run_rule(
          trainer, args.steps,
          lambda step, r=rule, k=per_step, w=warmup: sampling.step_paths(
              space, r, k, int(w * args.steps), config.seed, step,
              args.steps),
          scorer, evaluated, checkpoints)
    results[name] = {
        "scores": {str(c): s for c, s in sorted(scores.items())},
        "wall_s": time.perf_counter() - start,
        "step_median_s": float(np.median(seconds[1:])),
    }
    final = results[name]["scores"][str(args.steps)]
    print(f"{name:<10} {results[name]['wall_s']:7.0f} s  step "
          f"{results[name]['step_median_s'] * 1e3:5.0f} ms  final accuracy "
          + " ".join(f"{a:.3f}" for a in final), flush=True)

  if "standalone" in results:
    truth = results["standalone"]["scores"][str(args.steps)]
    for name, row in results.items():
      if name != "standalone":
        row["spearman_vs_standalone"] = rank_stats.spearman(
            row["scores"][str(args.steps)], truth)
  print(f"\n{'rule':<10} " + " ".join(f"{'@' + str(c):>22}"
                                       for c in sorted(checkpoints)) +
        "  rho vs standalone")
  for name, row in results.items():
    cells = []
    for c in sorted(checkpoints):
      s = row["scores"][str(c)]
      cells.append(f"{np.mean(s):.3f} [{min(s):.3f}-{max(s):.3f}]")
    rho = row.get("spearman_vs_standalone")
    print(f"{name:<10} " + " ".join(f"{c:>22}" for c in cells) +
          (f"  {rho:.2f}" if rho is not None else ""))

  record = {
      "benchmark": "supernet_training",
      "dataset": "fashion_mnist", "train_size": data.train.size,
      "minival_size": data.minival.size,
      "global_params": PARAMS.get_config(), "config": config.get_config(),
      "rules": {n: list(RULES[n]) for n in RULES},
      "evaluated_paths": [list(p) for p in evaluated],
      "results": results,
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "tensorflow": tf.__version__, "keras": keras.__version__},
      "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }
  os.makedirs(os.path.dirname(args.output), exist_ok=True)
  jsonl.write_json_atomic(args.output, record)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
