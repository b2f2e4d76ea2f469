"""akd_tf: Architecture-aware Knowledge Distillation on the MnasNet stack."""

import setuptools

setuptools.setup(
    name="akd_tf",
    version="0.1.0",
    description=("Search the MnasNet space for the student that distills best "
                 "from a given teacher under a latency target (AKD, CVPR 2020)."),
    # The search presets ship as package data: akd_tf.presets is the
    # repository's flags/ folder (akd-search --preset=NAME reads them).
    packages=(setuptools.find_packages(include=["akd_tf", "akd_tf.*"]) +
              ["akd_tf.presets"]),
    package_dir={"akd_tf.presets": "flags"},
    package_data={"akd_tf.presets": ["*.cfg"]},
    python_requires=">=3.11",
    install_requires=[
        # `tensorflow`, not `tensorflow-cpu`: tf_keras (pulled by
        # tensorflow-model-optimization) requires the full package.
        "tensorflow>=2.20",
        "keras>=3.10",
        "tensorflow-datasets>=4.9",
        "tensorflow-model-optimization>=0.8",
        # The QAT export rebuilds students with Keras 2 (tfmot needs it).
        "tf_keras>=2.16",
        "ai-edge-litert>=2.0",
        "absl-py>=1.4",
        "numpy>=1.26",
        # Plots of the search (pareto.png, reward.png).
        "matplotlib>=3.8",
        # TensorBoard logs of akd-train and akd-search.
        "tensorboard>=2.20",
        # tensorflow-datasets imports it to prepare a dataset but does not
        # declare it.
        "importlib_resources",
    ],
    extras_require={
        # scikit-learn ships the 8x8 digits images the fastest tests use.
        # Ray (core) runs the Ray executor's tests; psutil finds the Ray
        # worker a node-loss test kills and reads workers' resident memory
        # and environment (tests/test_memory.py, tests/test_local_pool.py,
        # benchmarks/memory.py).
        "test": ["pytest>=8", "hypothesis>=6.100", "scikit-learn>=1.4",
                 "ray>=2.9", "psutil>=5.9"],
        "ray": ["ray[default]>=2.9"],
    },
    entry_points={
        "console_scripts": [
            "akd-analyze=akd_tf.cli.analyze:run",
            "akd-arch=akd_tf.cli.arch:run",
            "akd-export=akd_tf.cli.export:run",
            "akd-latency=akd_tf.cli.latency:run",
            "akd-search=akd_tf.cli.search:run",
            "akd-train=akd_tf.cli.train:run",
        ],
    },
)
