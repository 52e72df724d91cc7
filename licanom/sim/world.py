"""The simulated vendor's world: profiles, anomaly kinds, State detail digits, address pools, the
vendor (products, habits) and its customers (countries, keys, machines, sites), and the tables of
the log being built."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from iptocc import country_code

from licanom.data.columns import RAW


PROFILES: tuple[str, ...] = ("node-locked", "usage-based", "floating", "mixed")
ANOMALY_KINDS: tuple[str, ...] = (
    "brute_force",
    "key_sharing",
    "floating_overuse",
    "failure_loop",
    "runaway_client",
)
# Kinds added after the signals and defaults were frozen; injected only when asked for.
LATE_KINDS: tuple[str, ...] = ("country_jump", "machine_cloning", "credential_stuffing")

# Detail digits of successful requests.
DETAIL_PLAIN = 0  # 1010 GetKey validation, 2010 new machine activated, 3010 key created, ...
DETAIL_KNOWN_MACHINE = 1  # 2011: activation of a machine already on the key (start-up check)
DETAIL_FLOATING = 2  # 2012 floating activation, 6012 floating release
DETAIL_HEARTBEAT = 1  # 1011: floating heartbeat (a verification that renews FloatingExpires)
DETAIL_DO_DECREMENT = 1  # 8011
DETAIL_DO_SET = 2  # 8012: the vendor resets a usage counter
DETAIL_BLOCK = 1  # 7011: the vendor blocks a key (7010 extends one)
# Detail digits of failed requests.
FAIL_KEY_NOT_FOUND = 0
FAIL_BLOCKED = 1
FAIL_EXPIRED = 2
FAIL_TOO_MANY_MACHINES = 3
FAIL_ACCESS_DENIED = 4
FAIL_RATE_LIMITED = 5
FAIL_BAD_REQUEST = 6
FAIL_USAGE_LIMIT = 7  # data object: the usage counter reached its limit

_NODE, _USAGE, _FLOAT = 0, 1, 2
_NULL_INT = -(2**62)  # stands for a null DOIntValue while rows are numpy arrays
_MODEL_OF_PROFILE = {"node-locked": (_NODE,), "usage-based": (_USAGE,), "floating": (_FLOAT,)}
_DEFAULT_CUSTOMERS = {"node-locked": 300, "usage-based": 150, "floating": 60, "mixed": 100}
# Rows a year of a vendor of default size: a range the number of customers is tuned into.
_YEARLY_ROWS = {
    "node-locked": (6e4, 2.5e5),
    "usage-based": (3e5, 1.2e6),
    "floating": (2.3e6, 4.8e6),
    "mixed": (1.5e6, 4e6),
}
_DAY = 86_400.0
_HOUR = 3_600.0

# Countries customers come from: ISO code, UTC offsets (hours) of their main zones, base weight.
_COUNTRIES: tuple[tuple[str, tuple[float, ...], float], ...] = (
    ("US", (-5.0, -6.0, -7.0, -8.0), 20.0),
    ("CA", (-5.0, -8.0), 4.0),
    ("MX", (-6.0,), 1.5),
    ("BR", (-3.0,), 3.0),
    ("GB", (0.0,), 7.0),
    ("FR", (1.0,), 5.0),
    ("DE", (1.0,), 8.0),
    ("NL", (1.0,), 3.0),
    ("SE", (1.0,), 3.0),
    ("NO", (1.0,), 1.5),
    ("DK", (1.0,), 1.5),
    ("FI", (2.0,), 1.5),
    ("PL", (1.0,), 2.0),
    ("ES", (1.0,), 3.0),
    ("IT", (1.0,), 3.0),
    ("CH", (1.0,), 2.0),
    ("ZA", (2.0,), 1.0),
    ("IN", (5.5,), 4.0),
    ("SG", (8.0,), 1.5),
    ("CN", (8.0,), 2.0),
    ("JP", (9.0,), 4.0),
    ("KR", (9.0,), 2.0),
    ("AU", (10.0, 8.0), 3.0),
)
COUNTRY_CODES: tuple[str, ...] = tuple(c for c, _, _ in _COUNTRIES)
_REGIONS = {
    "eu": ("GB", "FR", "DE", "NL", "SE", "NO", "DK", "FI", "PL", "ES", "IT", "CH"),
    "us": ("US", "CA", "MX"),
    "apac": ("IN", "SG", "CN", "JP", "KR", "AU"),
    "global": (),
}


def _region(country: int) -> str:
    """The region of a country of :data:`COUNTRY_CODES` (a country of no region is its own)."""
    code = COUNTRY_CODES[country]
    return next((r for r, members in _REGIONS.items() if code in members), code)

_VENDOR_HOME = {
    "eu": ("SE", "DE", "NL", "GB"),
    "us": ("US",),
    "apac": ("SG", "JP", "AU"),
    "global": ("US", "GB", "DE"),
}

# Local-hour profiles of request starts: business customers and consumers.
# fmt: off
_HOURS_B2B = np.array([0.2, 0.1, 0.1, 0.1, 0.1, 0.3, 1.0, 3.0, 8.0, 9.0, 8.0, 7.0,
                       5.0, 7.0, 8.0, 7.0, 6.0, 4.0, 2.0, 1.5, 1.2, 1.0, 0.6, 0.4])
_HOURS_B2C = np.array([1.0, 0.6, 0.3, 0.2, 0.2, 0.2, 0.5, 1.5, 2.5, 3.0, 3.0, 3.0,
                       3.5, 3.5, 3.5, 3.5, 4.0, 5.0, 6.5, 8.0, 8.5, 7.5, 5.0, 2.5])
# fmt: on
_WEEKDAY_B2B = np.array([1.0, 1.02, 1.02, 1.0, 0.9, 0.15, 0.1])
_WEEKDAY_B2C = np.array([0.9, 0.9, 0.9, 0.95, 1.0, 1.25, 1.2])

# fmt: off
_FIRST_NAMES = ("anna", "erik", "maria", "john", "li", "yuki", "sara", "omar", "lucas", "emma",
                "noah", "olga", "raj", "chen", "mia", "paul", "nina", "ivan", "lea", "tom")
# fmt: on
_HOST_WORDS = ("WS", "PC", "LAB", "CAD", "DEV", "OFFICE", "RENDER", "BUILD", "ACCT", "SRV")

_ALNUM_UPPER = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
_LETTERS = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
_HEX_LOWER = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_UPPER = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)

_LOG_SCHEMA: dict[str, pl.DataType] = {
    "Id": pl.Int64(),
    "ProductId": pl.Int64(),
    "Key": pl.Utf8(),
    "IP": pl.Utf8(),
    "Time": pl.Datetime("us", "UTC"),
    "State": pl.Int64(),
    "MachineCode": pl.Utf8(),
    "FriendlyName": pl.Utf8(),
    "FloatingExpires": pl.Datetime("us", "UTC"),
    "DOIntValue": pl.Int64(),
    "DOId": pl.Int64(),
}
assert tuple(_LOG_SCHEMA) == RAW


# what ``licanom simulate --format`` writes the log and its labels as (SimulatedLog.write)
FORMATS: tuple[str, ...] = ("parquet", "csv", "both")
# The times of the CSV files (log.csv, events.csv): ISO 8601 UTC with a Z, a fraction only where there is one
CSV_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"


@dataclass(frozen=True)
class SimulatedLog:
    """A simulated vendor log with its ground truth.

    ``log`` holds the raw Web API Log columns only (:data:`licanom.data.columns.RAW`), what detectors
    read; ``labels`` has one row per anomalous log row (``Id``, ``event``, ``kind``) and
    ``events`` one row per injected anomaly (``event``, ``kind``, ``start_time``, ``end_time``,
    ``key``, ``ip``, ``n_rows``, ``description``).
    """

    log: pl.DataFrame
    labels: pl.DataFrame
    events: pl.DataFrame

    def write(self, out_dir: Path, fmt: str = "parquet") -> list[Path]:
        """Write the log and its labels into ``out_dir`` as ``fmt`` says, and ``events.csv``; the
        files written, in that order.

        ``parquet``: ``log.parquet`` and ``labels.parquet`` (``Id, event, kind``, the anomalous rows
        only); ``csv``: ``log.csv``, as a vendor's export is written (:meth:`write_log_csv`), and
        ``labels.csv``, the labels file ``licanom detect --labels`` reads (:meth:`labels_file`);
        ``both``: all four."""
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        if fmt in ("parquet", "both"):
            self.log.write_parquet(out / "log.parquet")
            self.labels.write_parquet(out / "labels.parquet")
            written += [out / "log.parquet", out / "labels.parquet"]
        if fmt in ("csv", "both"):
            self.write_log_csv(out / "log.csv")
            self.labels_file().write_csv(out / "labels.csv")
            written += [out / "log.csv", out / "labels.csv"]
        self.events.write_csv(out / "events.csv", datetime_format=CSV_TIME_FORMAT)  # as log.csv's times
        return [*written, out / "events.csv"]

    def write_log_csv(self, path: Path) -> None:
        """The log as a vendor's CSV export: the Web API Log's columns in their order
        (:data:`licanom.data.columns.RAW`), a comma between fields, times in ISO 8601 UTC with a
        ``Z`` (whole seconds as ``2025-01-01T00:15:24Z``, a fraction only where there is one), an
        empty field for a missing value. ``licanom detect --logs`` reads it back to the same valid
        rows as ``log.parquet``."""
        self.log.select(RAW).write_csv(path, datetime_format=CSV_TIME_FORMAT)

    def labels_file(self) -> pl.DataFrame:
        """Every log row's label in the form ``licanom detect --labels`` reads: ``Id``, ``label``
        (-1 a row of an anomalous event, +1 a normal row), and the event's number and ``kind`` (empty
        for a normal row), in the log's order."""
        return (self.log.select("Id").join(self.labels.select("Id", "event", "kind"), on="Id", how="left",
                                           maintain_order="left")
                .select("Id", pl.when(pl.col("event").is_null()).then(1).otherwise(-1).cast(pl.Int8).alias("label"),
                        "event", "kind"))


