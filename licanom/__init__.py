"""licanom: unsupervised anomaly detection in software-licensing logs."""

__version__ = "0.1.0"
