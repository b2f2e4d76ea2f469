"""akd-latency: the TFLite latency of an architecture, as the reward sees it.

  akd-latency --preset=mobilenet_v2 --image_size=224 --json
  akd-latency --blocks=r1_k3_s11_e1_i32_o16,r2_k3_s22_e6_i16_o24 \
      --image_size=28 --channels=1 --num_classes=10 --quantize=int8
  akd-latency --preset=mnasnet_a1 --latency=command \
      --latency_command="adb push {tflite} /data/local/tmp/m.tflite && \
adb shell /data/local/tmp/benchmark_model --graph=/data/local/tmp/m.tflite \
--num_threads=1"
  akd-latency --preset=mnasnet_a1 --latency=lut --lut_path=/tmp/lut.json

--latency=measured converts the model and times it here with the LiteRT
interpreter; lut predicts it from per-part latencies (measuring missing
parts into --lut_path); command runs --latency_command and parses
benchmark_model's output. With --json it prints one JSON line with
latency_ms (the statistic the reward uses), median_ms, min_ms, max_ms, cv,
mean_ms, samples, source, cached, seconds, conversions and the architecture.
"""

from absl import app
from absl import flags
from absl import logging

from akd_tf.cli import common
from akd_tf.cli import entry

LATENCY = flags.DEFINE_enum(
    "latency", "measured", ["measured", "lut", "command"],
    "measured: convert and time here; lut: predict from per-part latencies; "
    "command: time with --latency_command (e.g. on a phone).")
LATENCY_COMMAND = flags.DEFINE_string(
    "latency_command", None,
    "Command that times a .tflite file and prints benchmark_model's output; "
    "{tflite} is replaced by the model's path.")
THREADS = flags.DEFINE_integer("threads", 1, "Interpreter threads.")
WARMUP = flags.DEFINE_integer("warmup", 10, "Untimed invokes before timing.")
RUNS = flags.DEFINE_integer("runs", 20, "Timed invokes per repeat.")
REPEATS = flags.DEFINE_integer("repeats", 20, "Rounds of --runs invokes.")
PAUSE_MS = flags.DEFINE_float("pause_ms", 20.0, "Sleep between rounds.")
STATISTIC = flags.DEFINE_enum(
    "statistic", "min", ["min", "p10", "median", "mean"],
    "Statistic of the timed invokes reported as latency_ms.")
QUANTIZE = flags.DEFINE_enum(
    "quantize", "none", ["none", "int8"],
    "none: float32; int8: full-integer post-training quantization.")
LATENCY_CACHE = flags.DEFINE_string(
    "latency_cache", None,
    "JSON-lines cache of measured latencies; a student in it is not "
    "measured again. Default: no cache.")
LUT_PATH = flags.DEFINE_string(
    "lut_path", None, "Latency table of --latency=lut (created if missing).")
JSON = flags.DEFINE_bool("json", False, "Print one JSON line.")

GROUPS = (entry.module_group("akd-latency", globals()),
          entry.module_group("architecture", vars(common)))


def latency_config_from_flags():
  """Returns the `timing.LatencyConfig` the flags describe.

  Raises:
    app.UsageError: a value is out of range; the message names the flag.
  """
  from akd_tf.latency import timing  # pylint: disable=g-import-not-at-top
  try:
    return timing.LatencyConfig(
        threads=THREADS.value, warmup=WARMUP.value, runs=RUNS.value,
        repeats=REPEATS.value, pause_ms=PAUSE_MS.value,
        statistic=STATISTIC.value,
        quantize=QUANTIZE.value)
  except ValueError as error:
    name = str(error).split(":", 1)[1].split("=")[0].strip()
    raise app.UsageError(f"--{name}: {error}") from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  spec = common.arch_spec_from_flags()
  if LATENCY.value == "command" and LATENCY_COMMAND.value is None:
    raise app.UsageError("--latency=command needs --latency_command")
  # pylint: disable=g-import-not-at-top
  from akd_tf.latency import errors
  from akd_tf.latency import measurer as measurer_lib
  # pylint: enable=g-import-not-at-top
  config = latency_config_from_flags()
  try:
    measurer = measurer_lib.LatencyMeasurer(
        LATENCY.value, config, cache_path=LATENCY_CACHE.value,
        lut_path=LUT_PATH.value, command=LATENCY_COMMAND.value)
  except ValueError as error:
    flag = ("lut_path" if "table" in str(error) else "latency_command")
    raise app.UsageError(f"--{flag}: {error}") from None
  try:
    result = measurer.measure(spec)
  except errors.LatencyError as error:
    logging.error("%s", error)
    raise SystemExit(1) from None
  record = result.get_config()
  record.update(conversions=measurer.num_conversions,
                threads=config.threads, statistic=config.statistic,
                quantize=config.quantize, **spec.get_config())
  if JSON.value:
    common.print_json_line(record)
    return
  print(f"input shape      {tuple(spec.input_shape)}")
  print(f"source           {result.source}"
        f"{' (cached)' if result.cached else ''}")
  print(f"latency_ms       {result.latency_ms:.4f}  ({config.statistic}, "
        f"{config.threads} thread(s), {config.quantize})")
  for key in ("median_ms", "min_ms", "max_ms", "mean_ms", "cv"):
    if record[key] is not None:
      print(f"{key:<16} {record[key]:.4f}")
  print(f"seconds          {result.seconds:.2f}")


def run():
  """Console-script entry point."""
  entry.run(main, "akd-latency", __doc__, GROUPS)


if __name__ == "__main__":
  run()
