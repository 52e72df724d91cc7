"""licanom: unsupervised anomaly detection in software-licensing logs."""

from licanom import settings as _settings

__version__ = "0.1.0"

_settings.apply()  # Prefect's home, its start-up limit, telemetry off: before Prefect or MLflow load