# ---------------------------------------------------------------------------------------------
# IP address pools


@dataclass(frozen=True)
class _IpPools:
    """Public addresses per country of :data:`COUNTRY_CODES`, classified with iptocc."""

    ips: np.ndarray  # object array of str: all pools, v4 then v6 per country
    v4_off: np.ndarray
    v4_len: np.ndarray
    v6_off: np.ndarray
    v6_len: np.ndarray

    def sample(self, rng: np.random.Generator, country: np.ndarray, v6: np.ndarray) -> np.ndarray:
        """Indices into ``ips`` of one random address per (country, wants-IPv6) pair."""
        country = np.asarray(country, dtype=np.int64)
        use6 = np.asarray(v6, dtype=bool) & (self.v6_len[country] > 0)
        off = np.where(use6, self.v6_off[country], self.v4_off[country])
        n = np.where(use6, self.v6_len[country], self.v4_len[country])
        return (off + (rng.random(country.shape) * n).astype(np.int64)).astype(np.int64)


def _ipv4_strings(x: np.ndarray) -> pl.Series:
    x = x.astype(np.uint64)
    frame = pl.DataFrame({"a": x >> 24, "b": (x >> 16) & 255, "c": (x >> 8) & 255, "d": x & 255})
    return frame.select(pl.concat_str(["a", "b", "c", "d"], separator=".")).to_series()


