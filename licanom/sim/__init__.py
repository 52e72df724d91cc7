"""The simulator: Cryptolens-like Web API Logs of one vendor, with labelled anomalies.

Owns the simulated world (vendors, products, keys, machines), normal traffic, the anomaly
injectors and the assembly of a labelled log. Imports only ``licanom.data`` (columns and state
codes) and numpy/polars; nothing downstream of the data path may be imported here.
"""
