"""Cost of a distillation training step against a plain one, on Fashion-MNIST.

  python benchmarks/kd_step.py [--batch_size=128] [--steps=4] [--repeats=30]

Times three training steps of the same student (same architecture, same
initial weights, same real Fashion-MNIST batches):
  plain      cross-entropy only (Distiller with alpha = 0, no teacher)
  kd_online  KD with the teacher run forward on every batch
  kd_cached  KD with the teacher's logits computed once and fed with the batch

Each step is the Distiller's own `train_step` in a `tf.function`, as `fit`
runs it. The variants are interleaved in one process (one block of `steps`
steps each per repeat, in a rotating order), since this machine shares its
host and timings drift; the table reports per-step minimum, 10th percentile
and median over the repeats, and the ratios of the low order statistics. The
teacher is a built-in one (untrained: its weights do not change its cost).

Prints the line `cached KD step / plain step = X.XX` (from the minima) and
writes benchmarks/results/kd_step.json.
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
from akd_tf.distill import data as data_lib  # pylint: disable=g-import-not-at-top
from akd_tf.distill import distiller as distiller_lib  # pylint: disable=g-import-not-at-top
from akd_tf.distill import teacher as teacher_lib  # pylint: disable=g-import-not-at-top
from akd_tf.space import builder  # pylint: disable=g-import-not-at-top
from akd_tf.space import profile  # pylint: disable=g-import-not-at-top

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "kd_step.json")
VARIANTS = ("plain", "kd_online", "kd_cached")


def small_student(input_shape, num_classes) -> keras.Model:
  """MobileNetV2 blocks at width 0.35, stem stride 1: 273K params at 28x28."""
  params = builder.preset_global_params(
      "mobilenet_v2", num_classes=num_classes, depth_multiplier=0.35,
      head_size=256, stem_strides=1, batch_norm_momentum=0.9)
  return builder.build_student(builder.preset_block_strings("mobilenet_v2"),
                               params, input_shape)


def _step_fn(variant, student_weights, teacher, data):
  student = small_student(data.input_shape, data.num_classes)
  student.set_weights(student_weights)
  distiller = distiller_lib.Distiller(
      student, teacher=teacher if variant == "kd_online" else None,
      alpha=0.0 if variant == "plain" else 0.9, temperature=4.0)
  distiller.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
  distiller.optimizer.build(distiller.trainable_variables)
  return tf.function(distiller.train_step, jit_compile=False)


def _batches(variant, data, logits, batch_size, steps):
  split = data.train
  out = []
  for i in range(steps):
    sl = slice(i * batch_size, (i + 1) * batch_size)
    x = tf.constant(split.images[sl])
    y = tf.constant(split.labels[sl])
    if variant == "kd_cached":
      x = {data_lib.IMAGES_KEY: x,
           data_lib.TEACHER_LOGITS_KEY: tf.constant(logits[sl])}
    out.append((x, y))
  return out


def _stats(seconds_per_step):
  values = np.asarray(seconds_per_step) * 1000.0
  return {"min_ms": float(values.min()),
          "p10_ms": float(np.percentile(values, 10)),
          "median_ms": float(np.median(values)),
          "repeats_ms": [round(float(v), 3) for v in values]}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=4,
                      help="steps per timed block")
  parser.add_argument("--repeats", type=int, default=30)
  parser.add_argument("--teacher", default="resnet_wide",
                      choices=teacher_lib.TEACHERS)
  parser.add_argument("--output", default=RESULTS)
  args = parser.parse_args()

  data = data_lib.load_data(data_lib.DataConfig(
      "fashion_mnist", train_size=args.batch_size * args.steps,
      minival_size=1000, test_size=1))
  keras.utils.set_random_seed(0)
  teacher = teacher_lib.build_teacher(args.teacher, data.input_shape,
                                      data.num_classes)
  logits = teacher_lib.teacher_logits(teacher, data.train)
  student = small_student(data.input_shape, data.num_classes)
  weights = student.get_weights()
  size = profile.profile_model(student)
  steps = {v: _step_fn(v, weights, teacher, data) for v in VARIANTS}
  batches = {v: _batches(v, data, logits, args.batch_size, args.steps)
             for v in VARIANTS}
  for v in VARIANTS:  # Trace and warm up.
    for batch in batches[v][:2]:
      steps[v](batch)["loss"].numpy()
  times = {v: [] for v in VARIANTS}
  for r in range(args.repeats):
    for k in range(len(VARIANTS)):
      v = VARIANTS[(r + k) % len(VARIANTS)]
      start = time.perf_counter()
      for batch in batches[v]:
        logs = steps[v](batch)
      float(logs["loss"])  # Waits for the last step.
      times[v].append((time.perf_counter() - start) / args.steps)
  stats = {v: _stats(times[v]) for v in VARIANTS}
  ratios = {
      "cached_over_plain_min": stats["kd_cached"]["min_ms"] /
                               stats["plain"]["min_ms"],
      "cached_over_plain_p10": stats["kd_cached"]["p10_ms"] /
                               stats["plain"]["p10_ms"],
      "online_over_plain_min": stats["kd_online"]["min_ms"] /
                               stats["plain"]["min_ms"],
      "online_over_plain_p10": stats["kd_online"]["p10_ms"] /
                               stats["plain"]["p10_ms"],
  }

  print(f"Fashion-MNIST 28x28x1, batch {args.batch_size}, {args.steps} "
        f"steps x {args.repeats} repeats, interleaved; student "
        f"{size.params:,} params / {size.macs / 1e6:.1f}M MACs, teacher "
        f"{args.teacher} {teacher.count_params():,} params")
  print(f"{'variant':<10} {'min ms':>8} {'p10 ms':>8} {'median ms':>10} "
        f"{'img/s (min)':>12}")
  for v in VARIANTS:
    s = stats[v]
    print(f"{v:<10} {s['min_ms']:8.1f} {s['p10_ms']:8.1f} "
          f"{s['median_ms']:10.1f} {args.batch_size / s['min_ms'] * 1e3:12.0f}")
  print(f"cached KD step / plain step = {ratios['cached_over_plain_min']:.2f}")
  print(f"cached KD step / plain step (10th percentile) = "
        f"{ratios['cached_over_plain_p10']:.2f}")
  print(f"online KD step / plain step = {ratios['online_over_plain_min']:.2f}"
        f" (10th percentile {ratios['online_over_plain_p10']:.2f})")

  record = {
      "benchmark": "kd_step",
      "dataset": "fashion_mnist",
      "batch_size": args.batch_size,
      "steps_per_repeat": args.steps,
      "repeats": args.repeats,
      "student": {"params": size.params, "macs": size.macs,
                  "preset": "mobilenet_v2", "depth_multiplier": 0.35,
                  "head_size": 256, "stem_strides": 1},
      "teacher": {"name": args.teacher, "params": teacher.count_params()},
      "variants": stats,
      "ratios": {k: round(v, 4) for k, v in ratios.items()},
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "tensorflow": tf.__version__, "keras": keras.__version__},
      "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }
  os.makedirs(os.path.dirname(args.output), exist_ok=True)
  jsonl.write_json_atomic(args.output, record)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
