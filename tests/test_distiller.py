"""Tests of akd_tf.distill.distiller: the Distiller's loss, metrics, inputs
and teachers, and strategies."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from akd_tf.distill import data
from akd_tf.distill import distiller as distiller_lib
from akd_tf.distill import teacher as teacher_lib
from distill_testing import plain_student

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log_softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_loss_matches_a_hand_computation():
  rng = np.random.default_rng(0)
  t = rng.normal(size=(6, 10)).astype(np.float32) * 3
  s = rng.normal(size=(6, 10)).astype(np.float32) * 3
  y = rng.integers(0, 10, 6)
  alpha, temp = 0.3, 2.5
  p_t = np.exp(_log_softmax(t / temp))
  kl = (p_t * (np.log(p_t) - _log_softmax(s / temp))).sum(-1).mean()
  ce = -_log_softmax(s)[np.arange(6), y].mean()
  distiller = distiller_lib.Distiller(plain_student(), alpha=alpha,
                                      temperature=temp)
  total, student_loss, kd = (float(v) for v in distiller.compute_losses(
      y, s, t))
  assert kd == pytest.approx(kl * temp**2, rel=1e-5)
  assert student_loss == pytest.approx(ce, rel=1e-5)
  assert total == pytest.approx(alpha * kl * temp**2 + (1 - alpha) * ce,
                                rel=1e-5)
  # Keras' own LogitsDistillation (KL on clipped probabilities) agrees when
  # given a KLDivergence object (its default string 'kl_divergence' skips
  # the softmax and the T^2 in Keras 3.15).
  keras_kd = keras.distillation.LogitsDistillation(
      temperature=temp, loss=keras.losses.KLDivergence())
  assert float(keras_kd.compute_loss(t, s)) == pytest.approx(kd, rel=1e-4)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, "0.5", None])
def test_alpha_outside_unit_interval_is_refused(alpha):
  with pytest.raises(ValueError, match="alpha"):
    distiller_lib.Distiller(plain_student(), alpha=alpha)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf")])
def test_temperature_must_be_positive(temperature):
  with pytest.raises(ValueError, match="temperature"):
    distiller_lib.Distiller(plain_student(), temperature=temperature)


def test_incompatible_teacher_is_refused():
  inputs = keras.Input((8, 8, 1))
  wrong = keras.Model(inputs, keras.layers.Dense(3)(
      keras.layers.Flatten()(inputs)))
  with pytest.raises(ValueError, match="output shapes are incompatible"):
    distiller_lib.Distiller(plain_student(), teacher=wrong)


def test_compile_refuses_a_loss():
  distiller = distiller_lib.Distiller(plain_student(), alpha=0.0)
  with pytest.raises(ValueError, match="'loss' cannot be set"):
    distiller.compile(optimizer="adam", loss="mse")


def test_plain_training_needs_no_teacher_and_logs_real_values(digits):
  distiller = distiller_lib.Distiller(plain_student(), alpha=0.0)
  distiller.compile(keras.optimizers.Adam(1e-3))
  history = distiller.fit(data.make_dataset(digits.train, 64), epochs=2,
                          verbose=0, shuffle=False).history
  assert set(history) == {"loss", "student_loss", "accuracy"}
  assert history["loss"] == history["student_loss"]
  assert all(v > 0.01 for v in history["loss"])
  assert history["accuracy"][-1] > 0.3


def test_kd_without_teacher_or_logits_is_refused(digits):
  distiller = distiller_lib.Distiller(plain_student(), alpha=0.5)
  distiller.compile()
  with pytest.raises(ValueError, match="needs teacher logits"):
    distiller.fit(data.make_dataset(digits.train, 64), epochs=1, verbose=0,
                  shuffle=False)


def test_kd_history_holds_the_real_loss_parts(digits, digits_teacher):
  distiller = distiller_lib.Distiller(plain_student(), teacher=digits_teacher,
                                      alpha=0.7, temperature=3.0)
  distiller.compile(keras.optimizers.Adam(1e-3))
  before = teacher_lib.weights_hash(digits_teacher)
  history = distiller.fit(data.make_dataset(digits.train, 64), epochs=2,
                          verbose=0, shuffle=False).history
  for key in ("loss", "student_loss", "distillation_loss", "accuracy"):
    assert all(v > 0.01 for v in history[key]), key
  for e in range(2):
    assert history["loss"][e] == pytest.approx(
        0.7 * history["distillation_loss"][e] +
        0.3 * history["student_loss"][e], rel=1e-4)
  assert teacher_lib.weights_hash(digits_teacher) == before  # Frozen.
  assert not digits_teacher.trainable
  # Evaluation never runs the teacher and reports no distillation loss.
  result = distiller.evaluate(data.make_dataset(digits.minival, 64),
                              verbose=0, return_dict=True)
  assert set(result) == {"loss", "student_loss", "accuracy"}


def test_cached_logits_train_exactly_like_the_online_teacher(
    digits, digits_teacher):
  logits = teacher_lib.teacher_logits(digits_teacher, digits.train)
  weights, histories = [], []
  for cached in (False, True):
    student = plain_student()
    distiller = distiller_lib.Distiller(
        student, teacher=None if cached else digits_teacher, alpha=0.9,
        temperature=4.0)
    distiller.compile(keras.optimizers.SGD(0.05))
    histories.append(distiller.fit(data.make_dataset(
        digits.train, 64, teacher_logits=logits if cached else None),
                                   epochs=2, verbose=0,
                                   shuffle=False).history)
    weights.append(student.get_weights())
  assert max(np.abs(a - b).max() for a, b in zip(*weights)) < 1e-5
  for key in histories[0]:
    np.testing.assert_allclose(histories[0][key], histories[1][key],
                               rtol=1e-5)


def _as_dicts(dataset):
  """(images, labels) batches as ({IMAGES_KEY: images}, labels)."""
  return dataset.map(lambda x, y: ({data.IMAGES_KEY: x}, y))


def test_dict_inputs_without_cached_logits_get_them_from_the_teacher(
    digits, digits_teacher):
  weights, histories = [], []
  for as_dicts in (False, True):
    student = plain_student()
    distiller = distiller_lib.Distiller(student, teacher=digits_teacher,
                                        alpha=0.7, temperature=3.0)
    distiller.compile(keras.optimizers.SGD(0.05))
    train = data.make_dataset(digits.train, 64)
    histories.append(distiller.fit(_as_dicts(train) if as_dicts else train,
                                   epochs=2, verbose=0,
                                   shuffle=False).history)
    weights.append(student.get_weights())
  assert all(v > 0.01 for v in histories[1]["distillation_loss"])
  for key in histories[0]:
    np.testing.assert_allclose(histories[1][key], histories[0][key],
                               rtol=1e-5, err_msg=key)
  assert max(np.abs(a - b).max() for a, b in zip(*weights)) < 1e-5


def test_dict_inputs_without_cached_logits_or_teacher_are_refused(digits):
  distiller = distiller_lib.Distiller(plain_student(), alpha=0.5)
  distiller.compile()
  with pytest.raises(ValueError, match="needs teacher logits"):
    distiller.fit(_as_dicts(data.make_dataset(digits.train, 64)), epochs=1,
                  verbose=0, shuffle=False)


def _first_distillation_loss(student_weights, teacher, batch, **kwargs):
  """The distillation loss of one step on `batch` (before the update)."""
  student = plain_student()
  student.set_weights(student_weights)
  distiller = distiller_lib.Distiller(student, teacher=teacher, alpha=1.0,
                                      temperature=4.0, **kwargs)
  distiller.compile(keras.optimizers.SGD(0.0))
  return distiller.fit(batch, epochs=1, verbose=0).history[
      "distillation_loss"][0]


def test_distiller_takes_a_softmax_teacher_only_as_probabilities(
    softmax_teacher, digits):
  probabilities, logits = softmax_teacher
  batch = data.make_dataset(data.take(digits.train, 128), 128)
  weights = plain_student().get_weights()
  with pytest.raises(ValueError, match="pass --teacher_output=probabilities"):
    _first_distillation_loss(weights, probabilities, batch)
  expected = _first_distillation_loss(weights, logits, batch)
  assert expected > 0.1
  assert _first_distillation_loss(
      weights, probabilities, batch,
      teacher_output="probabilities") == pytest.approx(expected, abs=1e-5)


def test_distiller_refuses_a_logits_teacher_said_to_output_probabilities(
    digits, digits_teacher):
  distiller = distiller_lib.Distiller(plain_student(), teacher=digits_teacher,
                                      teacher_output="probabilities")
  distiller.compile()
  with pytest.raises(ValueError, match="needs --teacher_output=logits"):
    distiller.fit(data.make_dataset(digits.train, 64), epochs=1, verbose=0)


_MIRRORED_CHECK = r"""
import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["CUDA_VISIBLE_DEVICES"] = ""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from akd_tf.distill import data, distiller, teacher

