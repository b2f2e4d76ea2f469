"""Tests of akd_tf.distill.candidate_training: TrainConfig's checks, top-1
accuracy, BatchNormalization statistics, and train_candidate."""

import sys

import keras
import numpy as np
import pytest

from akd_tf.distill import candidate_training
from akd_tf.distill import data
from akd_tf.distill import distiller as distiller_lib
from akd_tf.distill import teacher as teacher_lib
from akd_tf.space import builder
from distill_testing import plain_student


def test_train_config_validates_its_fields():
  with pytest.raises(ValueError, match=r"alpha=2 must be in \[0, 1\]"):
    candidate_training.TrainConfig(kd_alpha=2)
  with pytest.raises(ValueError, match="optimizer='lamb'"):
    candidate_training.TrainConfig(optimizer="lamb")
  with pytest.raises(ValueError, match="epochs=0"):
    candidate_training.TrainConfig(epochs=0)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf")])
def test_train_config_temperature_must_be_positive(temperature):
  with pytest.raises(ValueError, match="temperature"):
    candidate_training.TrainConfig(kd_temperature=temperature)


def test_top1_accuracy_counts_rows_whose_largest_logit_is_the_label():
  logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0],
                     [1.0, 4.0, 2.0]], np.float32)
  labels = np.array([1, 0, 1, 2])
  assert candidate_training.top1_accuracy(logits, labels) == 0.5


def test_accuracy_of_matches_the_distillers_accuracy_metric(digits):
  distiller = distiller_lib.Distiller(plain_student(), alpha=0.0)
  distiller.compile(keras.optimizers.Adam(1e-3))
  distiller.fit(data.make_dataset(digits.train, 64), epochs=1, verbose=0,
                shuffle=False)
  metric = distiller.evaluate(data.make_dataset(digits.test, 100),
                              verbose=0, return_dict=True)["accuracy"]
  accuracy = candidate_training.accuracy_of(distiller.student, digits.test,
                                            batch_size=100)
  assert 0.2 < accuracy < 1.0
  assert accuracy * digits.test.size == round(accuracy * digits.test.size)
  assert accuracy == pytest.approx(metric, abs=1e-6)


def _bn_student(momentum):
  params = builder.preset_global_params(
      "mobilenet_v2", num_classes=10, depth_multiplier=0.5, head_size=64,
      stem_strides=1, dropout_rate=0.0, batch_norm_momentum=momentum)
  return builder.build_student(builder.preset_block_strings("mobilenet_v2")[:3],
                               params, (8, 8, 1))


def test_short_training_needs_bn_momentum_0_9_or_recalibration(digits):
  # 105 steps: with momentum 0.99 the moving statistics stay near their
  # initial values and evaluation falls to chance; with 0.9 it works, and
  # so do statistics recomputed after training (TrainConfig's default).
  accuracy = {}
  for momentum, recalibration in ((0.9, 0), (0.99, 0), (0.99, 1000)):
    keras.utils.set_random_seed(0)
    student = _bn_student(0.99)
    config = candidate_training.TrainConfig(
        epochs=5, batch_size=64, kd_alpha=0.0, learning_rate=3e-3,
        bn_momentum=momentum, bn_recalibration_images=recalibration)
    result = candidate_training.train_candidate(student, digits.train,
                                                digits.minival, config)
    accuracy[momentum, recalibration] = result.accuracy
  assert accuracy[0.9, 0] > 0.8, accuracy
  assert accuracy[0.99, 0] < 0.4, accuracy
  assert accuracy[0.99, 1000] > 0.8, accuracy


def test_train_candidate_reports_accuracy_losses_and_phase_times(
    digits, digits_teacher):
  logits = teacher_lib.teacher_logits(digits_teacher, digits.train)
  config = candidate_training.TrainConfig(epochs=2, batch_size=64)
  result = candidate_training.train_candidate(plain_student(), digits.train,
                                              digits.minival, config,
                                              teacher_logits=logits)
  assert result.mode == "kd_cached"
  assert 0.0 <= result.accuracy <= 1.0 and result.accuracy > 0.3
  assert result.train_seconds > 0 and result.eval_seconds > 0
  assert result.train_distillation_loss > 0 and result.loss > 0
  assert len(result.history["loss"]) == 2
  online = candidate_training.train_candidate(plain_student(), digits.train,
                                              digits.minival, config,
                                              teacher=digits_teacher)
  assert online.mode == "kd_online"
  assert online.accuracy == pytest.approx(result.accuracy, abs=0.02)
  plain = candidate_training.train_candidate(
      plain_student(), digits.train, digits.minival,
      candidate_training.TrainConfig(epochs=1, kd_alpha=0.0))
  assert plain.mode == "plain" and plain.train_distillation_loss == 0.0


def test_kd_candidate_without_teacher_is_refused(digits):
  with pytest.raises(ValueError, match="needs a teacher or cached"):
    candidate_training.train_candidate(
        plain_student(), digits.train, digits.minival,
        candidate_training.TrainConfig(kd_alpha=0.5))


def test_diverged_candidate_raises_candidate_diverged(digits):
  inputs = keras.Input((8, 8, 1))
  x = keras.layers.Rescaling(float("inf"))(inputs)  # 0 * inf is NaN.
  broken = keras.Model(inputs, keras.layers.Dense(10)(
      keras.layers.Flatten()(x)))
  with pytest.raises(candidate_training.CandidateDiverged,
                     match="non-finite loss") as e:
    candidate_training.train_candidate(
        broken, digits.train, digits.minival,
        candidate_training.TrainConfig(epochs=3, kd_alpha=0.0))
  assert e.value.train_seconds > 0
  assert not np.isfinite(e.value.history["loss"][-1])
  assert len(e.value.history["loss"]) == 1  # Stopped in the first epoch.


def test_bn_recalibration_sets_the_exact_mean_statistics():
  rng = np.random.default_rng(0)
  images = rng.normal(3.0, 2.0, size=(300, 2, 2, 1)).astype(np.float32)
  split = data.Split(name="train", size=300, fingerprint="x", images=images,
                     labels=np.zeros(300, np.int32))
  inputs = keras.Input((2, 2, 1))
  model = keras.Model(inputs, keras.layers.BatchNormalization(
      momentum=0.99)(inputs))
  used = candidate_training.recalibrate_batch_norm(model, split, images=200,
                                                   batch_size=100)
  assert used == 200
  layer = model.layers[-1]
  per_batch = [images[i:i + 100].mean() for i in (0, 100)]
  np.testing.assert_allclose(layer.moving_mean.numpy(), [np.mean(per_batch)],
                             rtol=1e-5)
  assert layer.momentum == 0.99


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
