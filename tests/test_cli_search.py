"""Tests of akd-search's flags (akd_tf/cli/search.py, flag_configs.py)."""

import json
import os
import subprocess
import sys

import pytest

from akd_tf.search import history

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
             CUDA_VISIBLE_DEVICES="")
  return subprocess.run(args, env=env, capture_output=True, text=True,
                        timeout=600, check=False, cwd=ROOT)


_CONFIG_FROM_FLAGS = r"""
import json, sys
from absl import app, flags
from akd_tf.cli import flag_configs, search
out = []
for argv in json.loads(sys.argv[1]):
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(["akd-search"] + argv)
    out.append(flag_configs.search_config_from_flags().teacher_output)
  except (app.UsageError, flags.Error) as error:
    out.append(str(error))
print(json.dumps(out))
"""


def test_teacher_output_flag_reaches_the_search_config():
  cases = [([], "logits"),
           (["--teacher_output=probabilities"], "probabilities"),
           (["--teacher_output=probs"],
            "--teacher_output=probs: value should be one of "
            "<logits|probabilities>")]
  proc = _run([sys.executable, "-c", _CONFIG_FROM_FLAGS,
               json.dumps([argv for argv, _ in cases])])
  assert proc.returncode == 0, proc.stderr[-3000:]
  for (argv, expected), got in zip(
      cases, json.loads(proc.stdout.strip().splitlines()[-1])):
    assert expected in got, (argv, got)


def test_unknown_teacher_output_is_a_usage_error(tmp_path):
  proc = _run([sys.executable, "-m", "akd_tf.cli.search",
               f"--model_dir={tmp_path}", "--teacher_output=softmax"])
  assert proc.returncode != 0
  assert "--teacher_output=softmax: value should be one of" in proc.stderr
  assert "Traceback" not in proc.stderr


def _search(tmp_path, teacher, *extra):
  return _run([
      sys.executable, "-m", "akd_tf.cli.search",
      f"--model_dir={tmp_path / 'search'}", f"--cache_dir={tmp_path / 'cache'}",
      f"--teacher={teacher}", "--dataset=digits", "--minival_size=300",
      "--proxy_train_size=320", "--proxy_batch_size=32",
      "--final_train_size=320", "--final_epochs=1", "--head_size=32",
      "--width_multiplier=0.25", "--target_ms=0.05", "--latency_runs=5",
      "--latency_repeats=1", "--noexport", "--num_candidates=1", *extra])


def test_softmax_teacher_is_refused_naming_teacher_output(
    tmp_path, softmax_teacher_file):
  proc = _search(tmp_path, softmax_teacher_file)
  assert proc.returncode == 1
  assert "outputs probabilities, not logits" in proc.stderr
  assert "pass --teacher_output=probabilities" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not history.History(
      str(tmp_path / "search" / "history.jsonl")).read()


@pytest.mark.slow
def test_softmax_teacher_searches_with_teacher_output_probabilities(
    tmp_path, softmax_teacher_file):
  proc = _search(tmp_path, softmax_teacher_file,
                 "--teacher_output=probabilities")
  assert proc.returncode == 0, proc.stderr[-3000:]
  [record] = history.History(
      str(tmp_path / "search" / "history.jsonl")).read()
  assert record.ok, record.error
  assert (tmp_path / "search" / "best" / "student.keras").exists()
