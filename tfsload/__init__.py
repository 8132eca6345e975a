"""tfsload: load tests for TensorFlow Serving, built on Locust."""

__version__ = "0.2.0"
