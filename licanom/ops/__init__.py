"""Operating detectors night after night: the model bundle, training, scoring state, nights, MLflow.

Owns what turns the library into a service: the bundle (a trained detector with what it needs
to score raw rows), the vendor's scoring state between nights, a night's scoring and outputs,
training of a vendor's variants, and everything MLflow (tracking, registry, the pyfunc model).
May import ``licanom.data``, ``licanom.detectors``, ``licanom.report`` and the configuration;
never Prefect (``tasks/`` and ``flows/`` wrap it).
"""
