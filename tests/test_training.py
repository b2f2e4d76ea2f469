"""Tests of akd_tf.distill.training's progress lines (its jobs are tested
by test_cli_train.py and test_train_resume.py)."""

import logging
import sys

import pytest

from akd_tf.distill import training


def test_eta_logger_logs_to_the_module_logger_by_default(caplog):
  caplog.set_level(logging.INFO, logger="akd_tf")
  progress = training.EtaLogger()
  progress.set_params({"epochs": 2, "steps": 10})
  progress.on_epoch_begin(0)
  progress.on_epoch_end(0, {"loss": 0.5})
  assert [(r.name, r.levelno) for r in caplog.records] == [
      ("akd_tf.distill.training", logging.INFO)]
  assert caplog.records[0].getMessage().startswith("epoch 1/2 took ")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
