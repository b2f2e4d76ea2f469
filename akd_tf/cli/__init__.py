"""absl command-line apps of akd_tf.

Flags are defined and parsed only here and turned into plain config objects
before anything in the library is called.
"""
