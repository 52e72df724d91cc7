"""Column names shared by every step: the raw Web API Log and the thesis's model input."""

from __future__ import annotations

# The Cryptolens Web API Log, as GetWebAPILog returns it.
REQUIRED_RAW: tuple[str, ...] = ("Id", "ProductId", "Key", "IP", "Time", "State", "MachineCode")
OPTIONAL_RAW: tuple[str, ...] = ("FriendlyName", "FloatingExpires", "DOIntValue", "DOId")
RAW: tuple[str, ...] = REQUIRED_RAW + OPTIONAL_RAW

# The eight model columns in the thesis's order (Figure 3.4).
FEATURES: tuple[str, ...] = (
    "time", "success", "ip", "key", "product", "action", "machine_code", "country",
)
N_FEATURES = len(FEATURES)

# Categorical columns of the derived frame that go through a vocabulary, with the feature
# each becomes.
CATEGORICAL: tuple[tuple[str, str], ...] = (
    ("IP", "ip"),
    ("Key", "key"),
    ("ProductId", "product"),
    ("action", "action"),
    ("MachineCode", "machine_code"),
    ("country", "country"),
)

UNKNOWN_COUNTRY = "ZZ"  # ISO 3166 user-assigned code: private, anonymised or unknown address

# In the encoded frame each feature sits in its own column beside the raw ones.
FEATURE_COLUMNS: tuple[str, ...] = tuple(f"f_{f}" for f in FEATURES)

# The thesis's summary vector (3.4): distinct values per column, counted on the raw values
# (so that several values unseen at training time still count as several).
SUMMARY_SOURCES: tuple[tuple[str, str], ...] = (
    ("time", "Time"),
    ("success", "success"),
    ("ip", "IP"),
    ("key", "Key"),
    ("product", "ProductId"),
    ("action", "action"),
    ("machine_code", "MachineCode"),
    ("country", "country"),
)
SUMMARY_COLUMNS: tuple[str, ...] = tuple(f"distinct_{f}" for f in FEATURES)

# Per-column reconstruction error of a scored chunk (FEATURES order); its ``score`` is their mean.
ERROR_COLUMNS: tuple[str, ...] = tuple(f"error_{f}" for f in FEATURES)
