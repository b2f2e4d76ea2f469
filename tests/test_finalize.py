"""Tests of akd_tf.deploy.finalize: the winner's final training is akd-train's
resumable job (killed, it resumes; under MirroredStrategy it runs on every
replica) and its export is verified as before."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import pytest

from akd_tf.deploy import finalize
from akd_tf.distill import data as data_lib
from akd_tf.nas import history
from resume_testing import assert_resumed_the_remaining_epochs
from search_testing import tiny_search_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WINNER = ("r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24")
EPOCHS = 6

# Runs `finalize` on WINNER with the tiny search config, as akd-search runs
# it after its search; argv[1] is a JSON object of the settings.
_FINALIZE = r"""
import dataclasses, json, sys
settings = json.loads(sys.argv[1])
from akd_tf.distill import training
if settings["logical_cpus"]:
  training.split_cpu(settings["logical_cpus"])
from akd_tf.deploy import finalize
from akd_tf.nas import history
from search_testing import tiny_search_config
config = tiny_search_config(settings["cache_dir"], export=settings["export"],
                            final_train_size=None,
                            strategy=settings["strategy"])
config = dataclasses.replace(config, final=dataclasses.replace(
    config.final, epochs=settings["epochs"], bn_recalibration_images=256))
record = history.CandidateRecord(step=0, index=0, actions=(),
                                 blocks=tuple(settings["blocks"]),
                                 status=history.STATUS_OK)
final = finalize.finalize(record, config, config.global_params,
                          settings["teacher_path"], settings["out_dir"],
                          log=lambda line: print(line, file=sys.stderr,
                                                 flush=True))
print(json.dumps(final.get_config()))
"""


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
  """A `.keras` digits teacher trained for a few seconds (about 95% test
  accuracy)."""
  keras.utils.set_random_seed(0)
  digits = data_lib.load_data(data_lib.DataConfig("digits"))
  inputs = keras.Input((8, 8, 1))
  x = keras.layers.Dense(64, activation="relu")(
      keras.layers.Flatten()(inputs))
  teacher = keras.Model(inputs, keras.layers.Dense(10)(x),
                        name="dense_teacher")
  teacher.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  teacher.fit(data_lib.make_dataset(digits.train, 64, shuffle=True), epochs=20,
              shuffle=False, verbose=0)
  path = str(tmp_path_factory.mktemp("teacher") / "teacher.keras")
  teacher.save(path)
  return path


def _command(tmp_path, teacher, strategy="one_device", logical_cpus=0,
             export=False):
  settings = {"cache_dir": str(tmp_path / "cache"),
              "out_dir": str(tmp_path / "best"), "teacher_path": teacher,
              "blocks": list(WINNER), "epochs": EPOCHS, "strategy": strategy,
              "logical_cpus": logical_cpus, "export": export}
  return [sys.executable, "-c", _FINALIZE, json.dumps(settings)]


def _env():
  return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT}/tests",
              TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def _run(command):
  return subprocess.run(command, env=_env(), cwd=ROOT, capture_output=True,
                        text=True, timeout=600, check=False)


def test_killed_final_training_resumes_and_finishes_its_epochs(
    tmp_path, teacher_path):
  best = tmp_path / "best"
  metadata = best / "backup" / "training_metadata.json"
  with open(tmp_path / "first.log", "w") as log:
    proc = subprocess.Popen(_command(tmp_path, teacher_path), env=_env(),
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not metadata.exists() and proc.poll() is None:
      assert time.monotonic() < deadline, "no epoch finished in 300 s"
      time.sleep(0.05)
    assert proc.poll() is None, (
        "the final training ended before its first backup:\n" +
        (tmp_path / "first.log").read_text()[-3000:])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL, (
      tmp_path / "first.log").read_text()[-3000:]
  assert not (best / "metrics.json").exists()

  second = _run(_command(tmp_path, teacher_path))
  assert second.returncode == 0, second.stderr[-3000:]
  assert "final training: resuming from" in second.stderr
  assert_resumed_the_remaining_epochs(second.stderr, str(best), EPOCHS)
  result = json.loads((best / "result.json").read_text())
  assert result["mode"] == "kd_cached"
  final = json.loads(second.stdout.strip().splitlines()[-1])
  assert final["blocks"] == list(WINNER)
  assert final["test_accuracy"] == result["test_accuracy"] > 0.3
  assert json.loads((best / "metrics.json").read_text()) == final
  assert list((best / "logs" / "train").iterdir())  # TensorBoard.


def test_final_training_runs_on_two_mirrored_replicas_and_exports(
    tmp_path, teacher_path):
  proc = _run(_command(tmp_path, teacher_path, strategy="mirrored",
                       logical_cpus=2, export=True))
  assert proc.returncode == 0, proc.stderr[-3000:]
  best = tmp_path / "best"
  result = json.loads((best / "result.json").read_text())
  assert result["replicas"] == 2 and result["global_batch_size"] == 64
  assert result["epochs"] == EPOCHS
  final = json.loads(proc.stdout.strip().splitlines()[-1])
  assert final["test_accuracy"] == result["test_accuracy"] > 0.3
  assert final["latency_ms"] > 0
  report = json.loads((best / "export_report.json").read_text())
  assert report["float_max_abs_diff"] < 1e-3
  assert (best / "student_float.tflite").exists()
  assert (best / "saved_model" / "saved_model.pb").exists()


def test_final_training_of_another_winner_starts_afresh(tmp_path,
                                                        teacher_path):
  config = tiny_search_config(str(tmp_path / "cache"))
  out_dir = str(tmp_path / "best")
  lines = []
  for blocks in (WINNER, WINNER[:1], WINNER[:1]):
    record = history.CandidateRecord(step=0, index=0, actions=(),
                                     blocks=blocks,
                                     status=history.STATUS_OK)
    final = finalize.finalize(record, config, config.global_params,
                              teacher_path, out_dir, lines.append)
    assert final.blocks == blocks
  assert sum("starting afresh" in line for line in lines) == 1
  assert sum("already trained" in line for line in lines) == 1
  student = keras.saving.load_model(os.path.join(out_dir, "student.keras"))
  assert final.params == student.count_params()


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
