"""akd-train survives SIGKILL: the same command resumes and finishes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from resume_testing import assert_resumed_the_remaining_epochs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 6


def _command(model_dir):
  return [sys.executable, "-m", "akd_tf.cli.train", "--role=student",
          "--dataset=digits", "--blocks=r1_k3_s11_e1_i32_o16,"
          "r2_k3_s22_e6_i16_o24", "--width_multiplier=0.5",
          "--bn_momentum=0.9", "--kd_alpha=0", f"--epochs={EPOCHS}",
          "--batch_size=16", f"--model_dir={model_dir}"]


def _env():
  return dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
              CUDA_VISIBLE_DEVICES="")


def test_akd_train_killed_after_an_epoch_resumes_to_the_final_epoch(
    tmp_path):
  model_dir = tmp_path / "student"
  metadata = model_dir / "backup" / "training_metadata.json"
  with open(tmp_path / "first.log", "w") as log:
    proc = subprocess.Popen(_command(model_dir), env=_env(), cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not metadata.exists() and proc.poll() is None:
      assert time.monotonic() < deadline, "no epoch finished in 240 s"
      time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log"
                                              ).read_text()[-3000:]
  assert not (model_dir / "result.json").exists()
  second = subprocess.run(_command(model_dir), env=_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          check=False)
  assert second.returncode == 0, second.stderr[-3000:]
  assert_resumed_the_remaining_epochs(second.stderr, str(model_dir), EPOCHS)
  result = json.loads((model_dir / "result.json").read_text())
  assert result["test_accuracy"] > 0.1
  assert (model_dir / "student.keras").exists()


def test_akd_train_resumes_when_killed_while_writing_its_backup(tmp_path):
  model_dir = tmp_path / "student"
  backup = model_dir / "backup"
  with open(tmp_path / "first.log", "w") as log:
    proc = subprocess.Popen(_command(model_dir), env=_env(), cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while proc.poll() is None:
      assert time.monotonic() < deadline, "no second epoch in 240 s"
      try:
        if json.loads((backup / "training_metadata.json").read_text()
                      )["epoch"] >= 2:
          break
      except (OSError, ValueError):
        pass
      time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL
  # What a kill in the middle of writing the weights leaves behind.
  weights = backup / "latest.weights.h5"
  weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
  second = subprocess.run(_command(model_dir), env=_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          check=False)
  assert second.returncode == 0, second.stderr[-3000:]
  result = json.loads((model_dir / "result.json").read_text())
  assert result["epochs"] == EPOCHS and result["test_accuracy"] > 0.1
  epochs_run = [line for line in second.stderr.splitlines()
                if " took " in line]
  assert f"epoch {EPOCHS}/{EPOCHS} took" in epochs_run[-1]


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
