"""Tests of akd_tf.teacher: loading, checks, built-ins, caches."""

import os

import keras
import numpy as np
import pytest

from akd_tf import data
from akd_tf import teacher


@pytest.fixture(scope="module")
def digits():
  return data.load_data(data.DataConfig("digits"))


def _small_model(input_shape=(8, 8, 1), classes=10, activation=None):
  inputs = keras.Input(input_shape)
  x = keras.layers.Flatten()(inputs)
  return keras.Model(inputs, keras.layers.Dense(classes,
                                                activation=activation)(x))


@pytest.mark.parametrize("name", teacher.TEACHERS)
def test_builtin_teachers_output_logits_of_the_data(name):
  model = teacher.build_teacher(name, (28, 28, 1), 10)
  out = model(np.zeros((2, 28, 28, 1), np.float32))
  assert out.shape == (2, 10)
  teacher.check_teacher(model, (28, 28, 1), 10, "fashion_mnist")


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
                          "fashion_mnist")


def test_wrong_input_shape_names_both_shapes():
  with pytest.raises(ValueError, match=r"teacher expects input images of "
                     r"shape \(32, 32, 3\) but digits has images of shape "
                     r"\(8, 8, 1\)"):
    teacher.check_teacher(_small_model((32, 32, 3)), (8, 8, 1), 10, "digits")


def test_teacher_ending_in_softmax_is_refused():
  with pytest.raises(ValueError, match="ends in a softmax.*needs logits"):
    teacher.check_teacher(_small_model(activation="softmax"), (8, 8, 1), 10)


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


def test_saved_model_teacher_loads_and_checks(tmp_path):
  model = _small_model()
  path = str(tmp_path / "saved")
  model.export(path, verbose=False)
  loaded = teacher.load_teacher(path)
  teacher.check_teacher(loaded, (8, 8, 1), 10, "digits")
  x = np.random.default_rng(0).random((3, 8, 8, 1), np.float32)
  np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)
  with pytest.raises(ValueError, match="outputs 10 classes but x has 3"):
    teacher.check_teacher(loaded, (8, 8, 1), 3, "x")


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
