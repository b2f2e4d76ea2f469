"""The end of a search: train the winner by KD, save and export it.

Writes under `out_dir`:
  arch.json             the winner's ArchSpec (block strings, globals, input
                        shape)
  student.keras         the trained student (reloads with safe_mode=True)
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
from typing import Callable

import keras

from akd_tf.deploy import export as export_lib
from akd_tf.distill import data as data_lib
from akd_tf.distill import distiller
from akd_tf.distill import teacher as teacher_lib
from akd_tf.distill import training
from akd_tf.nas import history
from akd_tf.space import arch
from akd_tf.space import builder
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
    train_seconds: Wall time of the final training.
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


def _train(model, data, config, teacher, log) -> distiller.CandidateResult:
  """Trains the winner with the search's final recipe (KD from cached
  teacher logits when the data is in memory)."""
  logits = None
  if config.final.kd_alpha > 0 and data.train.images is not None:
    logits = teacher_lib.teacher_logits(teacher, data.train,
                                        cache_dir=config.cache_dir,
                                        teacher_output=config.teacher_output)
  log(f"final training: {config.final.epochs} epochs on {data.train.size} "
      f"images, kd_alpha {config.final.kd_alpha}")
  progress = training.EtaLogger(lambda line: log(f"final training: {line}"))
  return distiller.train_candidate(model, data.train, data.minival,
                                   config.final, teacher=teacher,
                                   teacher_logits=logits,
                                   teacher_output=config.teacher_output,
                                   callbacks=[progress])


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
             global_params: arch.GlobalParams, teacher: keras.Model,
             out_dir: str, log: Callable[[str], None]) -> FinalResult:
  """Trains the search's winner with KD on the final data and exports it.

  Args:
    best: The winning record.
    config: The `akd_tf.nas.loop.SearchConfig` (final recipe, data,
      export switch).
    global_params: The students' settings, num_classes matching the data.
    teacher: The teacher the winner distills from.
    out_dir: Where the artifacts go (created).
    log: Progress lines.

  Returns:
    A `FinalResult`; its latency is NaN when the search does not export.

  Raises:
    distiller.CandidateDiverged: final training diverged.
    akd_tf.latency.errors.ConversionError: export to TFLite failed.
  """
  os.makedirs(out_dir, exist_ok=True)
  data = data_lib.load_data(config.final_data())
  spec = arch.ArchSpec(arch.decode_blocks(best.blocks), global_params,
                       data.input_shape)
  spec.to_json(os.path.join(out_dir, "arch.json"))
  keras.utils.set_random_seed(config.final.seed)
  model = builder.build_from_spec(spec)
  size = profile.profile_model(model)
  trained = _train(model, data, config, teacher, log)
  test_accuracy = distiller.accuracy_of(model, data.test)
  model_path = os.path.join(out_dir, "student.keras")
  model.save(model_path)
  latency_ms = float("nan")
  if config.export:
    latency_ms = _export(model, spec, model_path, config, out_dir, log)
  result = FinalResult(
      blocks=spec.block_strings, minival_accuracy=trained.accuracy,
      test_accuracy=test_accuracy, latency_ms=latency_ms, params=size.params,
      macs=size.macs, train_seconds=trained.train_seconds, out_dir=out_dir)
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(result.get_config(), f, indent=2)
    f.write("\n")
  log(f"final student: minival {trained.accuracy:.4f}, test "
      f"{test_accuracy:.4f}, TFLite latency {latency_ms:.3f} ms, "
      f"{size.params:,} params")
  return result
