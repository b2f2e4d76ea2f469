"""Tests of akd_tf.nas.report: best record, Pareto front, plots."""

import os
import subprocess
import sys

import pytest

from akd_tf.nas import history
from akd_tf.nas import report


def make(step, accuracy, latency_ms, reward, status=history.STATUS_OK):
  return history.CandidateRecord(
      step=step, index=0, actions=(step,), blocks=(), status=status,
      accuracy=accuracy, latency_ms=latency_ms, reward=reward)


RECORDS = [
    make(0, 0.80, 1.0, 0.80),
    make(1, 0.85, 2.0, 0.81),
    make(2, 0.82, 2.5, 0.79),   # Dominated by step 1.
    make(3, 0.90, 3.0, 0.84),
    make(4, None, 0.5, None, history.STATUS_FAILED),  # No reward.
]


def test_best_record_has_highest_reward_among_successes():
  assert report.best_record(RECORDS).step == 3
  assert report.best_record(RECORDS[4:]) is None


def test_pareto_front_drops_dominated_and_failed():
  assert [r.step for r in report.pareto_front(RECORDS)] == [0, 1, 3]


def test_moving_average_starts_at_first_value():
  assert list(report.moving_average([1.0, 0.0], decay=0.5)) == [1.0, 0.5]


def test_plots_are_written_as_png(tmp_path):
  pareto = tmp_path / "pareto.png"
  rewards = tmp_path / "reward.png"
  report.plot_pareto(RECORDS, 2.0, str(pareto))
  report.plot_rewards(RECORDS, str(rewards))
  for path in (pareto, rewards):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000


def test_plots_of_an_all_failed_search_still_render(tmp_path):
  path = tmp_path / "pareto.png"
  report.plot_pareto(RECORDS[4:], 1.0, str(path))
  assert path.exists()
  path = tmp_path / "reward.png"
  report.plot_rewards(RECORDS[4:], str(path))
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Runs in a fresh interpreter: the backend is chosen before akd_tf is
# imported, as a notebook chooses it.
PLOT_UNDER_SVG_BACKEND = """
import sys
import matplotlib
matplotlib.use("svg")
from akd_tf.nas import history, report
record = history.CandidateRecord(step=0, index=0, actions=(0,), blocks=(),
                                 status="ok", accuracy=0.8, latency_ms=1.0,
                                 reward=0.8)
report.plot_pareto([record], 1.0, sys.argv[1] + "/pareto.png")
report.plot_rewards([record], sys.argv[1] + "/reward.png")
print(matplotlib.get_backend())
"""


def test_plotting_leaves_matplotlibs_backend_as_the_user_set_it(tmp_path):
  out = subprocess.run(
      [sys.executable, "-c", PLOT_UNDER_SVG_BACKEND, str(tmp_path)],
      capture_output=True, text=True, check=True,
      env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
  assert out.stdout.split() == ["svg"]
  assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_top_table_lists_the_best_distinct_candidates_best_first():
  again = history.CandidateRecord(  # Step 3's student, sampled again.
      step=5, index=0, actions=(3,), blocks=(), status=history.STATUS_OK,
      accuracy=0.90, latency_ms=3.0, reward=0.84)
  lines = report.top_table(RECORDS + [again], k=3).splitlines()
  assert lines[0] == ("top 3 of 4 distinct candidates by reward (1 failed "
                      "evaluations):")
  assert lines[1].split() == ["rank", "step/cand", "reward", "accuracy",
                              "lat", "ms", "params", "MACs", "blocks"]
  assert [line.split()[:3] for line in lines[2:]] == [
      ["1", "3/0", "0.8400"], ["2", "1/0", "0.8100"], ["3", "0/0", "0.8000"]]


def test_top_table_of_an_all_failed_search_has_no_rows():
  assert report.top_table(RECORDS[4:]).splitlines()[0].startswith(
      "top 0 of 0 distinct candidates")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
