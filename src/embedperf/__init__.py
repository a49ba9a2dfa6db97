"""embedperf: benchmark embedding-model inference across runtimes."""

__version__ = "0.1.0"
