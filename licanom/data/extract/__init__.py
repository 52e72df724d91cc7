"""Extraction of the raw Web API Log: from the Cryptolens HTTP API or from files."""
