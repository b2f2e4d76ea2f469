"""Tests of akd_tf.config_checks."""

import sys

import pytest

from akd_tf import config_checks


def test_require_raises_the_first_failed_check_with_its_owner():
  checks = ((True, "fine"), (False, "epochs=0 must be >= 1"),
            (False, "second failure"))
  with pytest.raises(ValueError, match=r"^TrainConfig: epochs=0 must be >= 1$"):
    config_checks.require(checks, "TrainConfig")


def test_require_without_owner_raises_the_bare_message():
  with pytest.raises(ValueError, match=r"^role 'x' is not one of$"):
    config_checks.require([(False, "role 'x' is not one of")])


def test_require_passes_when_every_check_holds():
  config_checks.require(((True, "a"), (1 > 0, "b")), "Config")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
