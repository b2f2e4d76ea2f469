"""Tests of akd-train (akd_tf/cli/train.py) and akd_tf.distill.training."""

import csv
import json
import os
import subprocess
import sys

import keras
import pytest

from akd_tf.distill import candidate_training
from akd_tf.distill import data
from akd_tf.distill import training
from akd_tf.space import arch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKS = "r1_k3_s11_e1_i32_o16,r2_k3_s22_e6_i16_o24"


def _run(args, **kwargs):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
             CUDA_VISIBLE_DEVICES="")
  return subprocess.run(args, env=env, capture_output=True, text=True,
                        timeout=300, check=False, cwd=ROOT, **kwargs)


_BAD_FLAGS = r"""
import json, sys
from absl import app, flags
from akd_tf.cli import train
out = []
for argv in json.loads(sys.argv[1]):
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(["akd-train"] + argv)
    train.main(["akd-train"])
    out.append("no error")
  except (app.UsageError, flags.Error) as error:
    out.append(str(error))
print(json.dumps(out))
"""


def test_bad_flag_values_get_usage_errors_naming_the_flag(tmp_path):
  not_a_model = tmp_path / "notes.keras"
  not_a_model.write_text("not a model")
  inputs = keras.Input((8, 8, 1))
  three_classes = keras.Model(inputs, keras.layers.Dense(3)(
      keras.layers.Flatten()(inputs)))
  three_classes.save(str(tmp_path / "three.keras"))
  out = str(tmp_path / "out")
  student = ["--model_dir=" + out, "--dataset=digits", "--blocks=" + BLOCKS]
  cases = [
      (student + ["--kd_alpha=1.5"], "--kd_alpha: 1.5 must be in [0, 1]"),
      (student + ["--kd_temperature=0"], "--kd_temperature: 0.0 must be > 0"),
      (student + ["--epochs=0"], "--epochs: 0 must be >= 1"),
      (student + ["--batch_size=0"], "--batch_size: 0 must be >= 1"),
      (student + ["--learning_rate=-1"], "--learning_rate: -1.0 must be > 0"),
      (student + ["--teacher=vgg"], "--teacher: unknown built-in teacher"),
      (student + ["--teacher=cnn_deep", "--teacher_path=x.keras"],
       "--teacher_path: give --teacher or --teacher_path, not both"),
      (student + ["--teacher_path=/no/such.keras"],
       "--teacher_path: /no/such.keras does not exist"),
      (student[1:], "--model_dir: required"),
      (student + ["--kd_alpha=0.5"], "--kd_alpha: 0.5 needs --teacher"),
      (student + ["--strategy=tpu", "--kd_alpha=0"], "--tpu: "),
      (student + ["--strategy=gpus"], "--strategy"),
      (student + ["--num_classes=5", "--kd_alpha=0"],
       "--num_classes: akd-train takes it from --dataset"),
      (["--model_dir=" + out, "--kd_alpha=0"], "exactly one of --preset"),
      (["--role=teacher", "--model_dir=" + out], "--teacher: --role=teacher"),
      (["--role=teacher", "--teacher=cnn_deep", "--preset=mobilenet_v2",
        "--model_dir=" + out], "--preset: --role=teacher takes no student"),
      (student + ["--kd_alpha=0", "--dataset=fashion_mnist",
                  "--data_dir=" + str(tmp_path)],
       "--data_dir: Fashion-MNIST not found"),
      (student + ["--kd_alpha=0", "--dataset=no_such_dataset_xyz"],
       "--dataset: unknown dataset 'no_such_dataset_xyz'"),
      (student + ["--teacher_path=" + str(not_a_model)],
       "--teacher_path: teacher " + str(not_a_model) +
       " is not a loadable Keras model file"),
      (student + ["--teacher_path=" + str(tmp_path / "three.keras")],
       "--teacher_path: teacher outputs 3 classes but digits has 10"),
  ]
  proc = _run([sys.executable, "-c", _BAD_FLAGS,
               json.dumps([argv for argv, _ in cases])])
  assert proc.returncode == 0, proc.stderr[-3000:]
  messages = json.loads(proc.stdout.strip().splitlines()[-1])
  for (argv, expected), message in zip(cases, messages):
    assert expected in message, (argv, message)
  assert not os.path.exists(os.path.join(out, "student.keras"))


