"""Tests of akd_tf.nas.history: durable appends, torn lines, round trips."""

import os
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


def test_load_history_reads_a_model_dirs_records(tmp_path):
  log = history.History(str(tmp_path / "history.jsonl"))
  records = [make_record(0), make_record(0, 1, history.STATUS_FAILED)]
  for record in records:
    log.append(record)
  assert history.load_history(str(tmp_path)) == records


def test_load_history_of_a_folder_without_a_search_names_it(tmp_path):
  with pytest.raises(FileNotFoundError, match=f"{tmp_path} holds no search"):
    history.load_history(str(tmp_path))


def test_load_history_is_akd_tf_load_history_without_tensorflow(tmp_path):
  history.History(str(tmp_path / "history.jsonl")).append(make_record(0))
  code = ("import sys, akd_tf; records = akd_tf.load_history(sys.argv[1]); "
          "print(len(records), 'tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code, str(tmp_path)],
                       capture_output=True, text=True, check=True,
                       env=dict(os.environ,
                                PYTHONPATH=os.pathsep.join(sys.path)))
  assert out.stdout.split() == ["1", "False"]


def test_to_dataframe_without_pandas_says_how_to_install_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas fails.
  with pytest.raises(ImportError, match="pip install pandas"):
    history.to_dataframe([make_record(0)])


def test_to_dataframe_has_a_row_per_record_and_a_column_per_field():
  pytest.importorskip("pandas")
  records = [make_record(0), make_record(0, 1, history.STATUS_FAILED)]
  frame = history.to_dataframe(records)
  assert list(frame["status"]) == ["ok", "failed"]
  assert list(frame["seconds_train"]) == [1.0, 1.0]
  assert frame["blocks"][0] == ("r1_k3_s11_e1_i32_o16",)
  assert "timings" not in frame.columns


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