def _hex_rows(rng: np.random.Generator, n: int, width: int, alphabet: np.ndarray) -> np.ndarray:
    codes = alphabet[rng.integers(0, len(alphabet), size=(n, width))]
    return np.ascontiguousarray(codes).view(f"S{width}").ravel().astype(str)


def _first_per_country(ips: pl.Series, limit: int) -> dict[str, list[str]]:
    """Up to `limit` addresses of each country of :data:`COUNTRY_CODES`, in sampling order."""
    frame = pl.DataFrame({"ip": ips, "cc": pl.Series(country_code(ips.to_list()), dtype=pl.Utf8)})
    picked = (
        frame.filter(pl.col("cc").is_in(list(COUNTRY_CODES)))
        .group_by("cc", maintain_order=True)
        .head(limit)
    )
    out: dict[str, list[str]] = {c: [] for c in COUNTRY_CODES}
    for cc, group in picked.partition_by("cc", as_dict=True, maintain_order=True).items():
        out[str(cc[0])] = group["ip"].to_list()
    return out


@functools.lru_cache(maxsize=1)
def _ip_pools(per_country: int = 1200, v6_per_country: int = 300) -> _IpPools:
    """Per-country pools of public IPv4 and IPv6 addresses (fixed seed, built once a process)."""
    rng = np.random.default_rng(20_250_101)
    v4 = _first_per_country(
        _ipv4_strings(rng.integers(1 << 24, 224 << 24, size=450_000, dtype=np.int64)), per_country
    )
    # IPv6: addresses inside the regional registries' blocks, written out in full.
    blocks = np.array(
        [0x2001_0000, 0x2400_0000, 0x2600_0000, 0x2800_0000, 0x2A00_0000, 0x2A10_0000, 0x2C00_0000],
        dtype=np.int64,
    )
    spans = np.array([1 << 16, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20])
    n6 = 200_000
    which = rng.integers(0, len(blocks), n6)
    top = blocks[which] + (rng.random(n6) * spans[which]).astype(np.int64)
    nibbles = np.empty((n6, 32), dtype=np.int64)
    nibbles[:, :8] = (top[:, None] >> (4 * np.arange(7, -1, -1))) & 15
    nibbles[:, 8:] = rng.integers(0, 16, (n6, 24))
    chars = np.full((n6, 39), ord(":"), dtype=np.uint8)
    positions = np.array([g * 5 + i for g in range(8) for i in range(4)])
    chars[:, positions] = _HEX_LOWER[nibbles]
    full = pl.Series(np.ascontiguousarray(chars).view("S39").ravel().astype(str))
    v6 = {
        c: [ipaddress.IPv6Address(a).compressed for a in lst]
        for c, lst in _first_per_country(full, v6_per_country).items()
    }
    ips: list[str] = []
    v4_off, v4_len, v6_off, v6_len = [], [], [], []
    for c in COUNTRY_CODES:
        v4_off.append(len(ips))
        v4_len.append(len(v4[c]))
        ips.extend(v4[c])
        v6_off.append(len(ips))
        v6_len.append(len(v6[c]))
        ips.extend(v6[c])
    if min(v4_len) == 0:
        raise RuntimeError("an IPv4 pool came out empty: the iptocc data is not as expected")
    return _IpPools(
        np.array(ips, dtype=object),
        np.array(v4_off),
        np.array(v4_len),
        np.array(v6_off),
        np.array(v6_len),
    )