def test_akd_train_distills_a_student_on_two_mirrored_replicas(tmp_path):
  model_dir = tmp_path / "student"
  proc = _run([
      sys.executable, "-m", "akd_tf.cli.train", "--role=student",
      "--teacher=cnn_deep", "--dataset=digits", "--blocks=" + BLOCKS,
      "--bn_momentum=0.9", "--kd_alpha=0.9", "--kd_temperature=4",
      "--epochs=2", "--batch_size=32", "--strategy=mirrored",
      "--logical_cpus=2", f"--model_dir={model_dir}",
      f"--cache_dir={tmp_path / 'cache'}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  printed = json.loads(proc.stdout.strip().splitlines()[-1])
  result = json.loads((model_dir / "result.json").read_text())
  assert result["replicas"] == 2 and result["global_batch_size"] == 64
  assert result["mode"] == "kd_cached"
  assert printed["test_accuracy"] == result["test_accuracy"] > 0.1
  assert "ETA" in proc.stderr
  student = keras.saving.load_model(str(model_dir / "student.keras"),
                                    safe_mode=True)
  assert student.output_shape == (None, 10)
  spec = arch.ArchSpec.from_json(str(model_dir / "arch.json"))
  assert spec.block_strings == tuple(BLOCKS.split(","))
  assert spec.input_shape == (8, 8, 1)
  with open(model_dir / "metrics.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 and float(rows[-1]["distillation_loss"]) > 0
  assert list((tmp_path / "cache" / "teachers").glob("cnn_deep-*.keras"))
  assert list((tmp_path / "cache" / "teacher_logits").glob("*.npy"))


def test_softmax_teacher_path_needs_teacher_output_probabilities(
    tmp_path, softmax_teacher_file):
  softmax = softmax_teacher_file
  student = ["--model_dir=" + str(tmp_path / "refused"), "--dataset=digits",
             "--blocks=" + BLOCKS, "--teacher_path=" + softmax]
  cases = [
      (student, "--teacher_path: teacher 'softmax_teacher' outputs "
       "probabilities, not logits"),
      (student, "pass --teacher_output=probabilities"),
      (student + ["--teacher_output=probs"],
       "--teacher_output=probs: value should be one of"),
  ]
  proc = _run([sys.executable, "-c", _BAD_FLAGS,
               json.dumps([argv for argv, _ in cases])])
  assert proc.returncode == 0, proc.stderr[-3000:]
  messages = json.loads(proc.stdout.strip().splitlines()[-1])
  for (argv, expected), message in zip(cases, messages):
    assert expected in message, (argv, message)
  model_dir = tmp_path / "student"
  proc = _run([
      sys.executable, "-m", "akd_tf.cli.train", "--role=student",
      "--teacher_path=" + softmax, "--teacher_output=probabilities",
      "--dataset=digits", "--blocks=" + BLOCKS, "--bn_momentum=0.9",
      "--epochs=1", "--batch_size=64", f"--model_dir={model_dir}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads((model_dir / "result.json").read_text())["mode"] == (
      "kd_cached")
  with open(model_dir / "metrics.csv") as f:
    assert float(next(csv.DictReader(f))["distillation_loss"]) > 0


class _Interrupt(keras.callbacks.Callback):
  """Fails after `epochs` epochs, as a kill would (after their backup)."""

  def __init__(self, epochs):
    super().__init__()
    self.epochs = epochs

  def on_epoch_end(self, epoch, logs=None):
    if epoch + 1 == self.epochs:
      raise KeyboardInterrupt("killed")


def test_interrupted_training_resumes_from_the_last_epoch(tmp_path):
  job = training.TrainJob(
      role="student", model_dir=str(tmp_path),
      data=data.DataConfig("digits", train_size=256),
      train=candidate_training.TrainConfig(epochs=3, batch_size=64,
                                           kd_alpha=0.0),
      arch=arch.ArchSpec(arch.decode_blocks(BLOCKS.split(",")),
                         arch.GlobalParams(num_classes=10), (8, 8, 1)))
  lines = []
  with pytest.raises(KeyboardInterrupt):
    training.run_job(job, callbacks=[_Interrupt(2)], log=lines.append)
  assert not (tmp_path / "student.keras").exists()
  lines.clear()
  result = training.run_job(job, log=lines.append)
  assert any("resuming" in line and "2 of 3 epoch(s) done" in line
             for line in lines), lines
  epochs_run = [line for line in lines if " took " in line]
  assert len(epochs_run) == 1 and epochs_run[0].startswith("epoch 3/3")
  assert result.epochs == 3 and (tmp_path / "student.keras").exists()
  assert not (tmp_path / "backup" / "training_metadata.json").exists()
  with open(tmp_path / "metrics.csv") as f:
    assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1", "2"]
  # A finished job is not rerun.
  lines.clear()
  assert training.run_job(job, log=lines.append) == result
  assert "already trained" in lines[0]


def test_train_job_rejects_inconsistent_roles():
  config = candidate_training.TrainConfig()
  with pytest.raises(ValueError, match="role 'teacher' trains a built-in"):
    training.TrainJob(role="teacher", model_dir="m",
                      data=data.DataConfig(), train=config)
  with pytest.raises(ValueError, match="kd_alpha=0.9 needs a teacher"):
    training.TrainJob(role="student", model_dir="m", data=data.DataConfig(),
                      train=config, arch=arch.ArchSpec(
                          arch.decode_blocks(BLOCKS.split(",")),
                          arch.GlobalParams(), (8, 8, 1)))
  with pytest.raises(ValueError, match="strategy 'gpus'"):
    training.TrainJob(role="teacher", teacher="cnn_deep", model_dir="m",
                      data=data.DataConfig(), train=config, strategy="gpus")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
