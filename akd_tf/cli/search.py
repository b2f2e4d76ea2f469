"""akd-search: search the MnasNet space for the student that distills best.

  akd-search --flagfile=flags/fashion_mnist_quick.cfg --model_dir=runs/quick

Trains (or reuses) the teacher, runs the controller's search with KD-trained
accuracy in the reward (--reward_accuracy=kd, AKD) or plain accuracy
(--reward_accuracy=ce, the NAS+KD baseline), then trains the winner by KD and
exports it under <model_dir>/best. Rerunning the same command resumes a
killed search where it stopped.
"""

import logging as std_logging
import sys

from absl import app
from absl import flags
from absl import logging

from akd_tf.cli import flag_configs

MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Where the search writes (and resumes) everything.")
EXECUTOR = flags.DEFINE_enum(
    "executor", "local", ["local"],
    "Where candidates are evaluated: local worker processes.")
flag_configs.define_data_flags()
flag_configs.define_student_flags()
flag_configs.define_teacher_flags()
flag_configs.define_search_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not MODEL_DIR.value:
    raise app.UsageError("--model_dir is required: where the search writes "
                         "its history, checkpoints and the best student")
  config = flag_configs.search_config_from_flags()
  from akd_tf import search  # pylint: disable=g-import-not-at-top
  try:
    result = search.run_search(config, MODEL_DIR.value, log=logging.info)
  except (ValueError, FileNotFoundError, ImportError) as error:
    logging.error("%s", error)
    print(f"akd-search: error: {error}", file=sys.stderr)
    return 1
  ok = sum(r.ok for r in result.records)
  logging.info("%d candidates (%d failed), %d evaluated in this run, %.1f min",
               len(result.records), len(result.records) - ok,
               result.evaluated, result.wall_seconds / 60)
  if result.best is None:
    print("akd-search: error: every candidate failed; see "
          f"{MODEL_DIR.value}/history.jsonl", file=sys.stderr)
    return 1
  if result.final is not None:
    logging.info("best student in %s: test accuracy %.4f, latency %.3f ms",
                 result.final.out_dir, result.final.test_accuracy,
                 result.final.latency_ms)
  return 0


def run():
  """Console-script entry point."""
  logging.set_verbosity(logging.INFO)
  # TensorFlow's own INFO lines (checkpoint sharding, SavedModel assets) and
  # retracing warnings would bury the one progress line per candidate.
  std_logging.getLogger("tensorflow").setLevel(std_logging.ERROR)
  app.run(main)


if __name__ == "__main__":
  run()
