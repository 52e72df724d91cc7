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

# The "rows" input mode (licanom.data.encode.RowsEncoder): what each request was, with no identity
# (no key, address, machine code, product or country enters as a number). Per row: the method
# group and the state's detail digit as one-hot categories, whether it failed, the log gaps to
# the previous request overall and of the same key, and whether its key, machine code, address
# or country is new to the vendor or to the key. licanom.data.encode appends the per-row entity
# counts of licanom.data.context_vector.row_context (ROW_COLUMNS) to these.
ROW_GROUPS: tuple[str, ...] = (  # licanom.data.states.MethodGroup, in its order
    "validation", "activation", "key_generation", "optional_field",
    "no_request", "deactivation", "other_licence_change", "data_object",
)
ROW_REQUEST_FEATURES: tuple[str, ...] = (
    *(f"group_{g}" for g in ROW_GROUPS),
    "failed",
    *(f"detail_{d}" for d in range(10)),
    "log_gap", "log_key_gap",
    "new_key", "new_machine", "new_ip", "new_country",
    "new_machine_to_key", "new_ip_to_key", "new_country_to_key",
)
# Columns of the rows mode that carry a magnitude (standardised with training statistics by
# the detector); the others are 0/1 indicators and enter as they are.
ROW_GAP_FEATURES: tuple[str, ...] = ("log_gap", "log_key_gap")
