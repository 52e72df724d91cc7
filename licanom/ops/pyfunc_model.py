"""The code of every registered licanom model (MLflow's models-from-code).

MLflow saves this file with each model version and runs it when the model is loaded, instead of
unpickling a Python object (which it warns about, and which ties a version to the pickling
library's behaviour). The model itself is :class:`licanom.ops.tracking.LicanomPyfunc`; its network,
threshold and vocabulary travel as the ``bundle`` artifact.
"""

from mlflow.models import set_model

from licanom.ops.tracking import LicanomPyfunc

set_model(LicanomPyfunc())