def _anonymise(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        return str(ipaddress.IPv4Address(int(addr) & 0xFFFF_FF00))
    return str(ipaddress.IPv6Address(int(addr) & ~((1 << 80) - 1)))


# ---------------------------------------------------------------------------------------------
# The vendor


@dataclass(frozen=True)
class _Vendor:
    """Habits of one vendor's software and business, drawn from the seed."""

    region: str
    country_weights: np.ndarray
    home_country: int
    mc_style: str
    anonymise_ip: bool
    fn_share: float
    fn_everywhere: bool
    transient_fail: float
    busy_fail: float
    release_share: float
    b2b_share: float
    other_traffic_per_s: float
    # products
    product_id: np.ndarray
    product_model: np.ndarray
    product_getkey: np.ndarray
    product_window: np.ndarray
    product_heartbeat: np.ndarray
    product_unit_var: np.ndarray
    product_decrement: np.ndarray
    product_weight: np.ndarray


def _draw_vendor(rng: np.random.Generator, profile: str) -> _Vendor:
    region = str(rng.choice(list(_REGIONS), p=[0.4, 0.3, 0.1, 0.2]))
    base = np.array([w for _, _, w in _COUNTRIES])
    boost = np.array([3.0 if c in _REGIONS[region] else 1.0 for c in COUNTRY_CODES])
    weights = base * boost * rng.gamma(2.0, 0.5, len(base))
    weights /= weights.sum()
    home = int(COUNTRY_CODES.index(str(rng.choice(_VENDOR_HOME[region]))))
    if profile == "mixed":
        n_products = int(rng.integers(3, 6))
        models = np.r_[_NODE, _USAGE, _FLOAT, rng.integers(0, 3, n_products - 3)]
        models = rng.permutation(models)
    else:
        n_products = (
            int(rng.integers(1, 5)) if profile == "node-locked" else int(rng.integers(1, 4))
        )
        models = np.full(n_products, _MODEL_OF_PROFILE[profile][0])
    product_id = np.sort(rng.choice(np.arange(3_000, 32_000), n_products, replace=False))
    windows = rng.choice([120, 300, 300, 600, 600, 900, 1800], n_products).astype(np.float64)
    heartbeat = windows * rng.uniform(0.4, 0.75, n_products)
    return _Vendor(
        region=region,
        country_weights=weights,
        home_country=home,
        mc_style=str(rng.choice(["sha256", "SHA256", "sha1", "guid"], p=[0.45, 0.25, 0.15, 0.15])),
        anonymise_ip=bool(rng.random() < 0.35),
        fn_share=float(rng.choice([0.0, 0.2, 0.6, 0.95])),
        fn_everywhere=bool(rng.random() < 0.4),
        transient_fail=float(rng.uniform(0.009, 0.022)),
        busy_fail=float(rng.uniform(0.003, 0.02)),
        release_share=float(rng.uniform(0.3, 0.85)),
        b2b_share=float(rng.uniform(0.6, 0.85) if profile == "floating" else rng.uniform(0.3, 0.7)),
        other_traffic_per_s=float(rng.uniform(0.2, 5.0)),
        product_id=product_id.astype(np.int64),
        product_model=models.astype(np.int64),
        product_getkey=rng.random(n_products) < 0.3,
        product_window=windows,
        product_heartbeat=heartbeat,
        product_unit_var=rng.random(n_products) < 0.35,
        product_decrement=rng.random(n_products) < 0.3,
        product_weight=rng.dirichlet(np.full(n_products, 2.0)),
    )


def _machine_codes(rng: np.random.Generator, n: int, style: str) -> np.ndarray:
    if style == "sha256":
        return _hex_rows(rng, n, 64, _HEX_LOWER)
    if style == "SHA256":
        return _hex_rows(rng, n, 64, _HEX_UPPER)
    if style == "sha1":
        return _hex_rows(rng, n, 40, _HEX_LOWER)
    raw = _hex_rows(rng, n, 32, _HEX_LOWER)
    return np.array([f"{r[:8]}-{r[8:12]}-{r[12:16]}-{r[16:20]}-{r[20:]}" for r in raw], dtype=str)


def _license_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    """Cryptolens-style keys: four dash-separated groups of five capital letters."""
    letters = _LETTERS[rng.integers(0, 26, size=(n, 23))]
    letters[:, [5, 11, 17]] = ord("-")
    return np.ascontiguousarray(letters).view("S23").ravel().astype(str)


def _mistyped(rng: np.random.Generator, keys: np.ndarray) -> np.ndarray:
    """The keys with one letter changed, as a customer typing them by hand might."""
    chars = np.array([list(k) for k in keys], dtype="<U1").reshape(len(keys), 23)
    pos = rng.choice([i for i in range(23) if i % 6 != 5], len(keys))
    chars[np.arange(len(keys)), pos] = (
        _LETTERS[rng.integers(0, 26, len(keys))].view("S1").astype(str)
    )
    return np.array(["".join(row) for row in chars], dtype=object)


def _friendly_names(rng: np.random.Generator, n: int, b2b: np.ndarray) -> list[str]:
    out = []
    tails = _ALNUM_UPPER[rng.integers(0, 36, size=(n, 8))].view("S8").ravel().astype(str)
    kind = rng.random(n)
    first = rng.integers(0, len(_FIRST_NAMES), n)
    word = rng.integers(0, len(_HOST_WORDS), n)
    num = rng.integers(1, 60, n)
    for i in range(n):
        if kind[i] < 0.45:
            out.append(f"DESKTOP-{tails[i][:7]}")
        elif kind[i] < 0.6:
            out.append(f"LAPTOP-{tails[i]}")
        elif b2b[i] and kind[i] < 0.85:
            out.append(f"{_HOST_WORDS[word[i]]}-{num[i]:02d}")
        elif b2b[i]:
            out.append(f"{_FIRST_NAMES[first[i]]}@corp-{tails[i][:4].lower()}.com")
        else:
            out.append(f"{_FIRST_NAMES[first[i]]}-pc")
    return out


@dataclass(frozen=True)
class _World:
    """Customers, keys, devices, sites and seats of one vendor (times in seconds from start)."""

    cust_country: np.ndarray
    cust_offset: np.ndarray  # hours
    cust_b2b: np.ndarray
    cust_join: np.ndarray
    cust_churn: np.ndarray
    cust_blocked: np.ndarray
    key_cust: np.ndarray
    key_product: np.ndarray  # index into vendor products
    key_limit: np.ndarray
    key_do: np.ndarray  # (n_keys, 2) data object ids, -1 where none
    dev_cust: np.ndarray
    dev_site: np.ndarray
    dev_fn: np.ndarray  # index into the friendly-name table, 0 = none
    site_cust: np.ndarray
    seat_key: np.ndarray
    seat_dev: np.ndarray
    seat_rate: np.ndarray  # sessions per ordinary day
    seat_start: np.ndarray
    seat_end: np.ndarray
    seat_retired: np.ndarray  # the seat ends because its device was retired
    epoch_site: np.ndarray
    epoch_start: np.ndarray
    epoch_ip: np.ndarray
    n_keys: int


def _draw_world(
    rng: np.random.Generator,
    vendor: _Vendor,
    n_customers: int,
    window: float,
    pools: _IpPools,
    tables: _Tables,
    join_at: np.ndarray | None = None,
) -> _World:
    """Customers and their keys, devices and networks; ``join_at`` fixes when they join."""
    nc = n_customers
    country = rng.choice(len(COUNTRY_CODES), nc, p=vendor.country_weights)
    offset = np.array([rng.choice(_COUNTRIES[c][1]) for c in country], dtype=np.float64)
    b2b = rng.random(nc) < vendor.b2b_share
    if join_at is None:
        # Most customers exist before the window; the others join during it (the vendor grows).
        existing = rng.random(nc) < 0.7
        join = np.where(existing, -rng.uniform(30, 1500, nc) * _DAY, rng.uniform(0, window, nc))
    else:
        join = np.asarray(join_at, dtype=np.float64)
    churn = join + rng.exponential(365.0 / 0.12, nc) * _DAY
    churn = np.where(churn < window, np.maximum(churn, join + 14 * _DAY), np.inf)
    blocked = np.isfinite(churn) & (rng.random(nc) < 0.2)
    activity = rng.lognormal(0.0, 0.5, nc)

    # Devices
    n_dev = np.where(
        b2b,
        np.clip(np.exp(rng.normal(1.3, 0.8, nc)).astype(int) + 1, 1, 40),
        1 + np.minimum(rng.poisson(0.5, nc), 3),
    )
    dev_cust = np.repeat(np.arange(nc), n_dev)
    nd = len(dev_cust)
    dev_join = np.where(
        rng.random(nd) < 0.8,
        join[dev_cust],
        join[dev_cust]
        + rng.uniform(0, 1, nd) * (np.minimum(churn[dev_cust], window) - join[dev_cust]),
    )
    dev_join = np.maximum(dev_join, join[dev_cust])
    dev_retire = dev_join + rng.exponential(365.0 / 0.15, nd) * _DAY
    dev_activity = rng.lognormal(0.0, 0.6, nd)
    has_fn = rng.random(nd) < vendor.fn_share
    names = _friendly_names(rng, int(has_fn.sum()), b2b[dev_cust[has_fn]])
    dev_fn = np.zeros(nd, dtype=np.int64)
    dev_fn[has_fn] = tables.add_names(names)

    # Sites (networks a customer's devices use) and their IP timelines.
    n_sites = np.where(b2b, 1 + rng.binomial(2, 0.4, nc), 1 + (rng.random(nc) < 0.25))
    site_cust = np.repeat(np.arange(nc), n_sites)
    ns = len(site_cust)
    site_first = np.r_[0, np.cumsum(n_sites)[:-1]]
    dev_site = site_first[dev_cust] + (rng.random(nd) * n_sites[dev_cust]).astype(np.int64)
    site_static = b2b[site_cust] & (np.arange(ns) == site_first[site_cust])
    mean_days = np.where(site_static, 500.0, rng.uniform(15, 120, ns))
    site_v6 = rng.random(ns) < 0.08
    n_ep = 1 + rng.poisson(window / _DAY / mean_days)
    epoch_site = np.repeat(np.arange(ns), n_ep)
    epoch_start = rng.uniform(0, window, len(epoch_site))
    first_ep = np.r_[0, np.cumsum(n_ep)[:-1]]
    epoch_start[first_ep] = -np.inf
    order = np.lexsort((epoch_start, epoch_site))
    epoch_start = epoch_start[order]
    epoch_ip = pools.sample(rng, country[site_cust[epoch_site]], site_v6[epoch_site])

    # Keys: one per product bought, occasionally two for the same product.
    n_products = len(vendor.product_id)
    key_cust_l: list[int] = []
    key_prod_l: list[int] = []
    for c in range(nc):
        k = 1 + (rng.binomial(n_products - 1, 0.35) if b2b[c] else int(rng.random() < 0.1))
        prods = rng.choice(n_products, min(k, n_products), replace=False, p=vendor.product_weight)
        if b2b[c] and rng.random() < 0.1:
            prods = np.r_[prods, prods[0]]
        key_cust_l.extend([c] * len(prods))
        key_prod_l.extend(int(p) for p in prods)
    key_cust = np.array(key_cust_l, dtype=np.int64)
    key_product = np.array(key_prod_l, dtype=np.int64)
    nk = len(key_cust)
    tables.add_keys(_license_keys(rng, nk))
    n_do = np.where(vendor.product_model[key_product] == _USAGE, 1 + (rng.random(nk) < 0.3), 0)
    key_do = np.full((nk, 2), -1, dtype=np.int64)
    do_ids = 10_000 + np.cumsum(rng.integers(1, 40, 2 * nk))
    key_do[:, 0] = np.where(n_do >= 1, do_ids[0::2], -1)
    key_do[:, 1] = np.where(n_do >= 2, do_ids[1::2], -1)

    # Seats: (key, device) pairs.
    dev_first = np.r_[0, np.cumsum(n_dev)[:-1]]
    seat_key_l: list[np.ndarray] = []
    seat_dev_l: list[np.ndarray] = []
    key_limit = np.zeros(nk, dtype=np.int64)
    for k in range(nk):
        c = key_cust[k]
        devs = dev_first[c] + np.arange(n_dev[c])
        model = vendor.product_model[key_product[k]]
        if b2b[c] and len(devs) > 1:
            share = rng.uniform(0.5, 1.0) if model == _FLOAT else rng.uniform(0.3, 1.0)
            devs = np.sort(rng.choice(devs, max(1, round(len(devs) * share)), replace=False))
        if model == _FLOAT:
            key_limit[k] = max(1, round(len(devs) * rng.uniform(0.35, 0.8)))
        else:
            key_limit[k] = len(devs) + int(rng.integers(0, 4))
        seat_key_l.append(np.full(len(devs), k))
        seat_dev_l.append(devs)
    seat_key = np.concatenate(seat_key_l)
    seat_dev = np.concatenate(seat_dev_l)
    model = vendor.product_model[key_product[seat_key]]
    sc = key_cust[seat_key]
    median = np.select([model == _NODE, model == _USAGE], [0.55, 0.8], 1.0)
    median = median * np.where(b2b[sc], 1.0, 0.5)
    rate = median * activity[sc] * dev_activity[seat_dev] * rng.lognormal(0.0, 0.3, len(sc))
    rare = (model == _NODE) & (rng.random(len(sc)) < 0.1)  # verifies only now and then
    rate = np.where(rare, rate * 0.05, rate)
    seat_start = np.maximum(dev_join[seat_dev], join[sc])
    retired = dev_retire[seat_dev] < churn[sc]
    seat_end = np.minimum(dev_retire[seat_dev], churn[sc])
    return _World(
        cust_country=country,
        cust_offset=offset,
        cust_b2b=b2b,
        cust_join=join,
        cust_churn=churn,
        cust_blocked=blocked,
        key_cust=key_cust,
        key_product=key_product,
        key_limit=key_limit,
        key_do=key_do,
        dev_cust=dev_cust,
        dev_site=dev_site,
        dev_fn=dev_fn,
        site_cust=site_cust,
        seat_key=seat_key,
        seat_dev=seat_dev,
        seat_rate=rate,
        seat_start=seat_start,
        seat_end=seat_end,
        seat_retired=retired & (seat_end < window),
        epoch_site=epoch_site,
        epoch_start=epoch_start,
        epoch_ip=epoch_ip,
        n_keys=nk,
    )


def _merge_worlds(a: _World, b: _World) -> _World:
    """World ``a`` followed by world ``b`` (whose keys, devices and names follow ``a``'s in the
    tables), with ``b``'s indices moved past ``a``'s."""
    nc, nk, nd, ns = len(a.cust_country), a.n_keys, len(a.dev_cust), len(a.site_cust)
    do_shift = int(max(a.key_do.max(initial=-1), 9_999)) + 1 - 10_000
    b_do = np.where(b.key_do >= 0, b.key_do + do_shift, -1)
    cat = np.concatenate
    return _World(
        cust_country=cat([a.cust_country, b.cust_country]),
        cust_offset=cat([a.cust_offset, b.cust_offset]),
        cust_b2b=cat([a.cust_b2b, b.cust_b2b]),
        cust_join=cat([a.cust_join, b.cust_join]),
        cust_churn=cat([a.cust_churn, b.cust_churn]),
        cust_blocked=cat([a.cust_blocked, b.cust_blocked]),
        key_cust=cat([a.key_cust, b.key_cust + nc]),
        key_product=cat([a.key_product, b.key_product]),
        key_limit=cat([a.key_limit, b.key_limit]),
        key_do=cat([a.key_do, b_do]),
        dev_cust=cat([a.dev_cust, b.dev_cust + nc]),
        dev_site=cat([a.dev_site, b.dev_site + ns]),
        dev_fn=cat([a.dev_fn, b.dev_fn]),
        site_cust=cat([a.site_cust, b.site_cust + nc]),
        seat_key=cat([a.seat_key, b.seat_key + nk]),
        seat_dev=cat([a.seat_dev, b.seat_dev + nd]),
        seat_rate=cat([a.seat_rate, b.seat_rate]),
        seat_start=cat([a.seat_start, b.seat_start]),
        seat_end=cat([a.seat_end, b.seat_end]),
        seat_retired=cat([a.seat_retired, b.seat_retired]),
        epoch_site=cat([a.epoch_site, b.epoch_site + ns]),
        epoch_start=cat([a.epoch_start, b.epoch_start]),
        epoch_ip=cat([a.epoch_ip, b.epoch_ip]),
        n_keys=nk + b.n_keys,
    )


class _Tables:
    """String tables that rows point into: keys, IPs, machine codes, friendly names."""

    def __init__(self, pools: _IpPools) -> None:
        self.keys: list[np.ndarray] = []
        self.n_keys = 0
        self.ips: list[np.ndarray] = [pools.ips]  # rows point at pool addresses directly
        self.mcs: list[np.ndarray] = [np.array([""], dtype=object)]
        self.n_mcs = 1
        self.names: list[str | None] = [None]

    def add_keys(self, keys: np.ndarray) -> np.ndarray:
        idx = self.n_keys + np.arange(len(keys))
        self.keys.append(np.asarray(keys, dtype=object))
        self.n_keys += len(keys)
        return idx

    def add_mcs(self, mcs: np.ndarray) -> np.ndarray:
        idx = self.n_mcs + np.arange(len(mcs))
        self.mcs.append(np.asarray(mcs, dtype=object))
        self.n_mcs += len(mcs)
        return idx

    def add_names(self, names: list[str]) -> np.ndarray:
        idx = len(self.names) + np.arange(len(names))
        self.names.extend(names)
        return idx

    def key(self, i: int) -> str:
        for part in self.keys:
            if i < len(part):
                return str(part[i])
            i -= len(part)
        raise IndexError(i)

    def ip(self, i: int) -> str:
        return str(self.ips[0][i])
