"""Lookup-table latency vs measured latency, and cross-process repeatability.

For `--students` random students of the MnasNet space at the search's input
size (default 28x28x1, 10 classes, BN momentum 0.9) the whole student is
converted and timed with LiteRT, and its latency is predicted from a table
of per-part latencies (`akd_tf.latency.lut.LatencyLUT`) whose scale was
fitted on `--calibration` other students. Printed and written to
benchmarks/results/latency.json: Spearman rank correlation, mean absolute
percentage error, the fraction within +-10%, the same figures for timing the
same .tflite twice (the noise floor), and seconds per measurement vs per
prediction. Predictions are compared with one timing and with the better of
two timings a few seconds apart (a less noisy reference), and apart for the
students whose float weights fit half the last-level cache (the others
`LatencyMeasurer` measures instead of predicting). Then
`akd-latency --preset=mobilenet_v2 --image_size=224 --json` runs as
`--processes` separate processes: their latency_ms must agree within 8%.

Where a search's recorded latency used to vary (section 'spread'): a few
quick-preset students are timed by `akd-latency` in separate processes with
the quick preset's former protocol (3 rounds of 30 invokes, about 60 ms) and
with the search's protocol (`flags/fashion_mnist_quick.cfg`), each on the
otherwise idle machine and beside a training process (as when a worker timed
its candidate while another worker trained); printed as max/min over the
processes per student.

Whether the search records repeatable latencies (section 'searches'): three
separate quick searches with the same seed (2 workers, real training), each
with its own latency cache; for every student they share, the max/min of the
latency each search recorded: `recorded latency max/min: median X, worst Y`
(targets X <= 1.05, Y <= 1.10), written as `recorded_latency_max_over_min`.

  .venv/bin/python benchmarks/latency.py
  .venv/bin/python benchmarks/latency.py --sections=searches
  .venv/bin/python benchmarks/latency.py --image_size=32 --channels=3 \
      --sections=lut --output=/tmp/latency32.json
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from scipy import stats as scipy_stats

from akd_tf.latency import cache
from akd_tf.latency import convert
from akd_tf.latency import lut
from akd_tf.latency import timing
from akd_tf.nas import history
from akd_tf.space import arch
from akd_tf.space import builder
from akd_tf.space import search_space

_STUDENTS = flags.DEFINE_integer("students", 50, "Test students.")
_CALIBRATION = flags.DEFINE_integer(
    "calibration", 10, "Students measured whole to fit the table.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 28, "Input height/width.")
_CHANNELS = flags.DEFINE_integer("channels", 1, "Input channels.")
_PROCESSES = flags.DEFINE_integer(
    "processes", 5, "akd-latency processes of the repeatability check "
    "(0: skip it).")
_SECTIONS = flags.DEFINE_list(
    "sections", ["lut", "processes", "spread", "searches"],
    "What to run: lut (table vs measurement), processes (akd-latency "
    "repeatability), spread (sources of a recorded latency's spread), "
    "searches (recorded latencies of repeated searches).")
_SEARCHES = flags.DEFINE_integer("searches", 3, "Quick searches to repeat.")
_SPREAD_STUDENTS = flags.DEFINE_integer(
    "spread_students", 4, "Students of the 'spread' section.")
_WORK_DIR = flags.DEFINE_string(
    "work_dir", None, "Where searches and students are written (default: a "
    "new temporary directory).")
_OUTPUT = flags.DEFINE_string(
    "output", os.path.join(os.path.dirname(__file__), "results",
                           "latency.json"), "JSON results file.")

_CALIBRATION_SEED = 100_000
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_QUICK_PRESET = os.path.join(_ROOT, "flags", "fashion_mnist_quick.cfg")
# The quick preset's protocol before the search timed in the driver.
_FORMER_PROTOCOL = ("--runs=30", "--repeats=3")


def _spec(space, seed):
  return arch.ArchSpec(
      space.decode(space.sample(seed)),
      arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9),
      (_IMAGE_SIZE.value, _IMAGE_SIZE.value, _CHANNELS.value))


def _weight_mb(model):
  return model.count_params() * 4 / 2**20


def _errors(predicted, measured):
  predicted, measured = np.asarray(predicted), np.asarray(measured)
  relative = predicted / measured - 1.0
  return {
      "spearman": float(scipy_stats.spearmanr(predicted, measured)[0]),
      "mape_percent": float(100 * np.mean(np.abs(relative))),
      "within_10_percent": float(np.mean(np.abs(relative) <= 0.10)),
      "max_abs_error_percent": float(100 * np.max(np.abs(relative))),
  }


class _PartTimer:
  """Converts and times table parts, keeping count and wall time."""

  def __init__(self, config):
    self.config = config
    self.count = 0
    self.seconds = 0.0

  def __call__(self, part):
    start = time.perf_counter()
    ms = timing.measure_model(part, self.config).latency_ms
    self.seconds += time.perf_counter() - start
    self.count += 1
    return ms


def lut_vs_measured(config):
  """Fits the table on calibration students, then compares on test ones."""
  space = search_space.SearchSpace()
  meta = dict(config.timing_settings(), machine=cache.machine_id(),
              software=cache.software_id())
  table = lut.LatencyLUT(meta)
  timer = _PartTimer(config)
  limit_mb = lut.last_level_cache_mb() / 2
  seed = _CALIBRATION_SEED
  while len(table.calibration) < _CALIBRATION.value:
    spec = _spec(space, seed)
    seed += 1
    model = builder.build_from_spec(spec)
    if _weight_mb(model) > limit_mb:
      continue  # As LatencyMeasurer: such students are measured, not fitted.
    table.fill(spec, timer, model)
    tflite = convert.convert_to_tflite(model)
    table.add_calibration(spec, min(  # As LatencyMeasurer: best of two.
        timing.time_tflite(tflite, config).latency_ms for _ in range(2)))
  rows = []
  for seed in range(_STUDENTS.value):
    spec = _spec(space, seed)
    model = builder.build_from_spec(spec)
    start = time.perf_counter()
    tflite = convert.convert_to_tflite(model)
    convert_s = time.perf_counter() - start
    first = timing.time_tflite(tflite, config)
    measure_s = time.perf_counter() - start
    table.fill(spec, timer, model)
    start = time.perf_counter()
    predicted = table.predict(spec)
    first_predict_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(1000):
      table.predict(spec)
    predict_s = (time.perf_counter() - start) / 1000
    again = timing.time_tflite(tflite, config)
    rows.append({
        "seed": seed, "blocks": list(spec.block_strings),
        "params": int(model.count_params()),
        "over_cache_limit": bool(_weight_mb(model) > limit_mb),
        "measured_ms": first.latency_ms, "median_ms": first.median_ms,
        "cv": first.cv, "remeasured_ms": again.latency_ms,
        "predicted_ms": predicted, "convert_s": convert_s,
        "measure_s": measure_s, "first_predict_s": first_predict_s,
        "predict_s": predict_s})
    print(f"student {seed:3d}: measured {first.latency_ms:.4f} ms, "
          f"predicted {predicted:.4f} ms "
          f"({100 * (predicted / first.latency_ms - 1):+.1f}%), "
          f"{model.count_params() / 1e6:.2f}M params", flush=True)
  first = [r["measured_ms"] for r in rows]
  best = [min(r["measured_ms"], r["remeasured_ms"]) for r in rows]
  under = [i for i, r in enumerate(rows) if not r["over_cache_limit"]]
  predicted = [r["predicted_ms"] for r in rows]
  return {
      "lut_vs_one_timing": _errors(predicted, first),
      "lut_vs_best_of_two": _errors(predicted, best),
      "lut_within_cache_limit_vs_best_of_two": _errors(
          [predicted[i] for i in under], [best[i] for i in under]),
      "noise_floor": _errors([r["remeasured_ms"] for r in rows], first),
      "cache_limit_mb": limit_mb,
      "fraction_over_cache_limit": 1 - len(under) / len(rows),
      "seconds_per_measurement": float(np.mean([r["measure_s"]
                                                for r in rows])),
      "seconds_per_conversion": float(np.mean([r["convert_s"]
                                               for r in rows])),
      "seconds_per_prediction": float(np.mean([r["predict_s"]
                                               for r in rows])),
      "seconds_per_first_prediction": float(np.mean(
          [r["first_predict_s"] for r in rows])),
      "table": {"entries": len(table.entries),
                "parts_measured": timer.count,
                "seconds_per_part": timer.seconds / max(timer.count, 1),
                "overhead_ms": table.overhead_ms, "scale": table.scale,
                "calibration_students": _CALIBRATION.value},
      "students": rows,
  }


def repeatability(processes):
  """Runs akd-latency for MobileNetV2 at 224 in separate processes."""
  command = [sys.executable, "-m", "akd_tf.cli.latency",
             "--preset=mobilenet_v2", "--image_size=224", "--json"]
  runs = []
  for _ in range(processes):
    result = subprocess.run(command, capture_output=True, text=True,
                            check=True, timeout=600)
    record = json.loads(result.stdout.strip().splitlines()[-1])
    runs.append({k: record[k] for k in ("latency_ms", "median_ms", "min_ms",
                                        "max_ms", "cv", "seconds")})
    print(f"process {len(runs)}: latency_ms {record['latency_ms']:.3f}, "
          f"median_ms {record['median_ms']:.3f}, cv {record['cv']:.3f}",
          flush=True)
  values = [r["latency_ms"] for r in runs]
  medians = [r["median_ms"] for r in runs]
  return {"command": " ".join(command[2:]), "runs": runs,
          "latency_ratio": max(values) / min(values),
          "median_ratio": max(medians) / min(medians)}


def _preset_flags(names):
  """{flag: value} of the quick preset for the flags in `names`."""
  values = {}
  with open(_QUICK_PRESET) as f:
    for line in f:
      name, _, value = line.strip().lstrip("-").partition("=")
      if name in names:
        values[name] = value
  return values


def _search_protocol():
  preset = _preset_flags(("latency_runs", "latency_repeats"))
  return (f"--runs={preset['latency_runs']}",
          f"--repeats={preset['latency_repeats']}")


def _ratio_summary(ratios):
  return {"median": float(np.median(ratios)), "worst": float(np.max(ratios)),
          "students": len(ratios)}


def _start_trainer(work_dir):
  """A training process beside the timing (a worker training a candidate)."""
  command = [sys.executable, "-m", "akd_tf.cli.train", "--role=student",
             "--dataset=fashion_mnist", "--train_size=20000", "--kd_alpha=0",
             "--preset=mobilenet_v2", "--width_multiplier=0.5",
             "--bn_momentum=0.9", "--epochs=1000", "--batch_size=64",
             f"--model_dir={os.path.join(work_dir, 'trainer')}"]
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL,
                             start_new_session=True)
  time.sleep(25.0)  # Past TensorFlow's import and tracing, into training.
  if process.poll() is not None:
    raise RuntimeError(f"the trainer exited with {process.returncode}: "
                       f"{' '.join(command)}")
  return process


def spread(work_dir, processes=3):
  """Max/min over processes of students' latencies, per protocol and load."""
  space = search_space.SearchSpace()
  head = int(_preset_flags(("head_size",))["head_size"])
  paths = []
  for seed in range(_SPREAD_STUDENTS.value):
    spec = arch.ArchSpec(
        space.decode(space.sample(seed)),
        arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                          head_size=head), (28, 28, 1))
    paths.append(os.path.join(work_dir, f"student{seed}.json"))
    spec.to_json(paths[-1])
  protocols = {"former (30 x 3)": _FORMER_PROTOCOL,
               "search": _search_protocol()}
  results = {}
  for load in ("idle", "beside training"):
    trainer = _start_trainer(work_dir) if load != "idle" else None
    try:
      for name, protocol in protocols.items():
        times = [[_akd_latency(["--arch_json=" + path, *protocol])
                  for _ in range(processes)] for path in paths]
        ratios = [max(t) / min(t) for t in times]
        results[f"{load}, {name}"] = dict(_ratio_summary(ratios),
                                          latencies_ms=times)
        print(f"{load:16s} {name:16s} max/min over {processes} processes: "
              f"median {np.median(ratios):.3f}, worst {max(ratios):.3f}; "
              "median latency "
              f"{np.median([np.median(t) for t in times]):.4f} ms",
              flush=True)
    finally:
      if trainer is not None:
        os.killpg(trainer.pid, signal.SIGKILL)
        trainer.wait()
  return {"protocols": {k: list(v) for k, v in protocols.items()},
          "processes": processes, "conditions": results}


