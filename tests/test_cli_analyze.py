"""Tests of akd-analyze (akd_tf/cli/analyze.py), run as a real subprocess."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from akd_tf.distill import candidate_training
from akd_tf.distill import data
from akd_tf.nas import config as config_lib
from akd_tf.nas import history
from akd_tf.nas import reward
from akd_tf.space import arch
from akd_tf.space import search_space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = search_space.SearchSpace()
CONFIG = config_lib.SearchConfig(
    data=data.DataConfig(dataset="digits"), global_params=arch.GlobalParams(),
    proxy=candidate_training.TrainConfig(),
    final=candidate_training.TrainConfig(),
    reward=reward.RewardConfig(target_ms=1.0))


def write_search(model_dir, teacher, seed, prefer_last, n=12,
                 status=history.STATUS_OK):
  """A model_dir as akd-search leaves it, candidates biased to one end."""
  model_dir.mkdir()
  config = dataclasses.replace(
      CONFIG, teacher=teacher,
      controller_config=dataclasses.replace(CONFIG.controller_config,
                                            seed=seed))
  (model_dir / "search_config.json").write_text(
      json.dumps(config.get_config()))
  log = history.History(str(model_dir / "history.jsonl"))
  rng = np.random.default_rng(seed)
  for step in range(n):
    actions = [(c - 1 if prefer_last else 0) if rng.random() < 0.7
               else int(rng.integers(c)) for c in SPACE.num_choices]
    log.append(history.CandidateRecord(
        step=step, index=0, actions=actions,
        blocks=[b.encode() for b in SPACE.decode(actions)], status=status,
        accuracy=0.9, latency_ms=1.0, reward=float(rng.random())))
  return str(model_dir)


def _run(args):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, *args], env=env, capture_output=True,
                        text=True, timeout=120, check=False, cwd=ROOT)


def test_prints_top_choices_and_p_value_and_writes_json_and_png(tmp_path):
  wide = write_search(tmp_path / "wide", "resnet_wide", 1, False)
  deep = write_search(tmp_path / "deep", "cnn_deep", 2, True)
  out = tmp_path / "analysis"
  proc = _run(["-m", "akd_tf.cli.analyze", f"--model_dirs={wide},{deep}",
               "--top_k=5", "--permutations=2000", f"--output_dir={out}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "resnet_wide: 5 top candidates from 1 search(es)" in proc.stdout
  assert "cnn_deep: 5 top candidates from 1 search(es)" in proc.stdout
  match = re.search(
      r"^permutation test \(resnet_wide vs cnn_deep\): statistic (\d\.\d{3}),"
      r" p = (0\.\d{4}) \(2000 permutations, 5 / 5 top candidates\)$",
      proc.stdout, re.MULTILINE)
  assert match, proc.stdout
  assert "permuted single candidates" in proc.stdout
  saved = json.loads((out / "analysis.json").read_text())
  test = saved["permutation_test"]
  assert f"{test['p_value']:.4f}" == match.group(2)
  assert float(match.group(2)) < 0.01
  assert test["level"] == "candidate"
  assert list(saved["distributions"]["groups"]) == ["resnet_wide", "cnn_deep"]
  assert (out / "choices.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_three_teachers_get_no_test_unless_two_are_chosen(tmp_path):
  dirs = ",".join(write_search(tmp_path / t, t, s, s == 2)
                  for s, t in enumerate(["resnet_wide", "cnn_deep", "other"]))
  out = tmp_path / "out"
  proc = _run(["-m", "akd_tf.cli.analyze", f"--model_dirs={dirs}",
               f"--output_dir={out}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "no permutation test: 3 teacher(s)" in proc.stdout
  assert json.loads((out / "analysis.json").read_text())[
      "permutation_test"] is None
  proc = _run(["-m", "akd_tf.cli.analyze", f"--model_dirs={dirs}",
               "--teachers=other,cnn_deep", "--permutations=100",
               f"--output_dir={out}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "permutation test (other vs cnn_deep): " in proc.stdout


_BAD_FLAGS = r"""
import json, sys
from absl import app, flags
from akd_tf.cli import analyze
out = []
for argv in json.loads(sys.argv[1]):
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(["akd-analyze"] + argv)
    analyze.main(["akd-analyze"])
    out.append("no error")
  except (app.UsageError, flags.Error) as error:
    out.append(str(error))
print(json.dumps(out))
"""


def test_bad_input_gets_usage_errors_naming_the_flag(tmp_path):
  wide = write_search(tmp_path / "wide", "resnet_wide", 1, False)
  deep = write_search(tmp_path / "deep", "cnn_deep", 2, True)
  failed = write_search(tmp_path / "failed", "cnn_deep", 3, True,
                        status=history.STATUS_FAILED)
  (tmp_path / "fresh").mkdir()
  (tmp_path / "fresh" / "search_config.json").write_text(
      (tmp_path / "wide" / "search_config.json").read_text())
  both = f"--model_dirs={wide},{deep}"
  cases = [
      ([], "--model_dirs is required"),
      ([f"--model_dirs={tmp_path / 'nowhere'}"],
       f"--model_dirs: {tmp_path / 'nowhere'}: no such directory"),
      ([f"--model_dirs={wide},{tmp_path / 'fresh'}"],
       f"--model_dirs: {tmp_path / 'fresh'} has no history.jsonl"),
      ([f"--model_dirs={wide},{failed}"],
       "--model_dirs: group 'cnn_deep' has no successful candidate"),
      ([f"--model_dirs={wide}", "--teachers=resnet_wide,cnn_deep"],
       "--teachers: cnn_deep not among the searches' teachers"),
      ([both, "--teachers=resnet_wide"], "--teachers=resnet_wide: give two"),
      ([both, "--top_k=0"], "--top_k=0 must be >= 1"),
      ([both, "--permutations=0"], "--permutations=0 must be >= 1"),
      ([both, "--permute=search"],
       "--permute=search: level='search' needs more than one search"),
      ([both, "--permute=searches"], "--permute"),
  ]
  out = f"--output_dir={tmp_path / 'out'}"
  proc = _run(["-c", _BAD_FLAGS,
               json.dumps([argv + [out] for argv, _ in cases])])
  assert proc.returncode == 0, proc.stderr[-3000:]
  messages = json.loads(proc.stdout.strip().splitlines()[-1])
  for (argv, expected), message in zip(cases, messages):
    assert expected in message, (argv, message)
  assert not (tmp_path / "out").exists()


def test_a_bad_model_dir_exits_with_the_message_not_a_traceback(tmp_path):
  proc = _run(["-m", "akd_tf.cli.analyze",
               f"--model_dirs={tmp_path / 'nowhere'}"])
  assert proc.returncode != 0
  assert "--model_dirs:" in proc.stderr and "no such directory" in proc.stderr
  assert "Traceback" not in proc.stderr


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
