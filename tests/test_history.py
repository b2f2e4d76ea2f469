"""Tests of akd_tf.nas.history: durable appends, torn lines, round trips."""

import subprocess
import sys

import pytest

from akd_tf.nas import history


def make_record(step, index=0, status=history.STATUS_OK):
  return history.CandidateRecord(
      step=step, index=index, actions=(0, 1, 2), blocks=("r1_k3_s11_e1_i32_o16",),
      status=status, accuracy=0.5 if status == history.STATUS_OK else None,
      latency_ms=1.25, reward=0.45, timings={"train": 1.0})


def test_append_and_read_round_trip(tmp_path):
  log = history.History(str(tmp_path / "history.jsonl"))
  records = [make_record(0), make_record(0, 1, history.STATUS_FAILED),
             make_record(1)]
  for record in records:
    log.append(record)
  assert history.History(log.path).read() == records


def test_read_of_missing_file_is_empty(tmp_path):
  assert history.History(str(tmp_path / "none.jsonl")).read() == []


def test_torn_last_line_is_dropped_and_truncated_on_append(tmp_path):
  log = history.History(str(tmp_path / "history.jsonl"))
  log.append(make_record(0))
  with open(log.path, "a") as f:
    f.write('{"step": 1, "index": 0, "actio')
  assert history.History(log.path).read() == [make_record(0)]
  resumed = history.History(log.path)
  resumed.append(make_record(1))
  assert resumed.read() == [make_record(0), make_record(1)]


def test_corrupt_middle_line_is_an_error(tmp_path):
  path = tmp_path / "history.jsonl"
  log = history.History(str(path))
  log.append(make_record(0))
  with open(path, "a") as f:
    f.write("garbage\n")
  log.append(make_record(1))
  with pytest.raises(ValueError, match="history.jsonl:2: not a candidate"):
    log.read()


def test_record_rejects_unknown_status():
  with pytest.raises(ValueError, match="status 'done'"):
    make_record(0, status="done")


def test_appends_from_a_killed_process_survive(tmp_path):
  path = tmp_path / "history.jsonl"
  code = (
      "import os, signal\n"
      "from akd_tf.nas import history\n"
      f"log = history.History({str(path)!r})\n"
      "for i in range(5):\n"
      "  log.append(history.CandidateRecord(step=i, index=0, actions=(0,),\n"
      "      blocks=('r1_k3_s11_e1_i32_o16',), status='ok'))\n"
      "os.kill(os.getpid(), signal.SIGKILL)\n")
  result = subprocess.run([sys.executable, "-c", code], check=False,
                          timeout=60)
  assert result.returncode == -9
  assert [r.step for r in history.History(str(path)).read()] == list(range(5))


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