def _akd_latency(args):
  command = [sys.executable, "-m", "akd_tf.cli.latency", "--json", *args]
  result = subprocess.run(command, capture_output=True, text=True,
                          check=True, timeout=600)
  return json.loads(result.stdout.strip().splitlines()[-1])["latency_ms"]


def searches(work_dir):
  """Recorded latencies of repeated same-seed quick searches."""
  recorded = []
  for i in range(_SEARCHES.value):
    model_dir = os.path.join(work_dir, f"search{i}")
    command = [sys.executable, "-m", "akd_tf.cli.search",
               f"--flagfile={_QUICK_PRESET}", f"--model_dir={model_dir}",
               "--num_workers=2", "--threads_per_worker=1",
               "--final_epochs=1", "--noexport"]
    start = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=3600)
    records = history.History(os.path.join(model_dir,
                                           "history.jsonl")).read()
    first = {}
    for record in records:
      if record.latency_ms is not None:
        first.setdefault(record.blocks, record.latency_ms)
    recorded.append(first)
    print(f"search {i}: {len(records)} candidates, {len(first)} timed, "
          f"{(time.time() - start) / 60:.1f} min", flush=True)
  shared = set.intersection(*(set(r) for r in recorded))
  ratios = [max(r[b] for r in recorded) / min(r[b] for r in recorded)
            for b in sorted(shared)]
  if not ratios:
    raise RuntimeError("the searches share no timed student")
  print(f"recorded latency max/min: median {np.median(ratios):.3f}, worst "
        f"{max(ratios):.3f} ({len(ratios)} students in all {len(recorded)} "
        "searches; targets <= 1.05 and <= 1.10)", flush=True)
  return dict(_ratio_summary(ratios), searches=len(recorded),
              protocol=list(_search_protocol()),
              latencies_ms=[[r[b] for r in recorded] for b in sorted(shared)])


