"""The Python API: a whole search in one call, from a notebook or a script.

  import akd_tf
  result = akd_tf.search(teacher=my_keras_model, dataset="fashion_mnist",
                         target_ms=0.15, num_candidates=50,
                         model_dir="runs/mine")
  result.student      # the winner after its final training (keras.Model)
  result.metrics      # its accuracies, latency, reward, block strings, files
  result.history      # every candidate's CandidateRecord, in search order

`search` is `akd-search`: its keyword arguments are akd-search's flags
(`proxy_epochs=2`, `reward="hard"`, `num_workers=2`, ...), read by the same
code, so every default, check and error message is the command line's
(errors name a setting as its flag, `--num_candidates=0: ...`). The teacher
may also be a `keras.Model` in memory: it is saved once to
`<model_dir>/teacher_<hash of its weights>.keras`, which the worker
processes load and by whose weights the teacher's cached logits are keyed;
a different teacher is a different file, so a `model_dir` holding a search
from another teacher refuses to resume with it. Running the same call again
resumes a killed search, as rerunning akd-search does.

Public names: SearchOutcome, search.
"""

import dataclasses
import difflib
import os
import sys
import time
from typing import Any, Callable, Dict, Optional, Tuple, Union

from absl import app
from absl import flags
import keras

from akd_tf.cli import flag_configs
from akd_tf.cli import presets
from akd_tf.deploy import finalize
from akd_tf.deploy import pipeline
from akd_tf.distill import teacher as teacher_lib
from akd_tf.distill import training
from akd_tf.nas import history

__all__ = ["SearchOutcome", "search"]

# What the winner's folder may hold -> the `SearchOutcome.metrics["files"]`
# key of each.
_OUTPUT_FILES = {"arch_json": "arch.json", "student_keras": "student.keras",
                 "metrics_json": "metrics.json", "saved_model": "saved_model",
                 "tflite_float": "student_float.tflite",
                 "export_report": "export_report.json"}


@dataclasses.dataclass(frozen=True)
class SearchOutcome:
  """What `search` returns.

  Attributes:
    student: The winner after its final KD training, loaded from
      `<model_dir>/best/student.keras` (not compiled).
    metrics: The winner's figures: 'blocks' (its block strings), 'accuracy',
      'latency_ms' and 'reward' of the search (mini-val accuracy of the
      proxy training; the latency the reward used), 'params', 'macs',
      'minival_accuracy' and 'test_accuracy' after the final training,
      'exported_latency_ms' (the exported float TFLite's; NaN without
      export) and 'files' (name -> path of what `best/` holds: arch_json,
      student_keras, metrics_json and, when exported, saved_model,
      tflite_float, export_report).
    history: Every evaluation of the search, failed ones included.
    best: The winner's record in `history`.
    final: The winner's final training (`finalize.FinalResult`).
    model_dir: Where the search wrote everything.
  """

  student: keras.Model
  metrics: Dict[str, Any]
  history: Tuple[history.CandidateRecord, ...]
  best: history.CandidateRecord
  final: finalize.FinalResult
  model_dir: str


