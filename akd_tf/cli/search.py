"""akd-search: search the MnasNet space for the student that distills best.

  akd-search --preset=fashion_mnist_quick --model_dir=runs/quick
  akd-search --flagfile=my_search.cfg --model_dir=runs/mine

Trains (or reuses) the teacher, runs the controller's search with KD-trained
accuracy in the reward (--reward_accuracy=kd, AKD) or plain accuracy
(--reward_accuracy=ce, the NAS+KD baseline), then trains the winner by KD and
exports it under <model_dir>/best, and prints the --top_k candidates of
highest reward as a table on stdout. Rerunning the same command resumes a
killed search where it stopped, and a killed final training from its last
finished epoch. --strategy distributes the final training (mirrored: all
local GPUs). --executor=ray evaluates candidates as Ray tasks (on a cluster
with --ray_address=auto) instead of local processes.
"""

import logging as std_logging
import sys
import time

from absl import app
from absl import flags
from absl import logging

from akd_tf.cli import entry
from akd_tf.cli import flag_configs
from akd_tf.cli import presets
from akd_tf.distill import training
from akd_tf.nas import controller as controller_lib
from akd_tf.nas import report

MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Where the search writes (and resumes) everything.")
PRESET = flags.DEFINE_enum(
    "preset", None, presets.names(),
    "A search preset shipped with akd_tf (the repository's flags/NAME.cfg): "
    "the same as --flagfile=<its installed path>, so flags after it "
    "override it. Command line only.")
TOP_K = flags.DEFINE_integer(
    "top_k", 5, "Candidates of highest reward listed in the table printed "
    "at the end (0: no table).", lower_bound=0)
GROUPS = (
    entry.module_group("akd-search", globals()),
    entry.defined_group("data", flag_configs.define_data_flags),
    entry.defined_group("teacher", flag_configs.define_teacher_flags),
    entry.defined_group("students", flag_configs.define_student_flags),
    entry.defined_group("controller", flag_configs.define_controller_flags),
    entry.defined_group("reward", flag_configs.define_reward_flags),
    entry.defined_group("training", flag_configs.define_training_flags),
    entry.defined_group("one-shot proxy", flag_configs.define_oneshot_flags),
    entry.defined_group("latency", flag_configs.define_latency_flags),
    entry.defined_group("workers and export", flag_configs.define_run_flags),
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if PRESET.value is not None:
    raise app.UsageError(
        f"--preset={PRESET.value} works on the command line only; inside a "
        f"flagfile write --flagfile={presets.path(PRESET.value)}")
  if not MODEL_DIR.value:
    raise app.UsageError("--model_dir is required: where the search writes "
                         "its history, checkpoints and the best student")
  config = flag_configs.search_config_from_flags()
  if flags.FLAGS.logical_cpus:
    training.split_cpu(flags.FLAGS.logical_cpus)
  if config.controller == "reinforce":
    warning = controller_lib.budget_warning(config.num_candidates,
                                             config.candidates_per_step)
    if warning:
      _progress(f"warning: --{warning}")
  from akd_tf.deploy import pipeline  # pylint: disable=g-import-not-at-top
  try:
    result = pipeline.search_and_export(config, MODEL_DIR.value,
                                        log=_progress)
  except (ValueError, FileNotFoundError, ImportError) as error:
    print(f"akd-search: error: {error}", file=sys.stderr)
    return 1
  if TOP_K.value:
    print(report.top_table(result.records, TOP_K.value), flush=True)
  ok = sum(r.ok for r in result.records)
  _progress(f"{len(result.records)} candidates ({len(result.records) - ok} "
            f"failed), {result.evaluated} evaluated in this run, "
            f"{result.wall_seconds / 60:.1f} min")
  _progress("phases: " + ", ".join(
      f"{name} {seconds:.1f} s"
      for name, seconds in sorted(result.phase_seconds.items(),
                                  key=lambda item: -item[1])))
  if result.best is None:
    print("akd-search: error: every candidate failed; see "
          f"{MODEL_DIR.value}/history.jsonl", file=sys.stderr)
    return 1
  if result.final is not None:
    _progress(f"best student in {result.final.out_dir}: test accuracy "
              f"{result.final.test_accuracy:.4f}, latency "
              f"{result.final.latency_ms:.3f} ms")
  return 0


def _progress(message: str) -> None:
  """One progress line on stderr, time-stamped."""
  print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def run():
  """Console-script entry point."""
  # TensorFlow's own INFO lines (checkpoint sharding, SavedModel assets) and
  # retracing warnings would bury the one progress line per candidate.
  logging.set_verbosity(logging.WARNING)
  std_logging.getLogger("tensorflow").setLevel(std_logging.ERROR)
  entry.run(main, "akd-search", __doc__, GROUPS,
            argv=presets.expand_preset_flags(sys.argv))


if __name__ == "__main__":
  run()