def main(argv):
  del argv
  sections = set(_SECTIONS.value)
  unknown = sections - {"lut", "processes", "spread", "searches"}
  if unknown:
    raise app.UsageError(f"--sections: unknown {sorted(unknown)}")
  work_dir = _WORK_DIR.value or tempfile.mkdtemp(prefix="latency_bench_")
  os.makedirs(work_dir, exist_ok=True)
  config = timing.LatencyConfig()
  results = {}
  if os.path.exists(_OUTPUT.value):
    with open(_OUTPUT.value) as f:
      results = json.load(f)  # Sections not run keep their last figures.
  results.update({"machine": cache.machine_id(),
                  "software": cache.software_id(),
                  "config": config.get_config(),
                  "input_shape": [_IMAGE_SIZE.value, _IMAGE_SIZE.value,
                                  _CHANNELS.value]})
  if "spread" in sections:
    results["spread"] = spread(work_dir)
  if "searches" in sections:
    results["recorded_latency_max_over_min"] = searches(work_dir)
  if "lut" in sections:
    results.update(lut_vs_measured(config))
  if "processes" in sections and _PROCESSES.value:
    results["repeatability"] = repeatability(_PROCESSES.value)
  if "lut" in sections:
    _print_lut_table(results)
  if "repeatability" in results and "processes" in sections:
    check = results["repeatability"]
    print(f"akd-latency x{_PROCESSES.value} (mobilenet_v2, 224): latency_ms "
          f"max/min {check['latency_ratio']:.3f} (target <= 1.08), medians "
          f"max/min {check['median_ratio']:.3f}")
  os.makedirs(os.path.dirname(_OUTPUT.value), exist_ok=True)
  with open(_OUTPUT.value, "w") as f:
    json.dump(results, f, indent=1)
    f.write("\n")
  print(f"wrote {_OUTPUT.value}")


