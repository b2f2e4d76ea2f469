"""Tests of akd_tf.distill.teacher: loading, checks, built-ins, caches."""

import os
import sys

import keras
import numpy as np
import pytest

from akd_tf.distill import distiller as distiller_lib
from akd_tf.distill import teacher


def _small_model(input_shape=(8, 8, 1), classes=10, activation=None):
  inputs = keras.Input(input_shape)
  x = keras.layers.Flatten()(inputs)
  return keras.Model(inputs, keras.layers.Dense(classes,
                                                activation=activation)(x))


@pytest.fixture(scope="module")
def digits_images(digits):
  return teacher.sample_images(digits.train)


@pytest.mark.parametrize("name", teacher.TEACHERS)
def test_builtin_teachers_output_logits_of_the_data(name, digits_images):
  model = teacher.build_teacher(name, (8, 8, 1), 10)
  out = model(np.zeros((2, 8, 8, 1), np.float32))
  assert out.shape == (2, 10)
  teacher.check_teacher(model, (8, 8, 1), 10, "digits", images=digits_images)


def test_builtin_teachers_differ_in_structure():
  wide = teacher.build_teacher("resnet_wide", (28, 28, 1), 10)
  deep = teacher.build_teacher("cnn_deep", (28, 28, 1), 10)

  def convs(model):
    return [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]

  assert any(isinstance(l, keras.layers.Add) for l in wide.layers)
  assert not any(isinstance(l, keras.layers.Add) for l in deep.layers)
  assert max(c.filters for c in convs(wide)) > max(
      c.filters for c in convs(deep))
  assert len([c for c in convs(deep) if c.kernel_size == (3, 3)]) > len(
      [c for c in convs(wide) if c.kernel_size == (3, 3)])


def test_unknown_builtin_teacher_lists_the_known_ones():
  with pytest.raises(ValueError, match="unknown built-in teacher 'vgg'.*"
                     "resnet_wide"):
    teacher.build_teacher("vgg", (28, 28, 1), 10)


def test_wrong_class_count_names_both_counts():
  with pytest.raises(ValueError,
                     match="teacher outputs 100 classes but fashion_mnist has "
                     "10"):
    teacher.check_teacher(_small_model((28, 28, 1), 100), (28, 28, 1), 10,
                          "fashion_mnist", images=None)


def test_wrong_input_shape_names_both_shapes():
  with pytest.raises(ValueError, match=r"teacher expects input images of "
                     r"shape \(32, 32, 3\) but digits has images of shape "
                     r"\(8, 8, 1\)"):
    teacher.check_teacher(_small_model((32, 32, 3)), (8, 8, 1), 10, "digits",
                          images=None)


def test_teacher_ending_in_softmax_is_refused(digits_images):
  with pytest.raises(ValueError, match="outputs probabilities, not logits"):
    teacher.check_teacher(_small_model(activation="softmax"), (8, 8, 1), 10,
                          images=digits_images)


def test_softmax_teacher_is_refused_naming_teacher_output(
    softmax_teacher, digits, digits_images):
  probabilities, _ = softmax_teacher
  with pytest.raises(ValueError, match="pass --teacher_output=probabilities"):
    teacher.check_teacher(probabilities, (8, 8, 1), 10, "digits",
                          images=digits_images)
  with pytest.raises(ValueError, match="pass --teacher_output=probabilities"):
    teacher.teacher_logits(probabilities, digits.train)


def _kd_loss(teacher_logits, student_logits):
  distiller = distiller_lib.Distiller(_small_model(), alpha=1.0,
                                      temperature=4.0)
  return float(distiller.distillation_loss(teacher_logits, student_logits))


def test_softmax_teacher_as_probabilities_distills_like_its_logits(
    softmax_teacher, digits, digits_images, tmp_path):
  probabilities, logits = softmax_teacher
  teacher.check_teacher(probabilities, (8, 8, 1), 10, "digits",
                        images=digits_images, teacher_output="probabilities")
  from_probabilities = teacher.teacher_logits(
      probabilities, digits.train, str(tmp_path),
      teacher_output="probabilities")
  from_logits = teacher.teacher_logits(logits, digits.train, str(tmp_path))
  student = np.random.default_rng(0).normal(
      size=from_logits.shape).astype(np.float32)
  expected = _kd_loss(from_logits, student)
  assert _kd_loss(from_probabilities, student) == pytest.approx(expected,
                                                                abs=1e-5)
  # Not a loss that agrees whatever the teacher gives: the probabilities
  # themselves, taken as logits, give another one (T^2 KL to a uniform
  # student measures how far from uniform the tempered teacher is).
  raw = keras.ops.convert_to_numpy(probabilities(digits.train.images,
                                                 training=False))
  uniform = np.zeros_like(student)
  assert abs(_kd_loss(raw, uniform) - _kd_loss(from_logits, uniform)) > 0.1


def test_logits_teacher_said_to_output_probabilities_is_refused(
    digits_images):
  with pytest.raises(ValueError, match="--teacher_output=probabilities, but "
                     ".*needs --teacher_output=logits"):
    teacher.check_teacher(_small_model(), (8, 8, 1), 10, "digits",
                          images=digits_images,
                          teacher_output="probabilities")


