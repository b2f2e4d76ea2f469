"""The end of a search: train the winner by KD, save and export it.

The winner is trained as `akd-train --role=student` trains a student
(`akd_tf.distill.training.run_job`): under the search's tf.distribute
strategy, backing up its whole state every epoch (a killed final training
resumes from its last finished epoch when the search is run again), with
TensorBoard logs and progress lines with an ETA.

Writes under `out_dir`:
  final_job.json        what is trained (blocks, recipe, data, teacher); a
                        run with other settings starts afresh
  arch.json             the winner's ArchSpec (block strings, globals, input
                        shape)
  student.keras         the trained student (reloads with safe_mode=True)
  result.json           akd-train's result (accuracies, replicas, batch)
  metrics.csv, logs/    per-epoch metrics; TensorBoard logs
  backup/               the training state while it trains
  metrics.json          accuracies (mini-val, test), latency, size, wall times
and, when the search exports (`SearchConfig.export`), what `akd-export
--quantize=none` writes (`akd_tf.deploy.export.export_student`), each artifact
verified against the Keras model on the test split:
  saved_model/          serving signature 'serving_default': image -> logits
  student_float.tflite  float32 TFLite
  export_report.json    the verification (logit differences, top-1, sizes,
                        LiteRT latency)
An int8 export of the winner is `akd-export --quantize=int8|qat` on
student.keras.

Public names: FinalResult, finalize.
"""

import dataclasses
import json
import os
import shutil
from typing import Callable, Optional

import keras

from akd_tf.deploy import export as export_lib
from akd_tf.distill import data as data_lib
from akd_tf.distill import training
from akd_tf.nas import history
from akd_tf.space import arch
from akd_tf.space import profile

__all__ = ["FinalResult", "finalize"]


@dataclasses.dataclass(frozen=True)
class FinalResult:
  """The winner after final training.

  Attributes:
    blocks: Its block strings.
    minival_accuracy: Accuracy on the mini-validation split.
    test_accuracy: Accuracy on the test split (never seen by the search).
    latency_ms: Latency of the exported float32 TFLite model.
    params: Parameters.
    macs: Multiply-accumulates per image.
    train_seconds: Wall time of the final training (of its last run, when
      it was resumed).
    out_dir: Where the artifacts are.
  """

  blocks: tuple
  minival_accuracy: float
  test_accuracy: float
  latency_ms: float
  params: int
  macs: int
  train_seconds: float
  out_dir: str

  def get_config(self) -> dict:
    config = dataclasses.asdict(self)
    config["blocks"] = list(self.blocks)
    return config


def _train_job(spec: arch.ArchSpec, config, teacher_path: Optional[str],
               out_dir: str) -> training.TrainJob:
  """The `akd-train` job of the winner: the search's final recipe and
  data, KD from the search's teacher, under the search's strategy."""
  distills = config.final.kd_alpha > 0
  return training.TrainJob(
      role="student", model_dir=out_dir, data=config.final_data(),
      train=config.final, arch=spec,
      teacher_path=teacher_path if distills else None,
      teacher_output=config.teacher_output, cache_dir=config.cache_dir,
      strategy=config.strategy, tpu=config.tpu)


def _start_or_resume(job: training.TrainJob, out_dir: str, log) -> None:
  """Keeps `out_dir` for a job with the same settings (a killed final
  training resumes from its backup; a finished one is not rerun), or
  empties it when it holds another winner's or recipe's training."""
  path = os.path.join(out_dir, "final_job.json")
  settings = {name: value for name, value in json.loads(json.dumps(
      dataclasses.asdict(job))).items()
               if name not in ("model_dir", "strategy", "tpu")}
  if os.path.exists(path):
    with open(path) as f:
      if json.load(f) == settings:
        return
    log(f"{out_dir} holds the final training of another winner or recipe: "
        "starting afresh")
    shutil.rmtree(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(settings, f, indent=2, sort_keys=True)
    f.write("\n")


def _export(model, spec, model_path, config, out_dir, log) -> float:
  """Writes akd-export's verified float artifacts of the winner to
  `out_dir`; returns the float TFLite's LiteRT latency in ms."""
  report = export_lib.export_student(
      model, export_lib.ExportConfig(
          output_dir=out_dir, quantize="none", data=config.final_data(),
          seed=config.final.seed, latency=config.latency),
      spec, model_path=model_path, log=log)
  log(f"exported SavedModel and float TFLite in "
      f"{report['export_seconds']:.1f} s; float max |diff| "
      f"{report['float_max_abs_diff']:.2e}")
  return report["artifacts"]["tflite_float"]["latency_ms"]


def finalize(best: history.CandidateRecord, config,
             global_params: arch.GlobalParams, teacher_path: Optional[str],
             out_dir: str, log: Callable[[str], None]) -> FinalResult:
  """Trains the search's winner with KD on the final data and exports it.

  Args:
    best: The winning record.
    config: The `akd_tf.nas.config.SearchConfig` (final recipe, data,
      strategy, export switch).
    global_params: The students' settings, num_classes matching the data.
    teacher_path: The teacher the winner distills from (a `.keras` file or
      SavedModel); None when the final recipe's kd_alpha is 0.
    out_dir: Where the artifacts go (created). A final training killed in
      it resumes from its last finished epoch.
    log: Progress lines.

  Returns:
    A `FinalResult`; its latency is NaN when the search does not export.

  Raises:
    candidate_training.CandidateDiverged: final training diverged.
    training.JobInputError: the data or the teacher do not fit.
    akd_tf.latency.errors.ConversionError: export to TFLite failed.
  """
  data = data_lib.load_data(config.final_data())
  spec = arch.ArchSpec(arch.decode_blocks(best.blocks), global_params,
                       data.input_shape)
  job = _train_job(spec, config, teacher_path, out_dir)
  _start_or_resume(job, out_dir, log)
  spec.to_json(os.path.join(out_dir, "arch.json"))
  log(f"final training: {config.final.epochs} epochs on {data.train.size} "
      f"images, kd_alpha {config.final.kd_alpha}, strategy {config.strategy}")
  trained = training.run_job(
      job, log=lambda line: log(f"final training: {line}"))
  model = keras.saving.load_model(trained.model_path, safe_mode=True)
  size = profile.profile_model(model)
  latency_ms = float("nan")
  if config.export:
    latency_ms = _export(model, spec, trained.model_path, config, out_dir,
                         log)
  result = FinalResult(
      blocks=spec.block_strings, minival_accuracy=trained.minival_accuracy,
      test_accuracy=trained.test_accuracy, latency_ms=latency_ms,
      params=size.params, macs=size.macs,
      train_seconds=trained.train_seconds, out_dir=out_dir)
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(result.get_config(), f, indent=2)
    f.write("\n")
  log(f"final student: minival {trained.minival_accuracy:.4f}, test "
      f"{trained.test_accuracy:.4f}, TFLite latency {latency_ms:.3f} ms, "
      f"{size.params:,} params")
  return result
