"""Tests of akd_tf.analysis.plots on the choice distributions of two groups."""

import os
import subprocess
import sys

import numpy as np
import pytest

from akd_tf.analysis import plots
from akd_tf.analysis import teacher_dependence as dependence
from akd_tf.nas import history
from akd_tf.space import search_space

SPACE = search_space.SearchSpace()


def sampled_run(seed, teacher, n=20):
  """A search of `n` random candidates, held in memory."""
  rng = np.random.default_rng(seed)
  records = []
  for step in range(n):
    actions = SPACE.sample(rng)
    records.append(history.CandidateRecord(
        step=step, index=0, actions=actions,
        blocks=[b.encode() for b in SPACE.decode(actions)],
        status=history.STATUS_OK, accuracy=0.9, latency_ms=1.0,
        reward=float(rng.random())))
  return dependence.SearchRun(model_dir=f"/runs/{teacher}", teacher=teacher,
                              reward_accuracy="kd", seed=seed,
                              records=tuple(records))


def test_choice_distributions_plot_is_a_png(tmp_path):
  runs = [sampled_run(1, "resnet_wide"), sampled_run(2, "cnn_deep")]
  distributions = dependence.choice_distributions(runs, top_k=5)
  path = tmp_path / "choices.png"
  plots.plot_choice_distributions(distributions, str(path), title="two")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert path.stat().st_size > 20000


def test_plotting_leaves_matplotlibs_backend_as_the_user_set_it(tmp_path):
  # A fresh interpreter: the backend is chosen before akd_tf is imported.
  code = ("import sys, matplotlib; matplotlib.use('svg'); import test_plots; "
          "test_plots.test_choice_distributions_plot_is_a_png("
          "__import__('pathlib').Path(sys.argv[1])); "
          "print(matplotlib.get_backend())")
  out = subprocess.run(
      [sys.executable, "-c", code, str(tmp_path)], capture_output=True,
      text=True, check=True, cwd=os.path.dirname(os.path.abspath(__file__)),
      env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
  assert out.stdout.split() == ["svg"]


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
