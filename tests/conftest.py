"""Test setup shared by every test module: quiet TensorFlow, CPU only,
digits and a teacher trained on it, the probability teachers of the teacher
and distillation tests, a trained one-shot evaluation setup of the pool
tests, and the tiny student of the latency tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: end-to-end runs of a minute or more (kept few)")
  # NumPy 2 warns on every Keras tensor -> array conversion.
  config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def digits():
  """scikit-learn's digits as 8x8x1 images of 10 classes."""
  from akd_tf.distill import data  # pylint: disable=g-import-not-at-top
  return data.load_data(data.DataConfig("digits"))


@pytest.fixture(scope="module")
def digits_teacher(digits):  # pylint: disable=redefined-outer-name
  """A small CNN teacher trained for 2 epochs on `digits`; it outputs
  logits."""
  import keras  # pylint: disable=g-import-not-at-top
  from akd_tf.distill import teacher  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = teacher.build_teacher("cnn_deep", digits.input_shape, 10)
  teacher.train_teacher(model, digits, teacher.TeacherRecipe(
      epochs=2, batch_size=64))
  return model


def _nested_application(keras):
  """MobileNetV2 (softmax, its default) inside an outer functional model
  that resizes digits' 8x8x1 images to the 32x32x3 it needs at least.

  Untrained, its BatchNormalization statistics make its inference logits
  about 1e-11 (a uniform teacher); they are recomputed on digits, which
  spreads its probabilities over 1e-3..0.8 as a teacher's are.
  """
  from akd_tf.distill import candidate_training  # pylint: disable=g-import-not-at-top
  from akd_tf.distill import data  # pylint: disable=g-import-not-at-top

  def wrapped(application):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Resizing(32, 32)(inputs)
    x = keras.layers.Concatenate()([x, x, x])
    return keras.Model(inputs, application(x), name="wrapped_mobilenet_v2")

  make = lambda activation: keras.applications.MobileNetV2(
      input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
      classifier_activation=activation)
  probabilities = make("softmax")
  digits = data.load_data(data.DataConfig("digits"))
  candidate_training.recalibrate_batch_norm(wrapped(probabilities),
                                            digits.train, 512)
  logits = make(None)
  logits.set_weights(probabilities.get_weights())
  return wrapped(probabilities), wrapped(logits)


def _dense_logits(keras, scale):
  """A functional digits classifier with sharp logits: at scale 20, 10% of
  its softmax probabilities on digits lie below 1e-7 (down to 1e-15), as a
  confident teacher's do (clipped at 1e-7 before the log, they would change
  its KD loss by 2.5%)."""
  inputs = keras.Input((8, 8, 1))
  x = keras.layers.Flatten()(inputs)
  x = keras.layers.Dense(32, activation="relu")(x)
  dense = keras.layers.Dense(10, name="logits")
  z = dense(x)
  dense.kernel.assign(dense.kernel * scale)
  return inputs, z


@pytest.fixture(scope="session",
                params=["nested_keras_application", "ops_softmax",
                        "saved_model"])
def softmax_teacher(request, tmp_path_factory):
  """(a teacher that outputs probabilities, the same teacher without its
  softmax), on digits' 8x8x1 images and 10 classes."""
  import keras  # pylint: disable=g-import-not-at-top
  from akd_tf.distill import teacher  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  if request.param == "nested_keras_application":
    return _nested_application(keras)
  inputs, z = _dense_logits(keras, scale=20.0)
  logits = keras.Model(inputs, z, name="dense_logits")
  if request.param == "ops_softmax":
    return keras.Model(inputs, keras.ops.softmax(z), name="ops_softmax"), logits
  path = str(tmp_path_factory.mktemp("softmax") / "saved_model")
  keras.Model(inputs, keras.layers.Softmax()(z)).export(path, verbose=False)
  return teacher.load_teacher(path), logits


@pytest.fixture
def softmax_teacher_file(tmp_path):
  """The path of a `.keras` digits teacher ending in keras.ops.softmax."""
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  inputs = keras.Input((8, 8, 1))
  logits = keras.layers.Dense(10)(keras.layers.Flatten()(inputs))
  path = str(tmp_path / "softmax.keras")
  keras.Model(inputs, keras.ops.softmax(logits),
              name="softmax_teacher").save(path)
  return path


@pytest.fixture(scope="session")
def oneshot_eval_config(tmp_path_factory):
  """`search_testing.tiny_oneshot_eval_config`: its supernet trained once
  for the pool tests of a session."""
  import search_testing  # pylint: disable=g-import-not-at-top
  return search_testing.tiny_oneshot_eval_config(
      tmp_path_factory.mktemp("oneshot"))


@pytest.fixture(scope="module")
def tiny_model():
  """The Keras student of `latency_testing.tiny_spec()`."""
  import latency_testing  # pylint: disable=g-import-not-at-top
  from akd_tf.space import builder  # pylint: disable=g-import-not-at-top
  return builder.build_from_spec(latency_testing.tiny_spec())


@pytest.fixture(scope="module")
def tiny_tflite(tiny_model):  # pylint: disable=redefined-outer-name
  """`tiny_model` as float32 TFLite bytes."""
  from akd_tf.latency import convert  # pylint: disable=g-import-not-at-top
  return convert.convert_to_tflite(tiny_model)