def test_unknown_teacher_output_is_refused(digits_images):
  with pytest.raises(ValueError, match="teacher_output='probs' is not one of"):
    teacher.check_teacher(_small_model(), (8, 8, 1), 10, "digits",
                          images=digits_images, teacher_output="probs")


def test_keras_file_round_trip(tmp_path):
  model = _small_model()
  path = str(tmp_path / "t.keras")
  model.save(path)
  loaded = teacher.load_teacher(path)
  x = np.random.default_rng(0).random((3, 8, 8, 1), np.float32)
  np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_keras_file_that_is_not_a_model_is_refused(tmp_path):
  path = tmp_path / "notes.keras"
  path.write_text("these are my notes, not a model")
  with pytest.raises(ValueError, match="notes.keras is not a loadable Keras "
                     "model file"):
    teacher.load_teacher(str(path))


def test_lambda_layer_is_refused_in_safe_mode(tmp_path):
  inputs = keras.Input((8, 8, 1))
  x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
  x = keras.layers.Flatten()(x)
  model = keras.Model(inputs, keras.layers.Dense(10)(x))
  path = str(tmp_path / "lambda.keras")
  model.save(path)
  with pytest.raises(ValueError, match="not a loadable Keras model.*"
                     "safe_mode"):
    teacher.load_teacher(path)


def test_missing_teacher_path(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    teacher.load_teacher(str(tmp_path / "none.keras"))


def test_saved_model_teacher_loads_and_checks(tmp_path, digits_images):
  model = _small_model()
  path = str(tmp_path / "saved")
  model.export(path, verbose=False)
  loaded = teacher.load_teacher(path)
  teacher.check_teacher(loaded, (8, 8, 1), 10, "digits",
                        images=digits_images)
  x = np.random.default_rng(0).random((3, 8, 8, 1), np.float32)
  np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)
  with pytest.raises(ValueError, match="outputs 10 classes but x has 3"):
    teacher.check_teacher(loaded, (8, 8, 1), 3, "x", images=digits_images)


def test_builtin_teacher_is_trained_once_then_loaded(digits, tmp_path):
  recipe = teacher.TeacherRecipe(epochs=1, batch_size=64)
  model, info = teacher.get_builtin_teacher("cnn_deep", digits,
                                            str(tmp_path), recipe)
  assert not info.cached and info.train_seconds > 0
  assert os.path.exists(info.path) and info.path.endswith(".keras")
  again, info2 = teacher.get_builtin_teacher("cnn_deep", digits,
                                             str(tmp_path), recipe)
  assert info2.cached and info2.minival_accuracy == info.minival_accuracy
  assert teacher.weights_hash(again) == teacher.weights_hash(model)
  other = teacher.TeacherRecipe(epochs=1, batch_size=64, seed=1)
  assert teacher.get_builtin_teacher("cnn_deep", digits, str(tmp_path),
                                     other)[1].path != info.path


def test_teacher_logits_are_cached_by_weights_and_data(digits, tmp_path):
  model = _small_model()
  logits = teacher.teacher_logits(model, digits.train, str(tmp_path))
  assert logits.shape == (digits.train.size, 10)
  np.testing.assert_allclose(logits[:5], model(digits.train.images[:5]),
                             atol=1e-5)
  [path] = (tmp_path / "teacher_logits").iterdir()
  np.save(path, np.full_like(logits, 7.0))  # A later call must read the file.
  assert (teacher.teacher_logits(model, digits.train, str(tmp_path)) ==
          7.0).all()
  other_split = teacher.teacher_logits(model, digits.minival, str(tmp_path))
  assert other_split.shape == (digits.minival.size, 10)
  model.layers[-1].kernel.assign(model.layers[-1].kernel + 1.0)
  fresh = teacher.teacher_logits(model, digits.train, str(tmp_path))
  assert not (fresh == 7.0).all()


def test_teacher_logits_cache_is_keyed_by_teacher_output(digits, tmp_path):
  # Two teachers of the same weights: one outputs logits, one their softmax.
  inputs = keras.Input((8, 8, 1))
  z = keras.layers.Dense(10)(keras.layers.Flatten()(inputs))
  logits_model = keras.Model(inputs, z)
  softmax_model = keras.Model(inputs, keras.layers.Softmax()(z))
  assert (teacher.weights_hash(logits_model) ==
          teacher.weights_hash(softmax_model))
  teacher.teacher_logits(logits_model, digits.train, str(tmp_path))
  [path] = (tmp_path / "teacher_logits").iterdir()
  np.save(path, np.full((digits.train.size, 10), 7.0, np.float32))
  # The cached 'logits' of these weights are refused to the softmax
  # teacher under teacher_output='logits', never handed out ...
  with pytest.raises(ValueError, match="--teacher_output=probabilities"):
    teacher.teacher_logits(softmax_model, digits.train, str(tmp_path))
  # ... and not reused under teacher_output='probabilities'.
  log_p = teacher.teacher_logits(softmax_model, digits.train, str(tmp_path),
                                 teacher_output="probabilities")
  assert not (log_p == 7.0).any()
  assert len(list((tmp_path / "teacher_logits").iterdir())) == 2


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
