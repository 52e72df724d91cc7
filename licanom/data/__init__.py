"""The data path of thesis 3.1: a raw Web API Log to model inputs, losing nothing.

Owns the log's columns and state codes, the pandera schemas, extraction (HTTP API, files),
validation with its quarantine, the derived columns, the encoders, chunking, pseudonyms and the
pipeline that strings them together. Imports only the standard library, numpy, polars, pandera
and ``licanom.config``/``licanom.settings`` (and the simulator, for the pipeline's ``simulate``
source); never a detector, the operations layer, the report or Prefect.
"""
