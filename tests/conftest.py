"""Test setup shared by every test module: quiet TensorFlow, CPU only."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: end-to-end runs of a minute or more (kept few)")
  # NumPy 2 warns on every Keras tensor -> array conversion.
  config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")
