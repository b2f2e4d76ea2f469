"""One-shot scoring against stand-alone proxy training, per candidate.

  python benchmarks/supernet_speed.py [--candidates=40] [--proxy_candidates=3]

On the quick preset's proxy task (flags/fashion_mnist_quick.cfg: 3,000
Fashion-MNIST training images, 2,000 mini-val, width 1.0, head 256, BN
momentum 0.9, batch 32, KD from the cached resnet_wide teacher's logits),
in one process:

  supernet   KD training of the whole-space supernet for --supernet_steps
             sampled paths (seconds per step; the first step, which traces,
             counted apart)
  steps      the supernet's training step on a fixed path against the
             builder's stand-alone student of that path (the Distiller's
             cached-KD `train_step` in a `tf.function`), interleaved in
             blocks; issue 15 asks for at most 2x
  oneshot    scoring sampled candidates through the trained supernet: BN
             recalibration on 512 training images, then mini-val accuracy
             (`akd_tf.oneshot.scorer`); the first, which traces, counted
             apart
  proxy      today's proxy per candidate: build the student, KD-train it
             for the preset's 2 epochs, recalibrate BN, evaluate
             (`candidate_training.train_candidate`, as a search worker
             does; latency not included)

The first score after each proxy candidate is reported apart: the
candidate's `keras.utils.set_random_seed` clears TensorFlow's kernel cache,
and that score instantiates the scoring function again.

The cost of a score does not depend on how well the supernet is trained;
the accuracies are recorded, not judged (after 100, or even 1,000, steps of
uniform single-path training every path scores near chance on this task).

Scoring and proxy candidates are interleaved (a block of one-shot scores,
then one proxy candidate), since this machine shares its host. Prints a
table and the line `proxy / one-shot seconds per candidate = X`, and writes
benchmarks/results/supernet_speed.json (with the process RSS before and
after scoring).
"""

import argparse
import dataclasses
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from akd_tf import jsonl  # pylint: disable=g-import-not-at-top
from akd_tf.distill import candidate_training  # pylint: disable=g-import-not-at-top
from akd_tf.distill import data as data_lib  # pylint: disable=g-import-not-at-top
from akd_tf.distill import distiller as distill  # pylint: disable=g-import-not-at-top
from akd_tf.distill import teacher as teacher_lib  # pylint: disable=g-import-not-at-top
from akd_tf.oneshot import scorer as oneshot  # pylint: disable=g-import-not-at-top
from akd_tf.oneshot import student as supernet_student  # pylint: disable=g-import-not-at-top
from akd_tf.oneshot import supernet as supernet_lib  # pylint: disable=g-import-not-at-top
from akd_tf.oneshot import trainer as supernet_training  # pylint: disable=g-import-not-at-top
from akd_tf.space import arch  # pylint: disable=g-import-not-at-top
from akd_tf.space import builder  # pylint: disable=g-import-not-at-top
from akd_tf.space import search_space  # pylint: disable=g-import-not-at-top

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "supernet_speed.json")
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "akd_tf")
# The quick preset's proxy task and students.
PROXY = candidate_training.TrainConfig(
    epochs=2, batch_size=32, learning_rate=3e-3, kd_alpha=0.9,
    kd_temperature=4.0, bn_momentum=0.9, bn_recalibration_images=1000)
PARAMS = arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                           head_size=256)


def _rss_mb() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024.0
  return float("nan")


def _stats(seconds):
  values = np.asarray(seconds, float)
  return {"n": int(values.size), "min_s": float(values.min()),
          "p10_s": float(np.percentile(values, 10)),
          "median_s": float(np.median(values)),
          "mean_s": float(values.mean()), "max_s": float(values.max())}


def load_proxy_task(cache_dir):
  """The quick preset's proxy data and its teacher's cached logits."""
  data = data_lib.load_data(data_lib.DataConfig(
      "fashion_mnist", train_size=3000, minival_size=2000))
  final = data_lib.load_data(data_lib.DataConfig(
      "fashion_mnist", train_size=20000, minival_size=2000))
  teacher, info = teacher_lib.get_builtin_teacher(
      "resnet_wide", final, cache_dir, teacher_lib.TeacherRecipe(epochs=2))
  logits = teacher_lib.teacher_logits(teacher, data.train, cache_dir)
  return data, logits, info


