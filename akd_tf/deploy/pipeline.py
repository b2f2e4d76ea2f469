"""What akd-search runs: the search, then the winner trained and exported.

  search_and_export(config, model_dir, log)
      `akd_tf.nas.loop.run_search`, then `finalize.finalize` of its best
      record into <model_dir>/best

The search does not know about deployment: it returns its best record, the
teacher's path and the students' settings, and this module, one layer
above, trains the winner by KD from that teacher (as akd-train does:
under `SearchConfig.strategy`, resumable) and exports it. Under
`model_dir/best`: arch.json, student.keras, metrics.json, TensorBoard logs
and, with export on, akd-export's verified float export (saved_model/,
student_float.tflite, export_report.json; see `finalize`).

Public names: search_and_export.
"""

import dataclasses
import logging
import os
import time
from typing import Callable

from akd_tf.deploy import finalize
from akd_tf.nas import config as config_lib
from akd_tf.nas import loop

__all__ = ["search_and_export"]

_LOG = logging.getLogger(__name__)


def search_and_export(config: config_lib.SearchConfig, model_dir: str,
                      log: Callable[[str], None] = _LOG.info
                      ) -> loop.SearchResult:
  """Runs (or resumes) a search in `model_dir`, then trains its winner.

  Args:
    config: The search (its `final` recipe and `export` switch included).
    model_dir: Where everything is written; an existing search there is
      resumed, and a finished one goes straight to the final training,
      which resumes from its last finished epoch when it was killed.
    log: Receives one progress line per event; default: the INFO log of
      logger 'akd_tf.deploy.pipeline'.

  Returns:
    The search's `SearchResult` with `final` (a `finalize.FinalResult`;
    None when every candidate failed), the 'final' phase in
    `phase_seconds` (loading the teacher included) and `wall_seconds` of
    this whole call.

  Raises:
    ValueError, FileNotFoundError, ImportError: see `loop.run_search`.
    candidate_training.CandidateDiverged: the final training diverged.
    akd_tf.distill.training.JobInputError: the final data or the teacher
      do not fit.
    akd_tf.latency.errors.ConversionError: export to TFLite failed.
  """
  start = time.time()
  result = loop.run_search(config, model_dir, log)
  if result.best is None:
    return result
  final_start = time.perf_counter()
  final = finalize.finalize(result.best, config, result.global_params,
                            result.teacher_path,
                            os.path.join(model_dir, "best"), log)
  phase_seconds = dict(result.phase_seconds,
                       final=time.perf_counter() - final_start)
  return dataclasses.replace(result, final=final, phase_seconds=phase_seconds,
                             wall_seconds=time.time() - start)
