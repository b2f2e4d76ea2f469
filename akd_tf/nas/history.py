"""The search's append-only, crash-safe record of finished evaluations.

`history.jsonl` holds one JSON object per finished candidate evaluation. Each
append is written in one `write` call and fsync'd before `append` returns, so
after a SIGKILL at any moment the file holds every evaluation that was
reported finished, plus at most one torn last line, which `read` drops (and
`History` truncates before appending again).

`load_history(model_dir)` reads a search's records back (what
`akd_tf.load_history` is), and `to_dataframe(records)` makes them a pandas
DataFrame, one row per evaluation, when pandas is installed.

Public names: History, CandidateRecord, STATUS_OK, STATUS_FAILED,
load_history, to_dataframe.
"""

import dataclasses
import json
import os
from typing import Iterable, List, Optional, Tuple

from akd_tf import jsonl

__all__ = ["CandidateRecord", "History", "STATUS_FAILED", "STATUS_OK",
           "load_history", "to_dataframe"]

STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class CandidateRecord:
  """One finished evaluation of a sampled student.

  Attributes:
    step: Controller step (batch) the candidate was sampled in.
    index: Position of the candidate within its batch.
    actions: The controller's actions.
    blocks: The student's block strings.
    status: STATUS_OK or STATUS_FAILED.
    accuracy: Mini-validation accuracy that enters the reward (KD-trained for
      AKD, plain for NAS); None when failed.
    latency_ms: The latency statistic the reward uses; None when unmeasured.
    reward: The candidate's reward (`reward.compute_reward`); None for a
      failed candidate, which has none: the search tells the controller it
      failed and the controller gives it its own penalty (the lowest
      successful reward it has seen; see `controller.ReinforceController`).
      Histories written before that hold 0.0 for failures; the search goes
      by `status`, never by this value, to tell a failure.
    params: Parameters of the student.
    macs: Multiply-accumulates per image.
    error: What went wrong, for failed candidates.
    timings: Wall seconds per phase ('build', 'latency', 'train', 'eval',
      'total').
    latency_source: 'measured', 'cache', 'lut' or 'command'.
    worker: Identifier of the process that evaluated the candidate.
  """

  step: int
  index: int
  actions: Tuple[int, ...]
  blocks: Tuple[str, ...]
  status: str
  accuracy: Optional[float] = None
  latency_ms: Optional[float] = None
  reward: Optional[float] = None
  params: int = 0
  macs: int = 0
  error: str = ""
  timings: dict = dataclasses.field(default_factory=dict)
  latency_source: str = ""
  worker: str = ""

  def __post_init__(self):
    object.__setattr__(self, "actions", tuple(int(a) for a in self.actions))
    object.__setattr__(self, "blocks", tuple(self.blocks))
    if self.status not in (STATUS_OK, STATUS_FAILED):
      raise ValueError(f"status '{self.status}' is not '{STATUS_OK}' or "
                       f"'{STATUS_FAILED}'")

  @property
  def key(self) -> Tuple[int, int]:
    """(step, index): the identity of a candidate within one search."""
    return (self.step, self.index)

  @property
  def ok(self) -> bool:
    return self.status == STATUS_OK

  def get_config(self) -> dict:
    config = dataclasses.asdict(self)
    config["actions"] = list(self.actions)
    config["blocks"] = list(self.blocks)
    return config

  @classmethod
  def from_config(cls, config: dict) -> "CandidateRecord":
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in config.items() if k in known})


class History:
  """Reads and appends `CandidateRecord`s to a JSON-lines file.

  Args:
    path: The history file; created on the first append.
  """

  def __init__(self, path: str):
    self.path = path

  def read(self) -> List[CandidateRecord]:
    """Returns the records in file order, dropping a torn last line.

    Raises:
      ValueError: a line other than the last is not a valid record (the file
        was edited or corrupted; the message names the line).
    """
    if not os.path.exists(self.path):
      return []
    with open(self.path, "rb") as f:
      lines = f.read().split(b"\n")
    records = []
    for number, line in enumerate(lines, start=1):
      if not line.strip():
        continue
      try:
        records.append(CandidateRecord.from_config(json.loads(line)))
      except (ValueError, TypeError) as error:
        if number == len(lines):
          break  # A torn write from a killed process: never acknowledged.
        raise ValueError(f"{self.path}:{number}: not a candidate record "
                         f"({error})") from None
    return records

  def append(self, record: CandidateRecord) -> None:
    """Appends `record` durably: written in one call and fsync'd
    (`akd_tf.jsonl.append`, which also cuts a torn last line off first)."""
    jsonl.append(self.path, record.get_config())


def load_history(model_dir: str) -> List[CandidateRecord]:
  """The records of the search in `model_dir`, in the order they finished.

  Raises:
    FileNotFoundError: `model_dir` holds no history.jsonl.
    ValueError: a line other than the last is not a record.
  """
  path = os.path.join(model_dir, "history.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: {model_dir} holds no "
                            "search (give the --model_dir of akd-search)")
  return History(path).read()


def to_dataframe(records: Iterable[CandidateRecord]):
  """A pandas DataFrame of `records`: one row per evaluation, a column per
  field ('blocks' and 'actions' as tuples; 'timings' spread into
  'seconds_<phase>' columns).

  Raises:
    ImportError: pandas is not installed.
  """
  try:
    import pandas  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("to_dataframe needs pandas, which akd_tf does not "
                      "install: pip install pandas (the records themselves "
                      "are load_history's list)") from None
  rows = []
  for record in records:
    row = dataclasses.asdict(record)
    row["actions"], row["blocks"] = record.actions, record.blocks
    for phase, seconds in row.pop("timings").items():
      row[f"seconds_{phase}"] = seconds
    rows.append(row)
  columns = [f.name for f in dataclasses.fields(CandidateRecord)
             if f.name != "timings"]
  return pandas.DataFrame(rows, columns=columns + sorted(
      {key for row in rows for key in row} - set(columns)))