def train_supernet(space, data, logits, steps):
  """A KD-trained supernet and the seconds of its first and later steps."""
  config = supernet_training.SupernetTrainConfig(
      steps=steps, batch_size=PROXY.batch_size,
      learning_rate=PROXY.learning_rate, kd_alpha=PROXY.kd_alpha,
      kd_temperature=PROXY.kd_temperature)
  keras.utils.set_random_seed(config.seed)
  net = supernet_lib.Supernet(space, PARAMS, data.input_shape)
  trainer = supernet_training.SupernetTrainer(
      net, config, data.train.images, data.train.labels, logits)
  seconds = []
  for _ in range(steps):
    start = time.perf_counter()
    trainer.train_step()
    seconds.append(time.perf_counter() - start)
  return trainer, seconds


def step_ratios(trainer, data, logits, paths, steps, repeats):
  """Per path: the supernet's step against its stand-alone student's."""
  images = tf.constant(data.train.images[:PROXY.batch_size])
  batch = ({data_lib.IMAGES_KEY: images,
            data_lib.TEACHER_LOGITS_KEY: tf.constant(
                logits[:PROXY.batch_size])},
           tf.constant(data.train.labels[:PROXY.batch_size]))
  rows = {}
  for name, actions in paths.items():
    student = supernet_student.inherit_student(trainer.supernet, actions)
    distiller = distill.Distiller(student, alpha=PROXY.kd_alpha,
                                  temperature=PROXY.kd_temperature)
    distiller.compile(optimizer=keras.optimizers.Adam(PROXY.learning_rate),
                      jit_compile=False)
    distiller.optimizer.build(distiller.trainable_variables)
    student_step = tf.function(distiller.train_step, jit_compile=False)
    variants = {
        "supernet": lambda a=actions: trainer.train_step([a])["loss"],
        "student": lambda s=student_step: float(s(batch)["loss"]),
    }
    for run in variants.values():  # Trace and warm up.
      run()
      run()
    times = {v: [] for v in variants}
    for r in range(repeats):
      for v in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
        start = time.perf_counter()
        for _ in range(steps):
          variants[v]()
        times[v].append((time.perf_counter() - start) / steps)
    rows[name] = {
        "actions": list(actions),
        "student_params": student.count_params(),
        "supernet_step": _stats(times["supernet"]),
        "student_step": _stats(times["student"]),
        "ratio_min": min(times["supernet"]) / min(times["student"]),
        "ratio_median": (np.median(times["supernet"]) /
                         np.median(times["student"])),
    }
  return rows


