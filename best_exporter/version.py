"""The library's version, kept in a module of its own so the build reads it without importing TensorFlow."""

__version__ = "0.1.0"