def search(model_dir: str,
           teacher: Union[str, os.PathLike, keras.Model, None] = None,
           preset: Optional[str] = None,
           log: Optional[Callable[[str], None]] = None,
           **settings) -> SearchOutcome:
  """Runs (or resumes) an AKD search, then trains and exports its winner.

  Args:
    model_dir: Where everything is written (akd-search's --model_dir); an
      unfinished search there is resumed.
    teacher: A `keras.Model`, a built-in teacher's name ('resnet_wide',
      'cnn_deep') or the path of a `.keras` file or SavedModel folder;
      None: akd-search's default built-in teacher (or the preset's).
    preset: A preset shipped with akd_tf ('fashion_mnist_quick',
      'fashion_mnist', 'imagenet_mnasnet'), as akd-search's --preset: its
      flags first, `settings` and `teacher` override them.
    log: Receives each progress line; default: printed on stdout with the
      time, as akd-search prints them on stderr.
    **settings: akd-search's flags by name, e.g. dataset="digits",
      target_ms=0.15, num_candidates=50, proxy_epochs=2, export=False.
      Settings left out take the flag's default.

  Returns:
    A `SearchOutcome`: the trained winner, its metrics and the history.

  Raises:
    TypeError: a keyword is not an akd-search flag, or `teacher` is of no
      accepted type.
    ValueError: a setting's value is invalid (the message names it as its
      flag), the teacher does not fit the data, `model_dir` holds a search
      with other settings, or every candidate failed.
    FileNotFoundError: the data or the teacher is missing.
  """
  if teacher is not None:
    settings["teacher"] = _teacher_setting(teacher, model_dir)
  values = _flag_values(settings, preset)
  try:
    config = flag_configs.search_config_from_flags(values)
  except app.UsageError as error:
    raise ValueError(f"akd_tf.search: {error}") from None
  if values.logical_cpus:
    try:
      training.split_cpu(values.logical_cpus)
    except RuntimeError:
      raise ValueError(
          f"akd_tf.search: --logical_cpus={values.logical_cpus} must be set "
          "before TensorFlow's first use in this process (TensorFlow fixes "
          "its devices then): call akd_tf.search first, or run akd-search"
          ) from None
  result = pipeline.search_and_export(config, model_dir,
                                      log=log or _print_line)
  if result.best is None:
    first = next((r.error for r in result.records if r.error), "none")
    raise ValueError(
        f"akd_tf.search: all {len(result.records)} candidates failed (first "
        f"error: {first}); see {os.path.join(model_dir, 'history.jsonl')}")
  student = keras.saving.load_model(
      os.path.join(result.final.out_dir, "student.keras"), compile=False)
  return SearchOutcome(student=student,
                       metrics=_metrics(result.best, result.final),
                       history=result.records, best=result.best,
                       final=result.final, model_dir=model_dir)


def _teacher_setting(teacher, model_dir: str) -> str:
  """The --teacher value of `teacher`: a name or path as given; a model in
  memory saved to `<model_dir>/teacher_<weights hash>.keras` (once)."""
  if isinstance(teacher, (str, os.PathLike)):
    return os.fspath(teacher)
  if not isinstance(teacher, keras.Model):
    raise TypeError(f"akd_tf.search: teacher is a {type(teacher).__name__}; "
                    "give a keras.Model, a built-in teacher's name "
                    f"{teacher_lib.TEACHERS} or the path of a .keras file or "
                    "SavedModel")
  path = os.path.join(os.path.abspath(model_dir),
                      f"teacher_{teacher_lib.weights_hash(teacher)}.keras")
  if not os.path.exists(path):
    os.makedirs(model_dir, exist_ok=True)
    partial = f"{path[:-len('.keras')]}.tmp{os.getpid()}.keras"
    teacher.save(partial)
    os.replace(partial, path)
  return path


def _flag_values(settings: Dict[str, Any],
                 preset: Optional[str] = None) -> flags.FlagValues:
  """akd-search's flags, defined apart from absl's global FLAGS, set from
  `preset`'s flagfile, then from `settings`, and marked parsed."""
  values = flags.FlagValues()
  flag_configs.define_all_flags(values)
  if preset is not None:
    try:
      values(["akd_tf.search", f"--flagfile={presets.path(preset)}"])
    except ValueError as error:  # An unknown preset.
      raise ValueError(f"akd_tf.search: preset: {error}") from None
  for name, value in settings.items():
    if name not in values:
      close = difflib.get_close_matches(name, list(values), n=3)
      raise TypeError(
          f"akd_tf.search: '{name}' is not an akd-search setting"
          + (f"; did you mean {', '.join(close)}?" if close else
             " (akd-search --helpshort lists them)"))
    if value is None:
      values[name].value = None
      values[name].present += 1
      continue
    try:
      values[name].parse(value)
    except flags.IllegalFlagValueError as error:
      raise ValueError(f"akd_tf.search: --{name}={value!r}: {error}"
                       ) from None
  values.mark_as_parsed()
  return values


def _metrics(best: history.CandidateRecord,
             final: finalize.FinalResult) -> Dict[str, Any]:
  """`SearchOutcome.metrics` of the winner."""
  files = {key: os.path.join(final.out_dir, name)
           for key, name in _OUTPUT_FILES.items()
           if os.path.exists(os.path.join(final.out_dir, name))}
  return {"blocks": list(best.blocks), "accuracy": best.accuracy,
          "latency_ms": best.latency_ms, "reward": best.reward,
          "params": final.params, "macs": final.macs,
          "minival_accuracy": final.minival_accuracy,
          "test_accuracy": final.test_accuracy,
          "exported_latency_ms": final.latency_ms, "files": files}


def _print_line(message: str) -> None:
  """One progress line on stdout, time-stamped."""
  print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stdout, flush=True)
