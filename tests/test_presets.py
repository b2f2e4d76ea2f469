"""Tests of the search presets (akd_tf/cli/presets.py): the flagfiles of
flags/, shipped as package data and named by akd-search --preset."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from akd_tf.cli import presets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILES = sorted(glob.glob(os.path.join(ROOT, "flags", "*.cfg")))


def test_presets_are_the_flagfiles_of_flags():
  assert FLAGFILES
  assert presets.names() == [os.path.basename(f)[:-len(".cfg")]
                             for f in FLAGFILES]
  for flagfile in FLAGFILES:
    name = os.path.basename(flagfile)[:-len(".cfg")]
    assert os.path.samefile(presets.path(name), flagfile)


def test_preset_flag_becomes_its_flagfile_in_place():
  quick, full = (presets.path(n) for n in ("fashion_mnist_quick",
                                            "fashion_mnist"))
  argv = ["akd-search", "--num_candidates=3", "--preset=fashion_mnist_quick",
          "--target_ms=2", "--preset", "fashion_mnist", "--preset=nope", "--",
          "--preset=fashion_mnist"]
  assert presets.expand_preset_flags(argv) == [
      "akd-search", "--num_candidates=3", f"--flagfile={quick}",
      "--target_ms=2", f"--flagfile={full}", "--preset=nope", "--",
      "--preset=fashion_mnist"]


def test_unknown_preset_lists_the_presets():
  with pytest.raises(ValueError, match=r"no preset 'nope'; the presets are "
                     r"\['fashion_mnist', 'fashion_mnist_oneshot', "
                     r"'fashion_mnist_quick'"):
    presets.path("nope")


# Parses akd-search's flags with a preset and later flags, as the app does.
_PARSE_WITH_PRESET = """import json, sys
from absl import flags
from akd_tf.cli import presets, search
argv = presets.expand_preset_flags(
    ["akd-search", "--preset=fashion_mnist_quick", "--num_candidates=3"])
flags.FLAGS(argv)
print(json.dumps({"path": presets.path("fashion_mnist_quick"),
                  "app": search.__file__,
                  "num_candidates": flags.FLAGS.num_candidates,
                  "target_ms": flags.FLAGS.target_ms,
                  "proxy_train_size": flags.FLAGS.proxy_train_size}))
"""


def test_installed_package_ships_the_presets(tmp_path):
  # A copy of the sources, so that building leaves the checkout clean.
  source = tmp_path / "source"
  shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
      ".git", "__pycache__", "*.egg-info", "build", "tests", "benchmarks"))
  site = tmp_path / "site"
  install = subprocess.run(
      [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
       "--no-build-isolation", "--no-index", f"--target={site}",
       str(source)], capture_output=True, text=True, timeout=600,
      check=False)
  assert install.returncode == 0, install.stderr[-3000:]
  for flagfile in FLAGFILES:
    with open(site / "akd_tf" / "presets" / os.path.basename(flagfile)) as f:
      with open(flagfile) as expected:
        assert f.read() == expected.read()
  env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="3",
             CUDA_VISIBLE_DEVICES="")
  parsed = subprocess.run(
      [sys.executable, "-c", _PARSE_WITH_PRESET], cwd=tmp_path, env=env,
      capture_output=True, text=True, timeout=600, check=False)
  assert parsed.returncode == 0, parsed.stderr[-3000:]
  got = json.loads(parsed.stdout.strip().splitlines()[-1])
  assert got["app"].startswith(str(site))
  assert got["path"] == str(site / "akd_tf" / "presets" /
                            "fashion_mnist_quick.cfg")
  # The preset's values, and a later flag overrides the preset's.
  assert (got["target_ms"], got["proxy_train_size"]) == (0.15, 3000)
  assert got["num_candidates"] == 3


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
