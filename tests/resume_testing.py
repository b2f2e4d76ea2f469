"""What a training resumed after SIGKILL must show: one resume line, then
exactly the epochs that were left, with its files continuing the first run's
(`akd_tf.distill.training.fit_resumable`, behind akd-train and the winner's
final training)."""

import csv
import json
import os
import re


def assert_resumed_the_remaining_epochs(stderr: str, out_dir: str,
                                        epochs: int) -> int:
  """Checks the resumed run of an `epochs`-epoch training in `out_dir`.

  Args:
    stderr: The resumed run's log.
    out_dir: Its model directory (result.json, metrics.csv, backup/).
    epochs: The epochs of the whole training.

  Returns:
    The epochs the killed run had finished (1 or more, fewer than
    `epochs`).
  """
  lines = stderr.splitlines()
  resumed = [line for line in lines if "resuming from" in line]
  assert len(resumed) == 1, stderr[-3000:]
  done = int(re.search(r"(\d+) of %d epoch" % epochs, resumed[0]).group(1))
  assert 1 <= done < epochs, resumed[0]
  epochs_run = [line for line in lines if " took " in line]
  assert len(epochs_run) == epochs - done, epochs_run
  assert f"epoch {epochs}/{epochs} took" in epochs_run[-1]
  assert "ETA" in epochs_run[-1]
  with open(os.path.join(out_dir, "result.json")) as f:
    assert json.load(f)["epochs"] == epochs
  with open(os.path.join(out_dir, "metrics.csv")) as f:
    logged = [int(row["epoch"]) for row in csv.DictReader(f)]
  assert logged[-epochs + done:] == list(range(done, epochs)), logged
  assert not os.path.exists(
      os.path.join(out_dir, "backup", "training_metadata.json"))
  return done