digits = data.load_data(data.DataConfig("digits", train_size=256))

def student():
  inputs = keras.Input((8, 8, 1))
  x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
  return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))

keras.utils.set_random_seed(0)
w0 = student().get_weights()
t0 = teacher.build_teacher("cnn_deep", (8, 8, 1), 10)
# Sharper teacher logits than an untrained teacher's near-uniform ones.
t0.layers[-1].kernel.assign(t0.layers[-1].kernel * 20.0)
tw = t0.get_weights()
logits = teacher.teacher_logits(t0, digits.train)
out = {}
for name, strategy in (
    ("one", tf.distribute.get_strategy()),
    ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
  for feed in ("online", "cached"):
    with strategy.scope():
      s = student(); s.set_weights(w0)
      t = teacher.build_teacher("cnn_deep", (8, 8, 1), 10); t.set_weights(tw)
      d = distiller.Distiller(s, teacher=t if feed == "online" else None,
                              alpha=0.7, temperature=3.0)
      d.compile(keras.optimizers.SGD(0.1))
    ds = data.make_dataset(digits.train, 64, teacher_logits=(
        logits if feed == "cached" else None)).take(3)
    history = d.fit(ds, epochs=2, verbose=0).history
    out[name + "_" + feed] = {
        "replicas": strategy.num_replicas_in_sync,
        "weights": [w.tolist() for w in s.get_weights()],
        "history": history}
print(json.dumps(out))
"""


def test_mirrored_strategy_matches_one_device_weights_and_logs():
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, "-c", _MIRRORED_CHECK], env=env,
                        capture_output=True, text=True, timeout=300,
                        check=False, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  for feed in ("online", "cached"):
    one, mirrored = out[f"one_{feed}"], out[f"mirrored_{feed}"]
    assert one["replicas"] == 1 and mirrored["replicas"] == 2
    diff = max(np.abs(np.array(a) - np.array(b)).max()
               for a, b in zip(one["weights"], mirrored["weights"]))
    assert diff < 1e-5, (feed, diff)
    assert set(mirrored["history"]) == {"loss", "student_loss",
                                        "distillation_loss", "accuracy"}
    for key, values in one["history"].items():
      assert all(v > 0.01 for v in mirrored["history"][key]), key
      np.testing.assert_allclose(mirrored["history"][key], values,
                                 rtol=1e-4, err_msg=key)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
