"""Tests of akd-search's flags (akd_tf/cli/search.py, flag_configs.py)."""

import json
import os
import re
import subprocess
import sys

import pytest

from akd_tf.nas import history
from akd_tf.nas import reward
from search_testing import QUICK_SEED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
             CUDA_VISIBLE_DEVICES="")
  return subprocess.run(args, env=env, capture_output=True, text=True,
                        timeout=600, check=False, cwd=ROOT)


_CONFIGS_FROM_FLAGS = r"""
import json, sys
from absl import app, flags
from akd_tf.cli import flag_configs, search
out = []
for argv in json.loads(sys.argv[1]):
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(["akd-search"] + argv)
    out.append(flag_configs.search_config_from_flags().get_config())
  except (app.UsageError, flags.Error) as error:
    out.append(str(error))
print(json.dumps(out))
"""


def _configs_from_flags(argvs):
  """The SearchConfig (as a dict) or the error message of each argv, parsed
  in one process."""
  proc = _run([sys.executable, "-c", _CONFIGS_FROM_FLAGS, json.dumps(argvs)])
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_teacher_output_flag_reaches_the_search_config():
  cases = [([], "logits"),
           (["--teacher_output=probabilities"], "probabilities"),
           (["--teacher_output=probs"],
            "--teacher_output=probs: value should be one of "
            "<logits|probabilities>")]
  for (argv, expected), got in zip(
      cases, _configs_from_flags([argv for argv, _ in cases])):
    got = got["teacher_output"] if isinstance(got, dict) else got
    assert expected in got, (argv, got)


def test_strategy_flags_reach_the_search_config():
  default, mirrored, tpu = _configs_from_flags([
      [], ["--strategy=mirrored", "--logical_cpus=2"],
      ["--strategy=tpu", "--tpu=local"]])
  assert (default["strategy"], default["tpu"]) == ("one_device", None)
  assert mirrored["strategy"] == "mirrored"
  assert (tpu["strategy"], tpu["tpu"]) == ("tpu", "local")


# A bad value of each flag a config checks, and the flag the error names.
_BAD_FLAGS = [
    (["--num_candidates=0"], "num_candidates"),
    (["--num_workers=0"], "num_workers"),
    (["--candidates_per_step=-1"], "candidates_per_step"),
    (["--threads_per_worker=-1"], "threads_per_worker"),
    (["--candidates_per_worker=-1"], "candidates_per_worker"),
    (["--proxy_epochs=0"], "proxy_epochs"),
    (["--final_epochs=0"], "final_epochs"),
    (["--proxy_batch_size=0"], "proxy_batch_size"),
    (["--final_batch_size=0"], "final_batch_size"),
    (["--proxy_learning_rate=0"], "proxy_learning_rate"),
    (["--final_learning_rate=-1"], "final_learning_rate"),
    (["--kd_alpha=1.5"], "kd_alpha"),
    (["--kd_alpha=0"], "kd_alpha"),  # --reward_accuracy=kd needs KD.
    (["--kd_temperature=0"], "kd_temperature"),
    (["--bn_recalibration_images=-1"], "bn_recalibration_images"),
    (["--bn_momentum=1"], "bn_momentum"),
    (["--width_multiplier=0"], "width_multiplier"),
    (["--head_size=0"], "head_size"),
    (["--stem_strides=3"], "stem_strides"),
    (["--dropout_rate=1"], "dropout_rate"),
    (["--drop_connect_rate=-0.1"], "drop_connect_rate"),
    (["--image_size=-1"], "image_size"),
    (["--proxy_train_size=-1"], "proxy_train_size"),
    (["--minival_size=-1"], "minival_size"),
    (["--final_train_size=-1"], "final_train_size"),
    (["--teacher_epochs=0"], "teacher_epochs"),
    (["--teacher=/nonexistent.keras"], "teacher"),
    (["--target_ms=0"], "target_ms"),
    (["--reward=mnas"], "reward"),
    (["--reward=mnas", "--reward_alpha=0.1", "--reward_beta=-0.1"],
     "reward_alpha"),
    (["--reward_alpha=-0.1"], "reward_alpha"),  # soft fixes its exponents.
    (["--latency_threads=0"], "latency_threads"),
    (["--latency_runs=0"], "latency_runs"),
    (["--latency_repeats=0"], "latency_repeats"),
    (["--latency_pause_ms=-1"], "latency_pause_ms"),
    (["--latency=command"], "latency_command"),
    (["--controller_learning_rate=0"], "controller_learning_rate"),
    (["--entropy_weight=-1"], "entropy_weight"),
    (["--baseline_decay=1"], "baseline_decay"),
    (["--cpus_per_candidate=2"], "cpus_per_candidate"),
    (["--dataset=folder:"], "dataset"),
    (["--dataset=folder:/nonexistent/akd_images"], "dataset"),
    (["--strategy=multi_worker"], "strategy"),
    (["--strategy=tpu"], "tpu"),
    (["--tpu=local"], "tpu"),
    (["--logical_cpus=1"], "logical_cpus"),
]


def test_each_bad_flag_gives_one_error_naming_that_flag():
  results = _configs_from_flags([argv for argv, _ in _BAD_FLAGS])
  for (argv, flag), error in zip(_BAD_FLAGS, results):
    assert isinstance(error, str), (argv, "was accepted")
    blamed = re.findall(r"--(\w+)=", error.split(": ", 1)[0])
    assert blamed == [flag], (argv, error)


def test_reward_mnas_takes_its_exponents_from_flags():
  mnas, abs_reward = _configs_from_flags([
      ["--reward=mnas", "--reward_alpha=0", "--reward_beta=-0.07",
       "--target_ms=2"],
      ["--reward=abs", "--reward_beta=-0.2"]])
  assert mnas["reward"] == {"kind": "mnas", "target_ms": 2.0, "alpha": 0.0,
                            "beta": -0.07}
  config = reward.RewardConfig(**mnas["reward"])
  assert reward.compute_reward(config, 0.8, 1.0) == 0.8
  assert reward.compute_reward(config, 0.8, 4.0) == pytest.approx(
      0.8 * 2 ** -0.07)
  assert abs_reward["reward"]["beta"] == -0.2


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
      "--latency_repeats=1", "--noexport", "--num_candidates=1",
      f"--seed={QUICK_SEED}", *extra])


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
  # The top-k table, on stdout.
  table = proc.stdout.splitlines()
  assert table[-3].startswith("top 1 of 1 distinct candidates by reward")
  assert table[-1].split()[:3] == ["1", "0/0", f"{record.reward:.4f}"]
  assert table[-1].endswith(" ".join(record.blocks))


def test_unreadable_image_of_a_folder_dataset_is_a_clear_error(tmp_path):
  images = tmp_path / "images"
  for name in ("cat", "dog"):
    (images / name).mkdir(parents=True)
  (images / "cat" / "broken.png").write_bytes(b"not a png")
  (images / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
  proc = _search(tmp_path, "resnet_wide", f"--dataset=folder:{images}")
  assert proc.returncode == 1
  assert (f"akd-search: error: dataset 'folder:{images}': cannot read "
          f"{images}/cat/broken.png as an image") in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "search" / "search_config.json").exists()


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
