"""Evaluation on labelled simulated vendors: the held-out nightly sweep (:mod:`.nightly`).

Owns: the worlds of the sweep, the development and report seeds, judging night chunks against
labels, and the summary tables. May import the whole library; nothing in it is imported by the
scoring or training path.
"""
