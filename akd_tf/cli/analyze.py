"""akd-analyze: do searches with different teachers prefer different students?

  akd-analyze --model_dirs=runs/akd_resnet,runs/akd_cnn --top_k=5 \
      --output_dir=runs/analysis

Reads the searches' search_config.json and history.jsonl, groups them by
teacher (NAS searches, --reward_accuracy=ce, form the group 'nas'), takes the
--top_k distinct successful students of every search by reward and prints,
per teacher, the most frequent choice of every block and decision with its
share. With exactly two groups (or --teachers) it runs a permutation test of
whether they prefer different architectures (see
akd_tf.analysis.teacher_dependence for the statistic and what is permuted).
Writes analysis.json (the distributions and the test) and choices.png into
--output_dir.
"""

import json
import os

from absl import app
from absl import flags

from akd_tf.cli import entry

MODEL_DIRS = flags.DEFINE_list(
    "model_dirs", None, "Comma-separated --model_dir of akd-search runs.")
TOP_K = flags.DEFINE_integer(
    "top_k", 5, "Distinct successful students taken from every search.")
PERMUTATIONS = flags.DEFINE_integer(
    "permutations", 10000, "Random label permutations of the test.")
SEED = flags.DEFINE_integer("seed", 0, "Seed of the permutations.")
LEVEL = flags.DEFINE_enum(
    "permute", "auto", ["auto", "search", "candidate"],
    "What the test permutes: whole searches (needs several seeds per "
    "teacher), single top candidates, or auto: searches when that can reach "
    "p <= 0.05, else candidates.")
TEACHERS = flags.DEFINE_list(
    "teachers", None,
    "The two teacher labels (as printed) to test when more than two appear.")
OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "analysis",
    "Where analysis.json and choices.png are written.")

GROUPS = (entry.module_group("akd-analyze", globals()),)


def _load_runs(model_dirs):
  from akd_tf.analysis import teacher_dependence  # pylint: disable=g-import-not-at-top
  runs = []
  for model_dir in model_dirs:
    try:
      runs.append(teacher_dependence.load_search(model_dir))
    except (OSError, ValueError) as error:
      raise app.UsageError(f"--model_dirs: {error}") from None
  return runs


def _pair(groups):
  """The two group labels to test, or None when there is no pair."""
  if TEACHERS.value is None:
    return list(groups) if len(groups) == 2 else None
  if len(TEACHERS.value) != 2 or TEACHERS.value[0] == TEACHERS.value[1]:
    raise app.UsageError(f"--teachers={','.join(TEACHERS.value)}: give two "
                         "different teacher labels")
  missing = [t for t in TEACHERS.value if t not in groups]
  if missing:
    raise app.UsageError(
        f"--teachers: {', '.join(missing)} not among the searches' teachers "
        f"{list(groups)}")
  return list(TEACHERS.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not MODEL_DIRS.value:
    raise app.UsageError("--model_dirs is required: the akd-search "
                         "--model_dir of every search to analyze")
  for name, flag in (("top_k", TOP_K), ("permutations", PERMUTATIONS)):
    if flag.value < 1:
      raise app.UsageError(f"--{name}={flag.value} must be >= 1")
  # pylint: disable=g-import-not-at-top
  from akd_tf.analysis import plots
  from akd_tf.analysis import teacher_dependence
  # pylint: enable=g-import-not-at-top
  runs = _load_runs(MODEL_DIRS.value)
  groups = teacher_dependence.group_by_teacher(runs)
  pair = _pair(groups)
  try:
    distributions = teacher_dependence.choice_distributions(runs, TOP_K.value)
  except ValueError as error:
    raise app.UsageError(f"--model_dirs: {error}") from None
  for group in groups:
    print(teacher_dependence.format_top_choices(distributions, group))
    print()
  test = None
  if pair is None:
    print(f"no permutation test: {len(groups)} teacher(s) {list(groups)}; "
          "it needs two (choose them with --teachers)")
  else:
    try:
      test = teacher_dependence.permutation_test(
          groups[pair[0]], groups[pair[1]], TOP_K.value,
          num_permutations=PERMUTATIONS.value, seed=SEED.value,
          level=LEVEL.value)
    except ValueError as error:
      raise app.UsageError(f"--permute={LEVEL.value}: {error}") from None
    print(test.summary())
    print(_level_note(test))
  os.makedirs(OUTPUT_DIR.value, exist_ok=True)
  json_path = os.path.join(OUTPUT_DIR.value, "analysis.json")
  png_path = os.path.join(OUTPUT_DIR.value, "choices.png")
  with open(json_path, "w") as f:
    json.dump({"model_dirs": MODEL_DIRS.value, "distributions": distributions,
               "permutation_test": test.get_config() if test else None},
              f, indent=2)
  title = (f"top {TOP_K.value} candidates per search; "
           + (f"{test.level}-level test p = {test.p_value:.4f}" if test
              else "no test"))
  plots.plot_choice_distributions(distributions, png_path, title=title)
  print(f"wrote {json_path} and {png_path}")


def _level_note(test) -> str:
  if test.level == "search":
    return (f"permuted whole searches ({test.searches_a} vs "
            f"{test.searches_b}); the smallest possible p is "
            f"{test.min_p_value:.4f}")
  return (f"permuted single candidates of {test.searches_a} vs "
          f"{test.searches_b} search(es): candidates of one search are not "
          "independent, so p tests these searches, not the teacher in "
          "general; with 4 seeds per teacher a search-level test "
          "(--permute=search) can reach p < 0.05")


def run():
  """Console-script entry point."""
  entry.run(main, "akd-analyze", __doc__, GROUPS)


if __name__ == "__main__":
  run()