def proxy_candidate(space, actions, data, logits) -> float:
  """Wall seconds of one candidate of today's proxy (without latency)."""
  start = time.perf_counter()
  keras.utils.set_random_seed(PROXY.seed)
  spec = arch.ArchSpec(blocks=space.decode(actions), global_params=PARAMS,
                       input_shape=data.input_shape)
  candidate_training.train_candidate(builder.build_from_spec(spec),
                                     data.train, data.minival, PROXY,
                                     teacher_logits=logits)
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--supernet_steps", type=int, default=100,
                      help="KD training steps of the supernet (batch 32)")
  parser.add_argument("--candidates", type=int, default=40,
                      help="candidates scored one-shot")
  parser.add_argument("--proxy_candidates", type=int, default=3,
                      help="candidates trained stand-alone")
  parser.add_argument("--step_repeats", type=int, default=8,
                      help="interleaved blocks per path in the step ratio")
  parser.add_argument("--step_block", type=int, default=5,
                      help="steps per timed block in the step ratio")
  parser.add_argument("--cache_dir", default=CACHE_DIR)
  parser.add_argument("--output", default=RESULTS)
  args = parser.parse_args()

  space = search_space.SearchSpace()
  data, logits, teacher_info = load_proxy_task(args.cache_dir)
  trainer, train_seconds = train_supernet(space, data, logits,
                                          args.supernet_steps)
  largest = tuple(n - 1 for n in space.num_choices)
  steps = step_ratios(trainer, data, logits,
                      {"largest": largest, "sampled": space.sample(1000)},
                      args.step_block, args.step_repeats)

  scorer = oneshot.OneShotScorer(trainer.supernet, data.train, data.minival)
  rng = np.random.default_rng(0)
  candidates = [space.sample(rng) for _ in range(args.candidates)]
  first = scorer.score(candidates[0])
  rss_before = _rss_mb()
  scores, proxy_seconds, after_proxy = [], [], []
  chunks = np.array_split(np.arange(1, len(candidates)),
                          args.proxy_candidates)
  for chunk in chunks:
    chunk_scores = scorer.score_many([candidates[i] for i in chunk])
    if proxy_seconds:
      # A proxy candidate seeds TensorFlow (tf.random.set_seed), which
      # clears its kernel cache: the next score instantiates the scoring
      # function again.
      after_proxy.append(chunk_scores[0].seconds)
      chunk_scores = chunk_scores[1:]
    scores += chunk_scores
    proxy_seconds.append(proxy_candidate(space, candidates[len(proxy_seconds)],
                                         data, logits))
  rss_after = _rss_mb()
  score_seconds = [s.seconds for s in scores]
  oneshot_stats = _stats(score_seconds)
  proxy_stats = _stats(proxy_seconds)
  train_stats = _stats(train_seconds[1:])
  ratio = proxy_stats["median_s"] / oneshot_stats["median_s"]

  print(f"Fashion-MNIST 28x28x1, proxy task of the quick preset "
        f"({data.train.size} train / {data.minival.size} mini-val); "
        f"supernet {trainer.supernet.count_params():,} params, "
        f"{args.supernet_steps} KD steps of batch {PROXY.batch_size}")
  print(f"{'what':<34} {'n':>4} {'min s':>8} {'median s':>9} {'mean s':>8}")
  for name, s in (("supernet KD step (sampled path)", train_stats),
                  ("one-shot score per candidate", oneshot_stats),
                  ("stand-alone proxy per candidate", proxy_stats)):
    print(f"{name:<34} {s['n']:4d} {s['min_s']:8.3f} {s['median_s']:9.3f} "
          f"{s['mean_s']:8.3f}")
  print(f"first supernet step (traces): {train_seconds[0]:.1f} s; first "
        f"one-shot score (traces): {first.seconds:.1f} s; scorer traced "
        f"{scorer.tracing_count} time(s)")
  print("first score after each proxy candidate (its tf.random.set_seed "
        "cleared TF's kernel cache): " +
        ", ".join(f"{t:.1f} s" for t in after_proxy))
  for name, row in steps.items():
    print(f"step on the {name} path ({row['student_params']:,} params): "
          f"supernet {row['supernet_step']['min_s'] * 1e3:.1f} ms, student "
          f"{row['student_step']['min_s'] * 1e3:.1f} ms (min); supernet / "
          f"student = {row['ratio_min']:.2f} (median "
          f"{row['ratio_median']:.2f})")
  print(f"RSS {rss_before:.0f} MB before the {len(scores)} scores, "
        f"{rss_after:.0f} MB after (proxy candidates in between)")
  print(f"proxy / one-shot seconds per candidate = {ratio:.0f} "
        f"(medians: {proxy_stats['median_s']:.1f} s / "
        f"{oneshot_stats['median_s']:.3f} s)")

  record = {
      "benchmark": "supernet_speed",
      "dataset": "fashion_mnist",
      "train_size": data.train.size, "minival_size": data.minival.size,
      "global_params": PARAMS.get_config(),
      "proxy": dataclasses.asdict(PROXY),
      "teacher": {"name": teacher_info.name, "params": teacher_info.params,
                  "cached": teacher_info.cached},
      "supernet": {"params": trainer.supernet.count_params(),
                   "steps": args.supernet_steps,
                   "first_step_s": train_seconds[0], "step": train_stats},
      "step_ratio": steps,
      "oneshot": {"first_score_s": first.seconds, "score": oneshot_stats,
                  "seconds": score_seconds,
                  "first_after_proxy_s": after_proxy,
                  "tracing_count": scorer.tracing_count,
                  "config": scorer.config.get_config(),
                  "accuracies": [s.accuracy for s in scores]},
      "proxy_candidate": proxy_stats,
      "proxy_over_oneshot_median": ratio,
      "rss_mb": {"before_scoring": rss_before, "after_scoring": rss_after},
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "tensorflow": tf.__version__, "keras": keras.__version__},
      "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }
  os.makedirs(os.path.dirname(args.output), exist_ok=True)
  jsonl.write_json_atomic(args.output, record)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