def _print_lut_table(results):
  """The table-vs-measurement figures of section 'lut'."""
  columns = (("lut_vs_one_timing", "vs 1 timing"),
             ("lut_vs_best_of_two", "vs best of 2"),
             ("lut_within_cache_limit_vs_best_of_two", "<=limit, 2"),
             ("noise_floor", "re-timing"))
  print(f"\nLUT vs measured, {_STUDENTS.value} students at "
        f"{results['input_shape']}: against one timing, against the better of"
        " two timings of the same .tflite a few seconds apart, the same for "
        f"the {1 - results['fraction_over_cache_limit']:.0%} of students with "
        f"weights under {results['cache_limit_mb']:.0f} MiB (LatencyMeasurer "
        "measures the others), and the second timing against the first")
  print(f"{'':16}" + "".join(f"{label:>14}" for _, label in columns) +
        f"{'target':>10}")
  for key, label, target in (("spearman", "Spearman", ">= 0.95"),
                             ("mape_percent", "MAPE %", "<= 10"),
                             ("within_10_percent", "within +-10%", ">= 0.90"),
                             ("max_abs_error_percent", "max |error| %", "")):
    print(f"{label:16}" + "".join(f"{results[c][key]:>14.3f}"
                                  for c, _ in columns) + f"{target:>10}")
  print(f"seconds per measurement  {results['seconds_per_measurement']:.3f} "
        f"(conversion {results['seconds_per_conversion']:.3f})")
  print(f"seconds per prediction   {results['seconds_per_prediction']:.2e} "
        f"(first call {results['seconds_per_first_prediction']:.2e})")
  table = results["table"]
  print(f"table: {table['entries']} entries, {table['parts_measured']} parts "
        f"measured at {table['seconds_per_part']:.2f} s, scale "
        f"{table['scale']:.3f}, invoke overhead {table['overhead_ms']:.4f} ms")


if __name__ == "__main__":
  app.run(main)
