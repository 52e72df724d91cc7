"""Simulated Cryptolens Web API Logs of one software vendor, with labelled anomalies.

A vendor is drawn from a seed: its products (each with a licensing model of thesis section 2.1),
its customers (country, timezone, business or consumer, keys, devices, network sites) and its
software's habits (machine-code format, how it verifies a licence, heartbeat interval, friendly
names, IP anonymisation). Normal traffic follows working hours and weekdays in each customer's
timezone; anomalies of :data:`ANOMALY_KINDS` (and, when asked, :data:`LATE_KINDS`) are
injected as bursts and labelled row by row. Knobs of :func:`simulate` vary the world (event
sizes, traffic growth, unlabelled look-alikes, storms), and :func:`simulate_share` reaches a
given share of anomalous chunks (:func:`anomalous_share`). Everything is vectorised with numpy
and polars, and deterministic for a given set of arguments.

The fourth digit of a State is the simulator's own convention (Cryptolens documents it only
loosely); the ``DETAIL_*`` and ``FAIL_*`` constants below name them.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from iptocc import country_code

from licanom.data.columns import RAW
from licanom.data.states import MethodGroup, make_state

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

    def write(self, out_dir: Path) -> None:
        """Write ``log.parquet``, ``labels.parquet`` and ``events.csv`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.log.write_parquet(out / "log.parquet")
        self.labels.write_parquet(out / "labels.parquet")
        self.events.write_csv(out / "events.csv")


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


# ---------------------------------------------------------------------------------------------
# Rows


# Row columns: time, product, key, IP, state, machine code, friendly name, FloatingExpires,
# DOIntValue, DOId, event.
_ROW_DTYPES = (np.float64, *(np.int64,) * 6, np.float64, *(np.int64,) * 3)


class _Rows:
    """Columns of log rows under construction, as numpy arrays (times in seconds from start)."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(
        self,
        t: np.ndarray,
        product: np.ndarray | int,
        key: np.ndarray | int,
        ip: np.ndarray | int,
        state: np.ndarray | int,
        mc: np.ndarray | int = 0,
        fn: np.ndarray | int = 0,
        fexp: np.ndarray | float = np.nan,
        dov: np.ndarray | int = _NULL_INT,
        doid: np.ndarray | int = -1,
        event: int = -1,
    ) -> None:
        t = np.asarray(t, dtype=np.float64)
        n = len(t)
        if n == 0:
            return

        def full(v: np.ndarray | float | int, dtype: type) -> np.ndarray:
            return np.broadcast_to(np.asarray(v, dtype=dtype), (n,))

        self.parts.append(
            (
                t,
                full(product, np.int64),
                full(key, np.int64),
                full(ip, np.int64),
                full(state, np.int64),
                full(mc, np.int64),
                full(fn, np.int64),
                full(fexp, np.float64),
                full(dov, np.int64),
                full(doid, np.int64),
                full(event, np.int64),
            )
        )

    def __len__(self) -> int:
        return sum(len(part[0]) for part in self.parts)

    def columns(self) -> tuple[np.ndarray, ...]:
        if not self.parts:
            return tuple(np.zeros(0, dtype=d) for d in _ROW_DTYPES)
        return tuple(np.concatenate([p[i] for p in self.parts]) for i in range(11))

    def set_ip(self, rows: np.ndarray, ip: np.ndarray) -> None:
        """Give the rows at positions ``rows`` (of :meth:`columns`) the addresses ``ip``."""
        rows = np.asarray(rows, dtype=np.int64)
        ip = np.asarray(ip, dtype=np.int64)
        lo = 0
        for n, part in enumerate(self.parts):
            hi = lo + len(part[0])
            sel = (rows >= lo) & (rows < hi)
            if sel.any():
                col = np.array(part[3], dtype=np.int64)  # a writable copy
                col[rows[sel] - lo] = ip[sel]
                self.parts[n] = (*part[:3], col, *part[4:])
            lo = hi


def _ranges(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For counts c_i: the owner i of each of sum(c) items and its position within its owner."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - starts[owner]


def _site_ip(world: _World, site: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The address a site had at time t (the site's IP timeline)."""
    big = 2.0**36
    keys = world.epoch_site * big + np.where(np.isinf(world.epoch_start), -1.0, world.epoch_start)
    pos = np.searchsorted(keys, site * big + t, side="right") - 1
    return world.epoch_ip[pos]


def _day_weights(start: datetime, days: int, b2b: bool) -> np.ndarray:
    day0 = np.datetime64(start.date(), "D")
    dates = day0 + np.arange(days)
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    holiday = ((month == 12) & (dom >= 22)) | ((month == 1) & (dom <= 2))
    summer = (month == 7) | ((month == 8) & (dom <= 15))
    if b2b:
        return _WEEKDAY_B2B[weekday] * np.where(holiday, 0.3, 1.0) * np.where(summer, 0.8, 1.0)
    return _WEEKDAY_B2C[weekday] * np.where(holiday, 1.15, 1.0)


@dataclass(frozen=True)
class _Sessions:
    seat: np.ndarray
    t: np.ndarray
    dur: np.ndarray
    ip: np.ndarray
    first: np.ndarray  # the seat's first session, when the seat began inside the window


def _draw_sessions(
    rng: np.random.Generator,
    vendor: _Vendor,
    world: _World,
    start: datetime,
    days: int,
    pools: _IpPools,
    tables: _Tables,
    day_factor: np.ndarray | None = None,
    old_seat: np.ndarray | None = None,
) -> _Sessions:
    """Sessions of every seat; with ``day_factor`` (one multiplier a day), a seat marked in
    ``old_seat`` gets only the sessions beyond its ordinary rate (``day_factor - 1``)."""
    window = days * _DAY
    seat_cust = world.key_cust[world.seat_key]
    seat_b2b = world.cust_b2b[seat_cust]
    w = np.stack([_day_weights(start, days, False), _day_weights(start, days, True)])
    mid = (np.arange(days) + 0.5) * _DAY
    seats_l, days_l = [], []
    chunk = max(1, 2_000_000 // max(days, 1))
    for lo in range(0, len(world.seat_key), chunk):
        sl = slice(lo, lo + chunk)
        active = (mid[None, :] >= world.seat_start[sl, None]) & (
            mid[None, :] < world.seat_end[sl, None]
        )
        lam = world.seat_rate[sl, None] * w[seat_b2b[sl].astype(int)] * active
        if day_factor is not None and old_seat is not None:
            lam = lam * np.maximum(day_factor[None, :] - old_seat[sl, None], 0.0)
        counts = rng.poisson(lam)
        s, d = np.nonzero(counts)
        c = counts[s, d]
        seats_l.append(np.repeat(s + lo, c))
        days_l.append(np.repeat(d, c))
    seat = np.concatenate(seats_l)
    day = np.concatenate(days_l)
    b2b = seat_b2b[seat]
    hours = np.where(
        b2b,
        rng.choice(24, len(seat), p=_HOURS_B2B / _HOURS_B2B.sum()),
        rng.choice(24, len(seat), p=_HOURS_B2C / _HOURS_B2C.sum()),
    )
    local = hours * _HOUR + rng.random(len(seat)) * _HOUR
    since_midnight = start.hour * _HOUR + start.minute * 60.0 + start.second
    t = day * _DAY + local - world.cust_offset[seat_cust[seat]] * _HOUR - since_midnight
    keep = (t >= world.seat_start[seat]) & (t < world.seat_end[seat]) & (t >= 0) & (t < window)
    seat, t, b2b = seat[keep], t[keep], b2b[keep]
    order = np.lexsort((t, seat))
    seat, t, b2b = seat[order], t[order], b2b[order]
    model = vendor.product_model[world.key_product[world.seat_key[seat]]]
    median_h = np.where(
        b2b, np.where(model == _FLOAT, 2.5, 1.5), np.where(model == _FLOAT, 1.0, 0.7)
    )
    dur = np.minimum(median_h * np.exp(rng.normal(0.0, 0.8, len(t))), 14.0) * _HOUR
    same_next = np.r_[seat[1:] == seat[:-1], False]
    gap = np.r_[t[1:] - t[:-1], np.inf]
    dur = np.where(same_next, np.minimum(dur, gap - 30.0), dur)
    dur = np.maximum(dur, 60.0)
    first = np.r_[True, seat[1:] != seat[:-1]] & (world.seat_start[seat] >= 0)
    # Network: the device's usual site, sometimes another site of the customer, rarely abroad.
    dev = world.seat_dev[seat]
    site = world.dev_site[dev]
    cust = seat_cust[seat]
    site_first = np.searchsorted(world.site_cust, cust, side="left")
    site_n = np.searchsorted(world.site_cust, cust, side="right") - site_first
    other = rng.random(len(t)) < 0.12
    site = np.where(other, site_first + (rng.random(len(t)) * site_n).astype(np.int64), site)
    ip = _site_ip(world, site, t)
    travel = rng.random(len(t)) < 0.002
    if travel.any():
        abroad = rng.choice(len(COUNTRY_CODES), int(travel.sum()), p=vendor.country_weights)
        ip[travel] = pools.sample(rng, abroad, np.zeros(len(abroad), bool))
    return _Sessions(seat=seat, t=t, dur=dur, ip=ip, first=first)


def _expected_rows(vendor: _Vendor, world: _World, start: datetime, days: int) -> float:
    """A rough expectation of the number of normal rows the world will produce."""
    window = days * _DAY
    cust = world.key_cust[world.seat_key]
    b2b = world.cust_b2b[cust]
    mean_w = np.where(
        b2b, _day_weights(start, days, True).mean(), _day_weights(start, days, False).mean()
    )
    lo = np.clip(world.seat_start, 0, window)
    hi = np.clip(world.seat_end, 0, window)
    sessions = world.seat_rate * mean_w * (hi - lo) / _DAY
    prod = world.key_product[world.seat_key]
    model = vendor.product_model[prod]
    median_h = np.where(
        b2b, np.where(model == _FLOAT, 2.5, 1.5), np.where(model == _FLOAT, 1.0, 0.7)
    )
    dur = median_h * np.exp(0.32) * _HOUR * 0.85
    per_session = np.select(
        [model == _NODE, model == _USAGE],
        [1.15, 1.15 + 3.8 * dur / _HOUR],
        2.0 + dur / vendor.product_heartbeat[prod],
    )
    return float((sessions * per_session).sum())


def _normal_rows(
    rng: np.random.Generator,
    vendor: _Vendor,
    world: _World,
    ses: _Sessions,
    rows: _Rows,
    window: float,
    tables: _Tables,
    vendor_ip: int,
    first_customer: int = 0,
) -> None:
    """Append the vendor's ordinary traffic to rows.

    Rows that belong to the world rather than to sessions (counter resets, renewals, churn,
    retirements) are written only for customers from ``first_customer`` on.
    """
    key = world.seat_key[ses.seat]
    dev = world.seat_dev[ses.seat]
    prod = world.key_product[key]
    pid = vendor.product_id[prod]
    model = vendor.product_model[prod]
    mc = dev + 1  # machine codes of devices sit at 1.. in the table
    fn_all = world.dev_fn[dev] if vendor.fn_everywhere else np.zeros(len(dev), dtype=np.int64)
    fn_act = world.dev_fn[dev]
    n = len(ses.t)
    getkey = vendor.product_getkey[prod]

    # Node-locked and usage-based: a licence check at start-up, sometimes a second one later.
    nf = model != _FLOAT
    verify_state = np.where(
        getkey,
        make_state(MethodGroup.VALIDATION, True, DETAIL_PLAIN),
        make_state(MethodGroup.ACTIVATION, True, DETAIL_KNOWN_MACHINE),
    )
    state = np.where(
        ses.first, make_state(MethodGroup.ACTIVATION, True, DETAIL_PLAIN), verify_state
    )
    is_act = (state // 100) == MethodGroup.ACTIVATION
    sel = nf
    rows.add(
        ses.t[sel],
        pid[sel],
        key[sel],
        ses.ip[sel],
        state[sel],
        np.where(is_act | ~getkey, mc, 0)[sel],
        np.where(is_act, fn_act, fn_all)[sel],
    )
    again = nf & (rng.random(n) < 0.15)
    t2 = ses.t + rng.random(n) * ses.dur
    rows.add(
        t2[again],
        pid[again],
        key[again],
        ses.ip[again],
        verify_state[again],
        np.where(getkey, 0, mc)[again],
        np.where(getkey, fn_all, fn_act)[again],
    )

    # A new device sometimes meets the machine limit first, and the customer frees a seat.
    limit_hit = nf & ses.first & (rng.random(n) < 0.06)
    idx = np.flatnonzero(limit_hit)
    if len(idx):
        k = rng.integers(1, 4, len(idx))
        owner, pos = _ranges(k)
        i = idx[owner]
        tf = ses.t[i] - 60.0 * (k[owner] - pos) - rng.uniform(0, 40, len(i))
        rows.add(
            tf,
            pid[i],
            key[i],
            ses.ip[i],
            make_state(MethodGroup.ACTIVATION, False, FAIL_TOO_MANY_MACHINES),
            mc[i],
            fn_act[i],
        )
        other_dev = world.seat_dev[np.clip(ses.seat[idx] - 1, 0, None)]
        ok = world.seat_key[np.clip(ses.seat[idx] - 1, 0, None)] == key[idx]
        rows.add(
            ses.t[idx][ok] - rng.uniform(3, 30, int(ok.sum())),
            pid[idx][ok],
            key[idx][ok],
            ses.ip[idx][ok],
            make_state(MethodGroup.DEACTIVATION, True, DETAIL_PLAIN),
            other_dev[ok] + 1,
            world.dev_fn[other_dev[ok]],
        )

    # A new customer sometimes mistypes the key once or twice.
    typo = ses.first & (rng.random(n) < 0.04)
    idx = np.flatnonzero(typo)
    if len(idx):
        bad = tables.add_keys(_mistyped(rng, np.concatenate(tables.keys)[key[idx]]))
        st = np.where(
            model[idx] == _FLOAT,
            make_state(MethodGroup.ACTIVATION, False, FAIL_KEY_NOT_FOUND),
            np.where(
                getkey[idx],
                make_state(MethodGroup.VALIDATION, False, FAIL_KEY_NOT_FOUND),
                make_state(MethodGroup.ACTIVATION, False, FAIL_KEY_NOT_FOUND),
            ),
        )
        rows.add(
            ses.t[idx] - rng.uniform(10, 240, len(idx)),
            pid[idx],
            bad,
            ses.ip[idx],
            st,
            mc[idx],
            fn_act[idx],
        )

    # Usage-based: data-object increments while the application runs.
    us = np.flatnonzero(model == _USAGE)
    if len(us):
        use_rate = rng.lognormal(np.log(3.0), 0.7, world.n_keys)
        k = rng.poisson(use_rate[key[us]] * ses.dur[us] / _HOUR)
        owner, _ = _ranges(k)
        i = us[owner]
        tu = ses.t[i] + rng.random(len(i)) * ses.dur[i]
        unit = np.where(vendor.product_unit_var[prod[i]], rng.geometric(0.25, len(i)), 1)
        unit = np.where(rng.random(len(i)) < 0.01, unit * 50, unit)
        second = (world.key_do[key[i], 1] >= 0) & (rng.random(len(i)) < 0.3)
        doid = np.where(second, world.key_do[key[i], 1], world.key_do[key[i], 0])
        dec = vendor.product_decrement[prod[i]]
        st = np.where(
            dec,
            make_state(MethodGroup.DATA_OBJECT, True, DETAIL_DO_DECREMENT),
            make_state(MethodGroup.DATA_OBJECT, True, DETAIL_PLAIN),
        )
        st = _usage_limits(
            rng, tu, key[i], doid, unit, st, world, vendor, rows, window, vendor_ip, first_customer
        )
        rows.add(tu, pid[i], key[i], ses.ip[i], st, mc[i], fn_all[i], dov=unit, doid=doid)

    # Floating: an activation, heartbeats every few minutes, and maybe a release at the end.
    fl = np.flatnonzero(model == _FLOAT)
    if len(fl):
        win = vendor.product_window[prod[fl]]
        hb = vendor.product_heartbeat[prod[fl]]
        rows.add(
            ses.t[fl],
            pid[fl],
            key[fl],
            ses.ip[fl],
            make_state(MethodGroup.ACTIVATION, True, DETAIL_FLOATING),
            mc[fl],
            fn_act[fl],
            fexp=ses.t[fl] + win,
        )
        k = np.floor(ses.dur[fl] / hb).astype(np.int64)
        owner, pos = _ranges(k)
        i = fl[owner]
        th = ses.t[i] + (pos + 1) * hb[owner] + rng.normal(0.0, 1.5, len(i))
        rows.add(
            th,
            pid[i],
            key[i],
            ses.ip[i],
            make_state(MethodGroup.VALIDATION, True, DETAIL_HEARTBEAT),
            mc[i],
            fn_all[i],
            fexp=th + win[owner],
        )
        rel = rng.random(len(fl)) < vendor.release_share
        j = fl[rel]
        rows.add(
            ses.t[j] + ses.dur[j] + rng.uniform(0, 5, len(j)),
            pid[j],
            key[j],
            ses.ip[j],
            make_state(MethodGroup.DEACTIVATION, True, DETAIL_FLOATING),
            mc[j],
            fn_all[j],
        )
        # All seats taken: the client waits and retries before it gets one.
        busy = rng.random(len(fl)) < vendor.busy_fail
        b = fl[busy]
        if len(b):
            k = rng.integers(1, 5, len(b))
            owner, pos = _ranges(k)
            i = b[owner]
            tb = ses.t[i] - (k[owner] - pos) * rng.uniform(30, 120, len(i))
            rows.add(
                tb,
                pid[i],
                key[i],
                ses.ip[i],
                make_state(MethodGroup.ACTIVATION, False, FAIL_TOO_MANY_MACHINES),
                mc[i],
                fn_act[i],
            )

    # Retired devices are deactivated (node-locked and usage-based), now and then.
    ret = np.flatnonzero(world.seat_retired & (rng.random(len(world.seat_key)) < 0.5))
    ret = ret[world.key_cust[world.seat_key[ret]] >= first_customer]
    ret = ret[vendor.product_model[world.key_product[world.seat_key[ret]]] != _FLOAT]
    if len(ret):
        t_ret = world.seat_end[ret]
        sk = world.seat_key[ret]
        site = world.dev_site[world.seat_dev[ret]]
        rows.add(
            t_ret,
            vendor.product_id[world.key_product[sk]],
            sk,
            _site_ip(world, site, t_ret),
            make_state(MethodGroup.DEACTIVATION, True, DETAIL_PLAIN),
            world.seat_dev[ret] + 1,
            world.dev_fn[world.seat_dev[ret]],
        )

    _churn_rows(rng, vendor, world, rows, window, vendor_ip, first_customer)
    _vendor_rows(rng, vendor, world, rows, window, vendor_ip, first_customer)


def _usage_limits(
    rng: np.random.Generator,
    t: np.ndarray,
    key: np.ndarray,
    doid: np.ndarray,
    unit: np.ndarray,
    state: np.ndarray,
    world: _World,
    vendor: _Vendor,
    rows: _Rows,
    window: float,
    vendor_ip: int,
    first_customer: int = 0,
) -> np.ndarray:
    """Monthly usage limits per data object: over the limit, increments fail; the vendor resets."""
    period = np.floor(t / (30 * _DAY)).astype(np.int64)
    n_periods = int(np.ceil(window / (30 * _DAY))) + 1
    group = doid * n_periods + period
    order = np.lexsort((t, group))
    g = group[order]
    u = unit[order].astype(np.float64)
    csum = np.cumsum(u)
    new = np.r_[True, g[1:] != g[:-1]]
    base = np.maximum.accumulate(np.where(new, csum - u, 0.0))
    within = csum - base
    totals = (
        pl.DataFrame({"doid": doid, "group": group, "u": unit})
        .group_by(["doid", "group"])
        .agg(pl.col("u").sum())
        .group_by("doid")
        .agg(pl.col("u").median().alias("med"))
        .sort("doid")
    )
    factor = rng.uniform(1.5, 5.0, totals.height)
    limit = np.ceil(totals["med"].to_numpy() * factor)
    lim = limit[np.searchsorted(totals["doid"].to_numpy(), doid[order])]
    over = within > lim
    out = state.copy()
    out[order[over]] = make_state(MethodGroup.DATA_OBJECT, False, FAIL_USAGE_LIMIT)
    # The vendor's backend resets each counter at the start of every period.
    do_key = pl.DataFrame({"doid": doid, "key": key}).unique("doid").sort("doid")
    n = do_key.height
    k_of = do_key["key"].to_numpy()
    per = np.arange(1, n_periods)
    tt = (per[None, :] * 30 * _DAY + rng.uniform(0, 1800, (n, len(per)))).ravel()
    dd = np.repeat(do_key["doid"].to_numpy(), len(per))
    kk = np.repeat(k_of, len(per))
    cust = world.key_cust[kk]
    ok = (tt < window) & (tt >= world.cust_join[cust]) & (tt < world.cust_churn[cust])
    ok &= cust >= first_customer
    # A counting-up object is set back to 0; a counting-down one to its allowance.
    start_value = np.where(vendor.product_decrement[world.key_product[k_of]], limit, 0)
    rows.add(
        tt[ok],
        vendor.product_id[world.key_product[kk[ok]]],
        kk[ok],
        vendor_ip,
        make_state(MethodGroup.DATA_OBJECT, True, DETAIL_DO_SET),
        0,
        dov=np.repeat(start_value, len(per)).astype(np.int64)[ok],
        doid=dd[ok],
    )
    return out


def _churn_rows(
    rng: np.random.Generator,
    vendor: _Vendor,
    world: _World,
    rows: _Rows,
    window: float,
    vendor_ip: int,
    first_customer: int = 0,
) -> None:
    """After a licence expires or is blocked, some devices keep trying for a few days."""
    churned = np.isfinite(world.cust_churn)
    s = np.flatnonzero(
        churned[world.key_cust[world.seat_key]]
        & ~world.seat_retired
        & (rng.random(len(world.seat_key)) < 0.5)
    )
    s = s[world.key_cust[world.seat_key[s]] >= first_customer]
    if len(s):
        cust = world.key_cust[world.seat_key[s]]
        n_days = rng.integers(1, 11, len(s))
        per_day = rng.integers(1, 4, len(s))
        owner, pos = _ranges(n_days * per_day)
        i = s[owner]
        c = cust[owner]
        day = pos // per_day[owner]
        t = world.cust_churn[c] + day * _DAY + rng.uniform(0.5, 10, len(i)) * _HOUR
        key = world.seat_key[i]
        prod = world.key_product[key]
        model = vendor.product_model[prod]
        detail = np.where(world.cust_blocked[c], FAIL_BLOCKED, FAIL_EXPIRED)
        getkey = vendor.product_getkey[prod] & (model != _FLOAT)
        group = np.where(getkey, int(MethodGroup.VALIDATION), int(MethodGroup.ACTIVATION))
        st = group * 100 + 20 + detail
        dev = world.seat_dev[i]
        ip = _site_ip(world, world.dev_site[dev], t)
        keep = t < window
        rows.add(
            t[keep],
            vendor.product_id[prod][keep],
            key[keep],
            ip[keep],
            st[keep],
            np.where(getkey, 0, dev + 1)[keep],
            world.dev_fn[dev][keep],
        )
    blocked = np.flatnonzero(world.cust_blocked[world.key_cust])
    blocked = blocked[world.key_cust[blocked] >= first_customer]
    t = world.cust_churn[world.key_cust[blocked]] - rng.uniform(0, 600, len(blocked))
    rows.add(
        t,
        vendor.product_id[world.key_product[blocked]],
        blocked,
        vendor_ip,
        make_state(MethodGroup.OTHER_LICENCE_CHANGE, True, DETAIL_BLOCK),
    )


def _vendor_rows(
    rng: np.random.Generator,
    vendor: _Vendor,
    world: _World,
    rows: _Rows,
    window: float,
    vendor_ip: int,
    first_customer: int = 0,
) -> None:
    """The vendor's backend: keys created for new customers, yearly renewals."""
    created = world.cust_join[world.key_cust]
    new = np.flatnonzero((created >= 0) & (world.key_cust >= first_customer))
    rows.add(
        created[new] + rng.uniform(0, 20, len(new)),
        vendor.product_id[world.key_product[new]],
        new,
        vendor_ip,
        make_state(MethodGroup.KEY_GENERATION, True, DETAIL_PLAIN),
    )
    years = int(np.ceil(window / (365 * _DAY))) + 5
    k = np.repeat(np.arange(world.n_keys), years)
    y = np.tile(np.arange(1, years + 1), world.n_keys)
    t = created[k] + y * 365 * _DAY - rng.uniform(0, 3 * _DAY, len(k))
    cust = world.key_cust[k]
    ok = (t >= 0) & (t < window) & (t < world.cust_churn[cust]) & (cust >= first_customer)
    rows.add(
        t[ok],
        vendor.product_id[world.key_product[k[ok]]],
        k[ok],
        vendor_ip,
        make_state(MethodGroup.OTHER_LICENCE_CHANGE, True, DETAIL_PLAIN),
    )


def _transient_failures(rng: np.random.Generator, vendor: _Vendor, rows: _Rows) -> None:
    """Sporadic failed requests retried a moment later (busy server, bad request, permissions)."""
    t, product, key, ip, state, mc, fn, _, dov, doid, _ = rows.columns()
    sel = np.flatnonzero(rng.random(len(t)) < vendor.transient_fail)
    detail = rng.choice(
        [FAIL_RATE_LIMITED, FAIL_BAD_REQUEST, FAIL_ACCESS_DENIED], len(sel), p=[0.45, 0.35, 0.2]
    )
    group = state[sel] // 100
    rows.add(
        t[sel] - rng.uniform(0.5, 20, len(sel)),
        product[sel],
        key[sel],
        ip[sel],
        group * 100 + 20 + detail,
        mc[sel],
        fn[sel],
        dov=dov[sel],
        doid=doid[sel],
    )


# ---------------------------------------------------------------------------------------------
# Normal look-alikes: unusual but legitimate traffic, never labelled


def _local_times(
    rng: np.random.Generator, n: int, day: np.ndarray, offset: np.ndarray, start: datetime,
    hours: np.ndarray,
) -> np.ndarray:
    """Times (seconds from start) of n requests on the given days, at local hours drawn from
    the profile ``hours``, in the given UTC offsets (hours)."""
    since_midnight = start.hour * _HOUR + start.minute * 60.0 + start.second
    hour = rng.choice(24, n, p=hours / hours.sum())
    return day * _DAY + (hour + rng.random(n)) * _HOUR - offset * _HOUR - since_midnight


def _build_farms(
    rng: np.random.Generator, vendor: _Vendor, world: _World, tables: _Tables, rows: _Rows,
    start: datetime, days: int, per_day: float,
) -> None:
    """CI machines: ephemeral containers activating one key from fresh machine codes daily."""
    settled = world.cust_b2b & (world.cust_join < 0)
    b2b_keys = np.flatnonzero(settled[world.key_cust])
    if len(b2b_keys) == 0:
        return
    n_farms = int(min(len(b2b_keys), 1 + (per_day > 4_000) + (per_day > 30_000)))
    window = days * _DAY
    for k in rng.choice(b2b_keys, n_farms, replace=False):
        c = int(world.key_cust[k])
        prod = int(world.key_product[k])
        floating = vendor.product_model[prod] == _FLOAT
        builds = float(np.clip(0.012 * per_day / n_farms, 3.0, 80.0)) * rng.lognormal(0.0, 0.3)
        weight = _day_weights(start, days, True) + 0.15  # nightly builds run at weekends too
        counts = rng.poisson(builds * weight / weight.mean())
        day = np.repeat(np.arange(days), counts)
        # Builds follow the working day, and a nightly batch runs around 02:00.
        hours = _HOURS_B2B + np.where(np.arange(24) == 2, 6.0, 0.0)
        t = _local_times(rng, len(day), day, np.full(len(day), world.cust_offset[c]), start, hours)
        t = np.sort(t[(t >= max(0.0, world.cust_join[c])) & (t < min(window, world.cust_churn[c]))])
        if len(t) == 0:
            continue
        mcs = tables.add_mcs(_machine_codes(rng, len(t), vendor.mc_style))
        site = int(np.searchsorted(world.site_cust, c, side="left"))  # the office network
        ips = _site_ip(world, np.full(len(t), site), t)
        pid = int(vendor.product_id[prod])
        act = make_state(
            MethodGroup.ACTIVATION, True, DETAIL_FLOATING if floating else DETAIL_PLAIN
        )
        fexp = t + vendor.product_window[prod] if floating else np.nan
        rows.add(t, pid, int(k), ips, act, mcs, fexp=fexp)
        done = rng.random(len(t)) < 0.7  # the container releases its seat when the job ends
        te = t + rng.uniform(2, 40, len(t)) * 60
        release = make_state(
            MethodGroup.DEACTIVATION, True, DETAIL_FLOATING if floating else DETAIL_PLAIN
        )
        rows.add(te[done], pid, int(k), ips[done], release, mcs[done])


def _support_desk(
    rng: np.random.Generator, vendor: _Vendor, world: _World, pools: _IpPools, rows: _Rows,
    start: datetime, days: int, per_day: float,
) -> None:
    """The vendor's support staff look up many customers' keys from one office address."""
    office = pools.sample(rng, np.array([vendor.home_country] * 2), np.array([False, False]))
    offset = _COUNTRIES[vendor.home_country][1][0]
    rate = float(np.clip(0.004 * per_day / 12.0, 0.4, 6.0))
    counts = rng.poisson(rate * _day_weights(start, days, True))
    day = np.repeat(np.arange(days), counts)
    if len(day) == 0:
        return
    hours = np.where((np.arange(24) >= 9) & (np.arange(24) < 17), 1.0, 0.0)
    begin = _local_times(rng, len(day), day, np.full(len(day), offset), start, hours)
    n_keys = rng.integers(5, 31, len(day))
    owner, _ = _ranges(n_keys)
    t = begin[owner] + rng.random(len(owner)) * _HOUR  # many keys within an hour
    key = rng.integers(0, world.n_keys, len(owner))
    churned = t >= world.cust_churn[world.key_cust[key]]
    detail = np.where(world.cust_blocked[world.key_cust[key]], FAIL_BLOCKED, FAIL_EXPIRED)
    state = np.where(
        churned,
        MethodGroup.VALIDATION * 100 + 20 + detail,
        make_state(MethodGroup.VALIDATION, True, DETAIL_PLAIN),
    )
    ok = t >= world.cust_join[world.key_cust[key]]
    ip = office[(rng.random(len(day)) < 0.2).astype(np.int64)][owner]
    rows.add(
        t[ok],
        vendor.product_id[world.key_product[key[ok]]],
        key[ok],
        ip[ok],
        state[ok],
    )


def _trial_expiries(
    rng: np.random.Generator, vendor: _Vendor, pools: _IpPools, tables: _Tables, rows: _Rows,
    days: int, per_day: float,
) -> None:
    """Trial keys used for a few weeks; at expiry the software fails a few times, then stops."""
    window = days * _DAY
    n = int(rng.poisson(days * float(np.clip(per_day / 3_000, 0.2, 4.0))))
    if n == 0:
        return
    expiry = rng.uniform(0.02, 1.0, n) * window
    length = rng.uniform(7, 30, n) * _DAY
    country = rng.choice(len(COUNTRY_CODES), n, p=vendor.country_weights)
    ip = pools.sample(rng, country, rng.random(n) < 0.08)
    key = tables.add_keys(_license_keys(rng, n))
    mc = tables.add_mcs(_machine_codes(rng, n, vendor.mc_style))
    prod = rng.choice(len(vendor.product_id), n, p=vendor.product_weight)
    pid = vendor.product_id[prod]
    getkey = vendor.product_getkey[prod] & (vendor.product_model[prod] != _FLOAT)
    # Use during the trial: an activation, then about one start-up check a day.
    per = np.maximum(1, (length / _DAY * rng.uniform(0.4, 1.0, n)).astype(np.int64))
    owner, pos = _ranges(per)
    t = expiry[owner] - length[owner] + np.sort(rng.random(len(owner))) * length[owner]
    t = np.where(pos == 0, expiry[owner] - length[owner] + rng.random(len(owner)) * _HOUR, t)
    check = np.where(
        getkey[owner],
        make_state(MethodGroup.VALIDATION, True, DETAIL_PLAIN),
        make_state(MethodGroup.ACTIVATION, True, DETAIL_KNOWN_MACHINE),
    )
    state = np.where(pos == 0, make_state(MethodGroup.ACTIVATION, True, DETAIL_PLAIN), check)
    use_mc = np.where((state // 100 == MethodGroup.VALIDATION), 0, mc[owner])
    rows.add(t, pid[owner], key[owner], ip[owner], state, use_mc)
    # Expired: a short burst of failures (the software retries, then shows a dialog), and
    # sometimes one more try a day later.
    fails = rng.integers(2, 9, n)
    again = rng.random(n) < 0.4
    owner, pos = _ranges(fails)
    tf = expiry[owner] + rng.uniform(0, 12, n)[owner] * _HOUR + pos * rng.uniform(2, 40, len(pos))
    j = np.flatnonzero(again)
    owner2, pos2 = _ranges(rng.integers(1, 4, len(j)))
    tf2 = expiry[j][owner2] + rng.uniform(18, 40, len(j))[owner2] * _HOUR + pos2 * 15.0
    owner = np.r_[owner, j[owner2]].astype(np.int64)
    tf = np.r_[tf, tf2]
    fail = np.where(
        getkey[owner],
        make_state(MethodGroup.VALIDATION, False, FAIL_EXPIRED),
        make_state(MethodGroup.ACTIVATION, False, FAIL_EXPIRED),
    )
    rows.add(tf, pid[owner], key[owner], ip[owner], fail, np.where(getkey[owner], 0, mc[owner]))


def _travel(
    rng: np.random.Generator, vendor: _Vendor, world: _World, pools: _IpPools, rows: _Rows,
    days: int,
) -> None:
    """Laptops taken abroad: after a gap of many hours a machine's requests come from another
    country for a few days, then from home again."""
    prod = world.key_product[world.seat_key]
    eligible = (vendor.product_model[prod] == _FLOAT) | ~vendor.product_getkey[prod]
    devs = np.unique(world.seat_dev[eligible])
    n_trips = int(min(rng.poisson(len(devs) * days / 365.0 * 1.5), 3 * days))
    if n_trips == 0 or len(devs) == 0:
        return
    t, _, _, _, _, mc, _, _, _, _, event = rows.columns()
    normal = np.flatnonzero((event < 0) & (mc > 0) & (mc <= len(world.dev_cust)))
    normal = normal[np.lexsort((t[normal], mc[normal]))]
    m_sorted = mc[normal]
    picked: list[np.ndarray] = []
    ips: list[np.ndarray] = []
    for d in rng.choice(devs, n_trips, replace=False if n_trips <= len(devs) else True):
        lo, hi = np.searchsorted(m_sorted, [d + 1, d + 2])
        idx = normal[lo:hi]
        if len(idx) < 2:
            continue
        times = t[idx]
        # Departures: the first request after a quiet spell of at least 8 hours (a flight).
        quiet = np.flatnonzero(np.diff(times) >= 8 * _HOUR) + 1
        if len(quiet) == 0:
            continue
        a = int(rng.choice(quiet))
        back = times[a] + rng.uniform(1, 8) * _DAY
        later = quiet[(quiet > a) & (times[quiet] >= back)]
        b = int(later[0]) if len(later) else len(idx)
        home = int(world.cust_country[world.dev_cust[d]])
        abroad = np.array([c for c in range(len(COUNTRY_CODES)) if c != home])
        p = vendor.country_weights[abroad] / vendor.country_weights[abroad].sum()
        country = rng.choice(abroad, p=p)
        ip = pools.sample(rng, np.array([country]), np.array([False]))
        picked.append(idx[a:b])
        ips.append(np.full(b - a, ip[0]))
    if picked:
        rows.set_ip(np.concatenate(picked), np.concatenate(ips))


def _lookalikes(
    rng: np.random.Generator, vendor: _Vendor, world: _World, pools: _IpPools, tables: _Tables,
    rows: _Rows, start: datetime, days: int, per_day: float,
) -> None:
    _build_farms(rng, vendor, world, tables, rows, start, days, per_day)
    _support_desk(rng, vendor, world, pools, rows, start, days, per_day)
    _trial_expiries(rng, vendor, pools, tables, rows, days, per_day)
    _travel(rng, vendor, world, pools, rows, days)


# ---------------------------------------------------------------------------------------------
# Anomalies


@dataclass(frozen=True)
class _Event:
    kind: str
    start: float
    end: float
    key: str
    ip: str
    n_rows: int
    description: str


class _Injector:
    """Builds labelled anomaly rows on top of a vendor's world."""

    def __init__(
        self,
        rng: np.random.Generator,
        vendor: _Vendor,
        world: _World,
        pools: _IpPools,
        tables: _Tables,
        rows: _Rows,
        window: float,
        size: float,
        scale: float = 1.0,
    ) -> None:
        self.rng, self.vendor, self.world = rng, vendor, world
        self.size = size  # shrinks events of vendors with little traffic
        self.scale = scale  # the caller's event_scale: rows and duration of every event
        self.pools, self.tables, self.rows, self.window = pools, tables, rows, window
        self.events: list[_Event] = []

    def _country_name(self, ip_idx: int) -> str:
        return country_code(self.tables.ip(ip_idx)) or "??"

    def _seat_at(self, t: float, prefer_float: bool = False) -> tuple[int, float]:
        """A seat active at t (moving t into a seat's life when none is); floating if wanted."""
        w, rng = self.world, self.rng
        model = self.vendor.product_model[w.key_product[w.seat_key]]
        active = (w.seat_start <= t) & (w.seat_end > t + 6 * _HOUR)
        pool = np.flatnonzero(active & (model == _FLOAT)) if prefer_float else np.array([], int)
        if len(pool) == 0 and prefer_float:
            pool = np.flatnonzero(model == _FLOAT)
        if len(pool) == 0:
            pool = np.flatnonzero(active)
        if len(pool) == 0:
            pool = np.arange(len(w.seat_key))
        s = int(rng.choice(pool))
        lo, hi = max(w.seat_start[s], 0.0), min(w.seat_end[s], self.window)
        if not lo <= t < hi:
            t = float(rng.uniform(lo, max(lo, hi - 6 * _HOUR)) if hi > lo else lo)
        return s, t

    def _add(
        self,
        kind: str,
        t: np.ndarray,
        product: np.ndarray | int,
        key: np.ndarray | int,
        ip: np.ndarray | int,
        state: np.ndarray | int,
        mc: np.ndarray | int,
        description: str,
        main_key: str,
        main_ip: str,
        **extra: np.ndarray | int,
    ) -> None:
        t = np.asarray(t, dtype=np.float64)
        keep = (t >= 0) & (t < self.window)
        if not keep.any():
            return

        def cut(v: np.ndarray | int) -> np.ndarray | int:
            return v[keep] if isinstance(v, np.ndarray) and v.ndim and len(v) == len(t) else v

        event = len(self.events)
        self.rows.add(
            t[keep],
            cut(product),
            cut(key),
            cut(ip),
            cut(state),
            cut(mc),
            **{k: cut(v) for k, v in extra.items()},
            event=event,
        )
        tk = t[keep]
        self.events.append(
            _Event(
                kind,
                float(tk.min()),
                float(tk.max()),
                main_key,
                main_ip,
                int(keep.sum()),
                description,
            )
        )

    def _scaled(self, n: int, least: int = 3) -> int:
        """A count of rows, machines or keys times the event scale (unchanged at scale 1)."""
        return n if self.scale == 1.0 else max(least, round(n * self.scale))

    def _intervals(self, n: int, mean: float) -> np.ndarray:
        """Arrival times of n requests of a machine with mean spacing `mean` (jittered)."""
        return np.cumsum(self.rng.gamma(4.0, mean / 4.0, n))

    def brute_force(self, t0: float) -> None:
        rng, v = self.rng, self.vendor
        n = self._scaled(int(np.clip(rng.lognormal(np.log(150), 0.8) * self.size, 20, 1500)))
        spacing = float(rng.uniform(0.5, 20.0))
        t = t0 + self._intervals(n, spacing)
        country = rng.integers(len(COUNTRY_CODES))
        ip = int(self.pools.sample(rng, np.array([country]), np.array([rng.random() < 0.1]))[0])
        prod = int(rng.choice(len(v.product_id), p=v.product_weight))
        reuse = rng.random() < 0.3
        keys = self.tables.add_keys(_license_keys(rng, n if not reuse else max(5, n // 4)))
        key = keys if not reuse else rng.choice(keys, n)
        validate = rng.random() < 0.35
        st = make_state(
            MethodGroup.VALIDATION if validate else MethodGroup.ACTIVATION,
            False,
            FAIL_KEY_NOT_FOUND,
        )
        state = np.full(n, st)
        mode = rng.random()
        if mode < 0.25 or validate:
            mc: np.ndarray | int = 0
        elif mode < 0.75:
            mc = int(self.tables.add_mcs(_machine_codes(rng, 1, v.mc_style))[0])
        else:
            mc = self.tables.add_mcs(_machine_codes(rng, n, v.mc_style))
        hit = ""
        if not validate and rng.random() < 0.15:  # the attacker finds a real key
            real = np.flatnonzero(self.world.key_product == prod)
            if len(real):
                j = rng.integers(n // 2, n)
                key = np.array(key, copy=True)
                key[j] = int(rng.choice(real))
                state[j] = make_state(MethodGroup.ACTIVATION, True, DETAIL_PLAIN)
                hit = " and activated one real key"
        desc = (
            f"{self._country_name(ip)} address tried {n} non-existent keys, about one every "
            f"{spacing:.1f} s{hit}"
        )
        self._add(
            "brute_force",
            t,
            int(v.product_id[prod]),
            key,
            ip,
            state,
            mc,
            desc,
            "",
            self.tables.ip(ip),
        )

    def key_sharing(self, t0: float) -> None:
        rng, v, w = self.rng, self.vendor, self.world
        s, t0 = self._seat_at(t0)
        k = int(w.seat_key[s])
        prod = int(w.key_product[k])
        model = v.product_model[prod]
        home = w.cust_country[w.key_cust[k]]
        n_mc = self._scaled(int(rng.integers(6, 12 + int(38 * self.size))))
        n_cc = int(rng.integers(4, 13))
        others = np.array([c for c in range(len(COUNTRY_CODES)) if c != home])
        countries = rng.choice(others, min(n_cc, len(others)), replace=False)
        mc_country = rng.choice(countries, n_mc)
        ips = self.pools.sample(rng, mc_country, rng.random(n_mc) < 0.1)
        mcs = self.tables.add_mcs(_machine_codes(rng, n_mc, v.mc_style))
        span = float(rng.uniform(2, 72)) * _HOUR * self.scale
        first = t0 + np.sort(rng.random(n_mc)) * span * 0.7
        first[0] = t0
        free = int(rng.integers(0, 4)) if model != _FLOAT else int(w.key_limit[k])
        ok = np.arange(n_mc) < free
        per = np.where(ok, 1 + rng.poisson(5, n_mc), 1 + rng.poisson(1.5, n_mc))
        owner, pos = _ranges(per)
        gap = np.where(
            ok[owner], rng.uniform(5, 90, len(owner)) * 60, rng.uniform(1, 20, len(owner)) * 60
        )
        t = first[owner] + pos * gap
        if model == _FLOAT:
            success = np.where(
                pos == 0,
                make_state(MethodGroup.ACTIVATION, True, DETAIL_FLOATING),
                make_state(MethodGroup.VALIDATION, True, DETAIL_HEARTBEAT),
            )
        elif v.product_getkey[prod]:
            success = np.where(
                pos == 0,
                make_state(MethodGroup.ACTIVATION, True, DETAIL_PLAIN),
                make_state(MethodGroup.VALIDATION, True, DETAIL_PLAIN),
            )
        else:
            success = np.where(
                pos == 0,
                make_state(MethodGroup.ACTIVATION, True, DETAIL_PLAIN),
                make_state(MethodGroup.ACTIVATION, True, DETAIL_KNOWN_MACHINE),
            )
        state = np.where(
            ok[owner], success, make_state(MethodGroup.ACTIVATION, False, FAIL_TOO_MANY_MACHINES)
        )
        fexp = np.where(ok[owner] & (model == _FLOAT), t + v.product_window[prod], np.nan)
        mc = np.where(
            (state // 100 == MethodGroup.VALIDATION) & v.product_getkey[prod] & (model != _FLOAT),
            0,
            mcs[owner],
        )
        desc = (
            f"key used from {n_mc} new machines in {len(countries)} countries "
            f"({free} got in) over {span / _HOUR:.0f} h"
        )
        self._add(
            "key_sharing",
            t,
            int(v.product_id[prod]),
            k,
            ips[owner],
            state,
            mc,
            desc,
            self.tables.key(k),
            self.tables.ip(int(ips[0])),
            fexp=fexp,
        )

    def floating_overuse(self, t0: float) -> None:
        rng, v, w = self.rng, self.vendor, self.world
        s, t0 = self._seat_at(t0, prefer_float=True)
        k = int(w.seat_key[s])
        prod = int(w.key_product[k])
        floating = v.product_model[prod] == _FLOAT
        limit = int(w.key_limit[k])
        extra = int(rng.integers(2, 9))
        n_mc = limit + extra
        seats = np.flatnonzero(w.seat_key == k)
        own = w.seat_dev[seats][:n_mc] + 1
        new = self.tables.add_mcs(_machine_codes(rng, max(0, n_mc - len(own)), v.mc_style))
        mcs = np.r_[own, new].astype(np.int64)
        fns = np.r_[w.dev_fn[w.seat_dev[seats][:n_mc]], np.zeros(len(new), np.int64)]
        site = w.dev_site[w.seat_dev[s]]
        ips = _site_ip(w, np.full(n_mc, site), np.full(n_mc, t0))
        dur = float(rng.uniform(0.5, 3.0)) * _HOUR * max(self.size, 0.3) * self.scale
        starts = t0 + np.sort(rng.random(n_mc)) * min(dur * 0.3, 1800.0)
        ok = np.arange(n_mc) < limit
        hb = float(v.product_heartbeat[prod]) if floating else float(rng.uniform(120, 600))
        retry = np.where(ok, hb, rng.uniform(45, 300, n_mc))
        per = np.maximum(1, ((t0 + dur - starts) / retry).astype(np.int64))
        per = np.minimum(per, max(1, int(600 * self.scale)))
        owner, pos = _ranges(per)
        t = starts[owner] + pos * retry[owner] + rng.normal(0, 1.0, len(owner))
        if floating:
            success = np.where(
                pos == 0,
                make_state(MethodGroup.ACTIVATION, True, DETAIL_FLOATING),
                make_state(MethodGroup.VALIDATION, True, DETAIL_HEARTBEAT),
            )
            fail = np.where(
                pos == 0,
                make_state(MethodGroup.ACTIVATION, False, FAIL_TOO_MANY_MACHINES),
                make_state(MethodGroup.VALIDATION, False, FAIL_TOO_MANY_MACHINES),
            )
            fexp = np.where(ok[owner], t + v.product_window[prod], np.nan)
        else:
            success = np.where(
                pos == 0,
                make_state(MethodGroup.ACTIVATION, True, DETAIL_PLAIN),
                make_state(MethodGroup.ACTIVATION, True, DETAIL_KNOWN_MACHINE),
            )
            fail = np.full(
                len(owner), make_state(MethodGroup.ACTIVATION, False, FAIL_TOO_MANY_MACHINES)
            )
            fexp = np.full(len(owner), np.nan)
        state = np.where(ok[owner], success, fail)
        desc = (
            f"{n_mc} machines on a key limited to {limit}"
            f"{' floating' if floating else ''} seats for {dur / _HOUR:.1f} h"
        )
        self._add(
            "floating_overuse",
            t,
            int(v.product_id[prod]),
            k,
            ips[owner],
            state,
            mcs[owner],
            desc,
            self.tables.key(k),
            self.tables.ip(int(ips[0])),
            fexp=fexp,
            fn=fns[owner],
        )

    def _failing_request(self, model: int) -> tuple[int, int]:
        """The method group and failure detail a stuck client of this licensing model repeats."""
        options = {
            _NODE: [
                (MethodGroup.ACTIVATION, FAIL_EXPIRED),
                (MethodGroup.ACTIVATION, FAIL_BLOCKED),
                (MethodGroup.ACTIVATION, FAIL_TOO_MANY_MACHINES),
                (MethodGroup.VALIDATION, FAIL_ACCESS_DENIED),
            ],
            _USAGE: [
                (MethodGroup.DATA_OBJECT, FAIL_USAGE_LIMIT),
                (MethodGroup.DATA_OBJECT, FAIL_ACCESS_DENIED),
                (MethodGroup.ACTIVATION, FAIL_EXPIRED),
            ],
            _FLOAT: [
                (MethodGroup.ACTIVATION, FAIL_TOO_MANY_MACHINES),
                (MethodGroup.VALIDATION, FAIL_EXPIRED),
                (MethodGroup.ACTIVATION, FAIL_BLOCKED),
            ],
        }[model]
        group, detail = options[int(self.rng.integers(len(options)))]
        return int(group), int(detail)

    def failure_loop(self, t0: float) -> None:
        rng, v, w = self.rng, self.vendor, self.world
        s, t0 = self._seat_at(t0)
        k = int(w.seat_key[s])
        prod = int(w.key_product[k])
        model = v.product_model[prod]
        dev = int(w.seat_dev[s])
        ip = int(_site_ip(w, np.array([w.dev_site[dev]]), np.array([t0]))[0])
        group, detail = self._failing_request(int(model))
        spacing = float(np.exp(rng.uniform(np.log(1.0), np.log(30.0))))
        dur = float(np.exp(rng.uniform(np.log(5 * 60), np.log(3 * _HOUR)))) * self.size
        dur *= self.scale
        n = max(3, int(np.clip(dur / spacing, 20 * self.scale, 1500 * self.scale)))
        t = t0 + self._intervals(n, spacing)
        state = make_state(group, False, detail)
        extra: dict[str, np.ndarray | int] = {}
        if group == MethodGroup.DATA_OBJECT:
            extra = {"dov": 1, "doid": int(max(w.key_do[k, 0], 0))}
        mc = 0 if group == MethodGroup.VALIDATION and model != _FLOAT else dev + 1
        desc = (
            f"client retried a failing request (state {state}) {n} times, about every "
            f"{spacing:.1f} s"
        )
        self._add(
            "failure_loop",
            t,
            int(v.product_id[prod]),
            k,
            ip,
            state,
            mc,
            desc,
            self.tables.key(k),
            self.tables.ip(ip),
            fn=int(w.dev_fn[dev]),
            **extra,
        )

    def runaway_client(self, t0: float) -> None:
        rng, v, w = self.rng, self.vendor, self.world
        s, t0 = self._seat_at(t0)
        k = int(w.seat_key[s])
        prod = int(w.key_product[k])
        model = v.product_model[prod]
        dev = int(w.seat_dev[s])
        ip = int(_site_ip(w, np.array([w.dev_site[dev]]), np.array([t0]))[0])
        spacing = float(np.exp(rng.uniform(np.log(0.4), np.log(6.0))))
        dur = float(np.exp(rng.uniform(np.log(5 * 60), np.log(60 * 60)))) * self.size
        dur *= self.scale
        n = max(3, int(np.clip(dur / spacing, 30 * self.scale, 2000 * self.scale)))
        t = t0 + self._intervals(n, spacing)
        extra: dict[str, np.ndarray | int] = {}
        mc: int = dev + 1
        if model == _FLOAT:
            state = make_state(MethodGroup.VALIDATION, True, DETAIL_HEARTBEAT)
            extra["fexp"] = t + v.product_window[prod]
        elif model == _USAGE and rng.random() < 0.5:
            state = make_state(MethodGroup.DATA_OBJECT, True, DETAIL_PLAIN)
            detail = DETAIL_DO_DECREMENT if v.product_decrement[prod] else DETAIL_PLAIN
            state = make_state(MethodGroup.DATA_OBJECT, True, detail)
            extra.update(dov=1, doid=int(max(w.key_do[k, 0], 0)))
        elif v.product_getkey[prod]:
            state, mc = make_state(MethodGroup.VALIDATION, True, DETAIL_PLAIN), 0
        else:
            state = make_state(MethodGroup.ACTIVATION, True, DETAIL_KNOWN_MACHINE)
        desc = (
            f"one machine sent {n} successful requests (state {state}), about every {spacing:.1f} s"
        )
        self._add(
            "runaway_client",
            t,
            int(v.product_id[prod]),
            k,
            ip,
            state,
            mc,
            desc,
            self.tables.key(k),
            self.tables.ip(ip),
            **extra,
        )


    # -- kinds added after the signals and defaults were frozen (LATE_KINDS) -----------------

    def _use_states(self, prod: int, pos: np.ndarray, new_machine: bool) -> np.ndarray:
        """States of a machine's requests on a key of product ``prod`` (0 = its first)."""
        v = self.vendor
        first = pos == 0
        if v.product_model[prod] == _FLOAT:
            return np.where(
                first,
                make_state(MethodGroup.ACTIVATION, True, DETAIL_FLOATING),
                make_state(MethodGroup.VALIDATION, True, DETAIL_HEARTBEAT),
            )
        act = make_state(
            MethodGroup.ACTIVATION, True, DETAIL_PLAIN if new_machine else DETAIL_KNOWN_MACHINE
        )
        if v.product_getkey[prod]:
            return np.where(first, act, make_state(MethodGroup.VALIDATION, True, DETAIL_PLAIN))
        return np.where(first, act, make_state(MethodGroup.ACTIVATION, True, DETAIL_KNOWN_MACHINE))

    def _customer_requests(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Time, key, IP and machine of the customers' successful normal requests, by time."""
        if not hasattr(self, "_requests"):
            t, _, key, ip, state, mc, _, _, _, _, event = self.rows.columns()
            ok = (
                (event < 0)
                & (key < self.world.n_keys)
                & ((state // 10) % 10 == 1)
                & ~np.isin(state, (3010, 7010, 7011, 8012))  # the vendor's backend
                & (t >= 0)
                & (t < self.window)
            )
            idx = np.flatnonzero(ok)
            idx = idx[np.argsort(t[idx], kind="stable")]
            self._requests = (t[idx], key[idx], ip[idx], mc[idx])
        return self._requests

    def country_jump(self, t0: float) -> None:
        rng, v, w = self.rng, self.vendor, self.world
        t_req, key_req, ip_req, mc_req = self._customer_requests()
        if len(t_req) == 0:
            return
        i = min(int(np.searchsorted(t_req, t0)), len(t_req) - 1)
        th, k, home_ip = float(t_req[i]), int(key_req[i]), int(ip_req[i])
        prod = int(w.key_product[k])
        home = int(w.cust_country[w.key_cust[k]])
        far = np.array([c for c in range(len(COUNTRY_CODES)) if _region(c) != _region(home)])
        p = v.country_weights[far] / v.country_weights[far].sum()
        country = int(rng.choice(far, p=p))
        ip = int(self.pools.sample(rng, np.array([country]), np.array([rng.random() < 0.1]))[0])
        n = self._scaled(int(rng.integers(3, 11)), least=2)
        gap = float(rng.uniform(5, 50)) * 60
        t = th + gap + np.r_[0.0, np.cumsum(rng.uniform(30, 300, n - 1))]
        same_machine = bool(rng.random() < 0.3) and int(mc_req[i]) > 0
        if same_machine:
            mc = int(mc_req[i])
        else:
            mc = int(self.tables.add_mcs(_machine_codes(rng, 1, v.mc_style))[0])
        state = self._use_states(prod, np.arange(n), new_machine=not same_machine)
        mcs = np.where(state == make_state(MethodGroup.VALIDATION, True, DETAIL_PLAIN), 0, mc)
        floating = v.product_model[prod] == _FLOAT
        fexp = t + v.product_window[prod] if floating else np.full(n, np.nan)
        desc = (
            f"key used from {self._country_name(ip)} {gap / 60:.0f} min after a request from "
            f"{self._country_name(home_ip)} ({'same' if same_machine else 'a new'} machine), "
            f"{n} requests"
        )
        self._add(
            "country_jump",
            t,
            int(v.product_id[prod]),
            k,
            ip,
            state,
            mcs,
            desc,
            self.tables.key(k),
            self.tables.ip(ip),
            fexp=fexp,
        )

    def machine_cloning(self, t0: float) -> None:
        rng, v, w = self.rng, self.vendor, self.world
        s, t0 = self._seat_at(t0)
        dev = int(w.seat_dev[s])
        own = int(w.seat_key[s])
        cust = w.key_cust
        live = np.flatnonzero(
            (w.cust_join[cust] <= t0) & (w.cust_churn[cust] > t0) & (np.arange(w.n_keys) != own)
        )
        if len(live) == 0:
            live = np.flatnonzero(np.arange(w.n_keys) != own)
        if len(live) == 0:
            return
        n_keys = min(self._scaled(int(rng.integers(5, 41)), least=2), len(live))
        keys = rng.choice(live, n_keys, replace=False)
        span = float(rng.uniform(2, 12)) * _HOUR * self.scale
        first = t0 + np.sort(rng.random(n_keys)) * span
        per = 1 + np.minimum(rng.poisson(1.0, n_keys), 3)
        owner, pos = _ranges(per)
        t = first[owner] + pos * rng.uniform(2, 40, len(owner)) * 60
        one_address = bool(rng.random() < 0.5)
        if one_address:
            home = np.array([w.cust_country[w.dev_cust[dev]]])
            ips = np.repeat(self.pools.sample(rng, home, np.array([False])), n_keys)
        else:  # a cloned image running at many places
            ips = self.pools.sample(rng, w.cust_country[cust[keys]], rng.random(n_keys) < 0.1)
        prods = w.key_product[keys]
        state = np.concatenate(
            [self._use_states(int(prods[j]), np.arange(per[j]), True) for j in range(n_keys)]
        )
        floating = v.product_model[prods[owner]] == _FLOAT
        fexp = np.where(floating, t + v.product_window[prods[owner]], np.nan)
        mc = np.where(state == make_state(MethodGroup.VALIDATION, True, DETAIL_PLAIN), 0, dev + 1)
        desc = (
            f"one machine code under {n_keys} keys from "
            f"{'one address' if one_address else f'{len(set(ips.tolist()))} addresses'} "
            f"over {span / _HOUR:.1f} h"
        )
        self._add(
            "machine_cloning",
            t,
            v.product_id[prods[owner]],
            keys[owner],
            ips[owner],
            state,
            mc,
            desc,
            self.tables.key(int(keys[0])),
            self.tables.ip(int(ips[0])),
            fexp=fexp,
            fn=int(w.dev_fn[dev]),
        )

    def credential_stuffing(self, t0: float) -> None:
        rng, v = self.rng, self.vendor
        n_addr = self._scaled(int(rng.integers(50, 301)), least=5)
        span = float(rng.uniform(6, 24)) * _HOUR * self.scale
        country = rng.integers(0, len(COUNTRY_CODES), n_addr)
        ips = self.pools.sample(rng, country, rng.random(n_addr) < 0.1)
        per = 1 + np.minimum(rng.poisson(1.5, n_addr), 5)  # a few attempts an address
        owner, _ = _ranges(per)
        begin = t0 + rng.random(n_addr) * span
        stay = rng.uniform(0.3, 2.0, n_addr) * _HOUR
        t = begin[owner] + rng.random(len(owner)) * stay[owner]
        n = len(t)
        prod = int(rng.choice(len(v.product_id), p=v.product_weight))
        keys = self.tables.add_keys(_license_keys(rng, n))
        validate = bool(rng.random() < 0.5)
        group = MethodGroup.VALIDATION if validate else MethodGroup.ACTIVATION
        if validate:
            mc: np.ndarray | int = 0
        else:
            mc = self.tables.add_mcs(_machine_codes(rng, n_addr, v.mc_style))[owner]
        desc = (
            f"{n} guessed keys from {n_addr} addresses in {len(set(country.tolist()))} "
            f"countries over {span / _HOUR:.1f} h, at most {int(per.max())} an address"
        )
        self._add(
            "credential_stuffing",
            t,
            int(v.product_id[prod]),
            keys,
            ips[owner],
            make_state(group, False, FAIL_KEY_NOT_FOUND),
            mc,
            desc,
            "",
            self.tables.ip(int(ips[0])),
        )

    # -- storms: failure loops lasting days, runaway machines lasting hours --------------------

    def storm(self, t0: float) -> None:
        rng, v, w = self.rng, self.vendor, self.world
        s, t0 = self._seat_at(t0)
        k = int(w.seat_key[s])
        prod = int(w.key_product[k])
        model = int(v.product_model[prod])
        dev = int(w.seat_dev[s])
        ip = int(_site_ip(w, np.array([w.dev_site[dev]]), np.array([t0]))[0])
        extra: dict[str, np.ndarray | int] = {}
        slower = 1.0 / self.size  # a quiet vendor's storm is slower too, else it drowns the log
        if rng.random() < 0.7:
            kind = "failure_loop"
            group, detail = self._failing_request(model)
            spacing = float(np.exp(rng.uniform(np.log(60.0), np.log(900.0)))) * slower
            dur = float(rng.uniform(1.0, 5.0)) * _DAY * self.scale
            state = make_state(group, False, detail)
            if group == MethodGroup.DATA_OBJECT:
                extra = {"dov": 1, "doid": int(max(w.key_do[k, 0], 0))}
            mc = 0 if group == MethodGroup.VALIDATION and model != _FLOAT else dev + 1
            what = f"retried a failing request (state {state})"
        else:
            kind = "runaway_client"
            spacing = float(np.exp(rng.uniform(np.log(5.0), np.log(60.0)))) * slower
            dur = float(rng.uniform(6.0, 48.0)) * _HOUR * self.scale
            state = int(self._use_states(prod, np.array([1]), new_machine=False)[0])
            mc = 0 if state == make_state(MethodGroup.VALIDATION, True, DETAIL_PLAIN) else dev + 1
            what = f"sent successful requests (state {state})"
        n = max(3, int(dur / spacing))
        t = t0 + self._intervals(n, spacing)
        if model == _FLOAT and kind == "runaway_client":
            extra["fexp"] = t + v.product_window[prod]
        desc = (
            f"storm: one machine {what} {n} times, about every {spacing:.0f} s "
            f"for {dur / _HOUR:.0f} h"
        )
        self._add(
            kind,
            t,
            int(v.product_id[prod]),
            k,
            ip,
            state,
            mc,
            desc,
            self.tables.key(k),
            self.tables.ip(ip),
            fn=int(w.dev_fn[dev]),
            **extra,
        )


# ---------------------------------------------------------------------------------------------
# Public entry point


def simulate(
    profile: str,
    seed: int,
    days: int,
    *,
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
    customers: int | None = None,
    anomaly_rate: float = 1.0,
    event_scale: float = 1.0,
    growth_per_month: float = 0.0,
    lookalikes: bool = False,
    kinds: tuple[str, ...] = ANOMALY_KINDS,
    storms: int = 0,
) -> SimulatedLog:
    """Simulate ``days`` days of one vendor's Web API Log with labelled anomalies.

    ``profile`` is one of :data:`PROFILES`; the log covers ``[start, start + days)``.
    ``customers`` sets the size of the vendor; left out, it is tuned so that a year holds a
    typical volume for the profile (node-locked about 0.1 million rows, usage-based about 0.5
    million, floating and mixed a few million). ``anomaly_rate`` multiplies the number of
    anomalous events (about two per kind per month for a busy vendor, fewer and smaller for a
    quiet one; every kind at least once when ``days >= 7`` and the rate is positive). Normal
    traffic does not depend on ``anomaly_rate``. The same arguments always give the same frames.

    The world can be varied (each knob draws from its own random stream, so the defaults give
    the same frames as before the knobs existed):

    * ``event_scale`` multiplies every event's size (rows, machines, keys or addresses, and its
      duration); normal traffic does not change.
    * ``growth_per_month``: normal traffic grows by this fraction every 30 days, compounding,
      half of it from new customers joining and half from more sessions of everyone; the rows
      of the ungrown vendor stay, the growth is added to them. Anomalies do not change.
    * ``lookalikes``: unlabelled normal traffic that resembles anomalies: build farms activating
      one key daily from fresh machine codes, support staff looking up many keys from one
      office address within an hour, laptops travelling abroad (a machine's requests come from
      another country after a gap of many hours, for a few days), and trial keys that fail a
      few times when they expire, then stop.
    * ``kinds``: which anomaly kinds to inject, any of :data:`ANOMALY_KINDS` and
      :data:`LATE_KINDS` (the late kinds only when named here).
    * ``storms``: that many extra long events, labelled as their kinds: a client retrying a
      failing request every few minutes for days (``failure_loop``), or a runaway machine
      sending requests for hours to two days (``runaway_client``).
    """
    return _assemble(
        *_build(
            profile,
            seed,
            days,
            start=start,
            customers=customers,
            anomaly_rate=anomaly_rate,
            event_scale=event_scale,
            growth_per_month=growth_per_month,
            lookalikes=lookalikes,
            kinds=kinds,
            storms=storms,
        )[:7]
    )


def _check_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(kinds, str):
        raise ValueError(f"kinds must be a tuple of kind names, not the string {kinds!r}")
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in ANOMALY_KINDS + LATE_KINDS]
    if unknown:
        raise ValueError(
            f"unknown anomaly kind(s) {unknown}; expected any of {ANOMALY_KINDS + LATE_KINDS}"
        )
    return kinds


def _build(
    profile: str,
    seed: int,
    days: int,
    *,
    start: datetime,
    customers: int | None,
    anomaly_rate: float,
    event_scale: float,
    growth_per_month: float,
    lookalikes: bool,
    kinds: tuple[str, ...],
    storms: int,
) -> tuple[
    _Rows, _Tables, _Vendor, list[_Event], datetime, float, np.random.Generator, int
]:
    """Rows, tables and events of a simulated log before assembly (see :func:`simulate`); the
    last item is the number of events before the storms."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    if days < 1:
        raise ValueError("days must be at least 1")
    if customers is not None and customers < 1:
        raise ValueError("customers must be at least 1")
    if anomaly_rate < 0:
        raise ValueError("anomaly_rate must be non-negative")
    if not (np.isfinite(event_scale) and event_scale > 0):
        raise ValueError(f"event_scale must be a positive number, got {event_scale}")
    if not (np.isfinite(growth_per_month) and 0 <= growth_per_month <= 10):
        raise ValueError(f"growth_per_month must be in [0, 10], got {growth_per_month}")
    if storms < 0:
        raise ValueError(f"storms must be non-negative, got {storms}")
    kinds = _check_kinds(kinds)
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    n_customers = customers if customers is not None else _DEFAULT_CUSTOMERS[profile]
    window = days * _DAY
    seq = np.random.SeedSequence([int(seed) % 2**64, PROFILES.index(profile), 7_919])
    world_seed, *streams = seq.spawn(5)
    r_vendor, r_traffic, r_anom, r_ids = (np.random.default_rng(s) for s in streams)
    # Streams of the knobs, spawned after the original ones so that those stay as they were.
    r_growth, r_look, r_late, r_storm = (np.random.default_rng(s) for s in seq.spawn(4))

    pools = _ip_pools()
    vendor = _draw_vendor(r_vendor, profile)

    def draw(n: int) -> tuple[_World, _Tables, np.random.Generator]:
        tables, r_world = _Tables(pools), np.random.default_rng(world_seed)
        return _draw_world(r_world, vendor, n, window, pools, tables), tables, r_world

    world, tables, r_world = draw(n_customers)
    nudge = 1.0
    if customers is None:
        # Vendor habits (heartbeat interval, usage rates) move the volume a lot: size the
        # customer base so that a default vendor writes a typical number of rows a year. Each
        # redraw is another sample of customers, so try a few and nudge the last one's activity.
        lo, hi = _YEARLY_ROWS[profile]
        target = float(np.exp(r_vendor.uniform(np.log(lo), np.log(hi))))
        base = n_customers
        for _ in range(4):
            ratio = target / max(_expected_rows(vendor, world, start, days) * 365.0 / days, 1.0)
            if 0.8 < ratio < 1.25:
                break
            n_customers = int(np.clip(round(n_customers * ratio), base // 5, base * 5))
            world, tables, r_world = draw(n_customers)
        ratio = target / max(_expected_rows(vendor, world, start, days) * 365.0 / days, 1.0)
        nudge = float(np.clip(ratio, 0.6, 1.6))
        world = dataclasses.replace(world, seat_rate=world.seat_rate * nudge)
    tables.add_mcs(_machine_codes(r_world, len(world.dev_cust), vendor.mc_style))
    grown = _grow_world(r_growth, vendor, world, pools, tables, window, growth_per_month, nudge)
    home = np.array([vendor.home_country])
    vendor_ip = int(pools.sample(r_vendor, home, np.array([False]))[0])  # the vendor's backend

    rows = _Rows()
    sessions = _draw_sessions(r_traffic, vendor, world, start, days, pools, tables)
    _normal_rows(r_traffic, vendor, world, sessions, rows, window, tables, vendor_ip)
    _transient_failures(r_traffic, vendor, rows)

    # Vendors with little traffic see fewer and smaller events, so anomalies stay a minority.
    per_day = len(rows) / days
    frequency = float(np.clip(per_day / 4_000, 0.3, 1.0))
    size = float(np.clip(per_day / 10_000, 0.15, 1.0))

    if grown is not None:
        _growth_rows(
            r_growth, vendor, world, grown, sessions, rows, start, days, pools, tables,
            vendor_ip, growth_per_month,
        )
    if lookalikes:
        _lookalikes(
            r_look, vendor, grown if grown is not None else world, pools, tables, rows, start,
            days, per_day,
        )

    injector = _Injector(r_anom, vendor, world, pools, tables, rows, window, size, event_scale)

    def inject_all(kind: str, rng: np.random.Generator) -> None:
        injector.rng = rng
        n = int(rng.poisson(days * anomaly_rate * frequency * 2.0 / 30.0))
        if days >= 7 and anomaly_rate > 0:
            n = max(n, 1)
        inject = getattr(injector, kind)
        for t0 in np.sort(rng.uniform(0.02, 0.97, n) * window):
            before = len(injector.events)
            inject(float(t0))
            for _ in range(10):  # an event that fell outside the window is tried elsewhere
                if len(injector.events) > before:
                    break
                inject(float(rng.uniform(0.0, 0.9) * window))

    for kind in ANOMALY_KINDS:
        if kind in kinds:
            inject_all(kind, r_anom)
    for kind in LATE_KINDS:
        if kind in kinds:
            inject_all(kind, r_late)
    before_storms = len(injector.events)
    injector.rng = r_storm
    for t0 in np.sort(r_storm.uniform(0.0, 0.95, storms) * window):
        before = len(injector.events)
        injector.storm(float(t0))
        for _ in range(10):
            if len(injector.events) > before:
                break
            injector.storm(float(r_storm.uniform(0.0, 0.9) * window))

    return rows, tables, vendor, injector.events, start, window, r_ids, before_storms


def _grow_world(
    rng: np.random.Generator,
    vendor: _Vendor,
    world: _World,
    pools: _IpPools,
    tables: _Tables,
    window: float,
    growth: float,
    nudge: float,
) -> _World | None:
    """The world with the customers that join because the vendor grows (None without growth).

    Half of the growth (on a log scale) comes from new customers: by time t the vendor has
    ``(1 + growth) ** (t / 60 days)`` times the customers it had at the start.
    """
    if growth <= 0:
        return None
    n0 = int(((world.cust_join < 0) & (world.cust_churn > 0)).sum())
    per_60 = np.log1p(growth)
    total = np.expm1(per_60 * window / (60 * _DAY))
    n_new = int(rng.poisson(n0 * total))
    if n_new == 0:
        return world
    join = np.sort(60 * _DAY * np.log1p(rng.random(n_new) * total) / per_60)
    new = _draw_world(rng, vendor, n_new, window, pools, tables, join_at=join)
    new = dataclasses.replace(new, seat_rate=new.seat_rate * nudge)
    tables.add_mcs(_machine_codes(rng, len(new.dev_cust), vendor.mc_style))
    return _merge_worlds(world, new)


def _growth_rows(
    rng: np.random.Generator,
    vendor: _Vendor,
    world: _World,
    grown: _World,
    base: _Sessions,
    rows: _Rows,
    start: datetime,
    days: int,
    pools: _IpPools,
    tables: _Tables,
    vendor_ip: int,
    growth: float,
) -> None:
    """Rows of a growing vendor on top of the ungrown one: the new customers' traffic, and the
    sessions that existing seats add as they get busier (``sqrt(1 + growth)`` a month)."""
    window = days * _DAY
    mid = (np.arange(days) + 0.5) * _DAY
    activity = np.exp(0.5 * np.log1p(growth) * mid / (30 * _DAY))
    n_old = len(world.seat_key)
    old = np.arange(len(grown.seat_key)) < n_old
    ses = _draw_sessions(rng, vendor, grown, start, days, pools, tables, activity, old)
    # An existing seat's extra session must not overlap one of its ordinary sessions.
    big = 2.0**36
    base_key = base.seat * big + base.t
    key = ses.seat * big + ses.t
    before = np.searchsorted(base_key, key, side="right") - 1
    after = before + 1
    clash = np.zeros(len(ses.t), dtype=bool)
    ok = before >= 0
    b = before[ok]
    clash[ok] |= (base.seat[b] == ses.seat[ok]) & (base.t[b] + base.dur[b] > ses.t[ok] - 60.0)
    ok = after < len(base.t)
    a = after[ok]
    clash[ok] |= (base.seat[a] == ses.seat[ok]) & (base.t[a] < ses.t[ok] + ses.dur[ok] + 60.0)
    keep = ~(clash & old[ses.seat])
    ses = _Sessions(
        seat=ses.seat[keep],
        t=ses.t[keep],
        dur=ses.dur[keep],
        ip=ses.ip[keep],
        first=ses.first[keep] & ~old[ses.seat[keep]],
    )
    extra = _Rows()
    n_cust = len(world.cust_country)
    _normal_rows(rng, vendor, grown, ses, extra, window, tables, vendor_ip, n_cust)
    _transient_failures(rng, vendor, extra)
    rows.parts.extend(extra.parts)


# ---------------------------------------------------------------------------------------------
# The share of anomalous chunks


def anomalous_share(sim: SimulatedLog, size: int = 100) -> float:
    """Share of the log's windows of ``size`` consecutive rows (non-overlapping, in the log's
    order, the last incomplete window left out) that hold at least one labelled row."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    n_windows = sim.log.height // size
    if n_windows == 0:
        return 0.0
    labelled = sim.log["Id"].is_in(sim.labels["Id"].implode()).to_numpy()
    pos = np.flatnonzero(labelled[: n_windows * size])
    return float(len(np.unique(pos // size)) / n_windows)


class _ShareSearch:
    """The share of anomalous windows of one built log for any subset of its events."""

    def __init__(self, built: tuple, size: int) -> None:
        rows, window = built[0], built[5]
        t, *_, event = rows.columns()
        keep = np.flatnonzero((t >= 0) & (t < window))
        order = keep[np.argsort(t[keep], kind="stable")]
        self.event = event[order]
        self.n_events = len(built[3])
        self.size = size

    def share(self, chosen: np.ndarray) -> float:
        ev = self.event
        labelled = ev >= 0
        kept = ~labelled | chosen[np.maximum(ev, 0)]
        n_windows = int(kept.sum()) // self.size
        if n_windows == 0:
            return 0.0
        pos = np.cumsum(kept) - 1
        w = pos[kept & labelled] // self.size
        flag = np.zeros(n_windows + 1, dtype=bool)
        flag[w] = True
        return float(flag[:n_windows].mean())


def _thin(built: tuple, chosen: np.ndarray) -> SimulatedLog:
    """Assemble a built log keeping only the chosen events (renumbered in their order)."""
    rows, tables, vendor, events, start, window, r_ids = built[:7]
    cols = rows.columns()
    event = cols[-1]
    kept = (event < 0) | chosen[np.maximum(event, 0)]
    new_id = np.cumsum(chosen) - 1
    cols = [c[kept] for c in cols]
    cols[-1] = np.where(cols[-1] >= 0, new_id[np.maximum(cols[-1], 0)], -1)
    thinned = _Rows()
    thinned.parts.append(tuple(cols))
    return _assemble(
        thinned, tables, vendor, [e for e, c in zip(events, chosen, strict=True) if c], start,
        window, r_ids,
    )


_MAX_RATE = 10.0  # the most events simulate_share asks for before it adds storms


def simulate_share(
    profile: str,
    seed: int,
    days: int,
    share: float,
    *,
    size: int = 100,
    tolerance: float = 0.02,
    **knobs: object,
) -> SimulatedLog:
    """A simulated log whose share of anomalous windows of ``size`` rows is ``share``.

    The normal traffic is that of ``simulate(profile, seed, days, **knobs)``. Events are
    drawn at a raised ``anomaly_rate`` (at most ten times the default) and, when that does not
    fill enough windows, with storms (failure loops lasting days, runaway machines lasting
    hours; see :func:`simulate`); then a deterministic subset of them is kept: the kinds (and
    the storms) take turns, in a shuffled order within each, as many events as bring the share
    closest to ``share`` (thinning a random set of events, as a lower rate would). Raises
    ValueError when the share reached is further than ``tolerance`` from ``share``.
    """
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    if tolerance <= 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    owned = sorted({"anomaly_rate", "storms"} & set(knobs))
    if owned:
        raise ValueError(f"simulate_share sets {owned} itself; leave them out")
    allowed = {"start", "customers", "event_scale", "growth_per_month", "lookalikes", "kinds"}
    unknown = sorted(set(knobs) - allowed)
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown} for simulate_share")
    if share == 0:
        return simulate(profile, seed, days, anomaly_rate=0.0, **knobs)  # type: ignore[arg-type]

    def build(rate: float, n_storms: int) -> tuple:
        return _build(
            profile,
            seed,
            days,
            start=knobs.get("start", datetime(2025, 1, 1, tzinfo=UTC)),  # type: ignore[arg-type]
            customers=knobs.get("customers"),  # type: ignore[arg-type]
            anomaly_rate=rate,
            event_scale=float(knobs.get("event_scale", 1.0)),  # type: ignore[arg-type]
            growth_per_month=float(knobs.get("growth_per_month", 0.0)),  # type: ignore[arg-type]
            lookalikes=bool(knobs.get("lookalikes", False)),
            kinds=knobs.get("kinds", ANOMALY_KINDS),  # type: ignore[arg-type]
            storms=n_storms,
        )


    def regular_share(built: tuple) -> float:
        search = _ShareSearch(built, size)
        chosen = np.zeros(search.n_events, dtype=bool)
        chosen[: built[7]] = True
        return search.share(chosen)

    aim = min(tolerance / 2, max(0.1 * share, 0.003))  # how close the search tries to get
    rate, n_storms = 1.0, 0
    built = build(rate, 0)
    reached = regular_share(built)
    for _ in range(5):
        if reached >= share + aim or rate >= _MAX_RATE:
            break
        # Windows touched grow like 1 - exp(-c * rate): aim a little above the target.
        c = (-np.log1p(-min(reached, 0.99)) if reached > 0 else 0.01) / rate
        want = -np.log1p(-min(share + tolerance, 0.99)) / c * 1.25
        rate = float(np.clip(want, rate * 1.3, _MAX_RATE))
        built = build(rate, 0)
        reached = regular_share(built)
    if reached < share - aim:
        # Storms make up the rest; each covers about (its days / days) of the windows.
        missing = -np.log((1 - min(share + aim, 0.99)) / (1 - reached))
        n_storms = max(1, int(np.ceil(missing * days / 2.0)))
        for _ in range(3):
            built = build(rate, n_storms)
            search = _ShareSearch(built, size)
            everything = search.share(np.ones(search.n_events, dtype=bool))
            if everything >= share + aim:
                break
            storm_only = np.zeros(search.n_events, dtype=bool)
            storm_only[built[7] :] = True
            per_storm = -np.log1p(-min(search.share(storm_only), 0.99)) / max(n_storms, 1)
            n_storms = int(np.ceil(missing / max(per_storm, 1e-3) * 1.15)) + 1

    chosen, got = _choose(built, size, share, aim, seed, profile)
    for _ in range(3):
        if abs(got - share) <= tolerance or rate >= _MAX_RATE:
            break
        # Big events leave no subset near the target: draw more events to choose among.
        rate = min(rate * 2.5, _MAX_RATE)
        built = build(rate, n_storms)
        chosen, got = _choose(built, size, share, aim, seed, profile)
    if abs(got - share) > tolerance:
        raise ValueError(
            f"{profile} seed {seed} over {days} days: reached an anomalous share of {got:.3f}, "
            f"not within {tolerance} of {share}; widen tolerance or simulate more days"
        )
    return _thin(built, chosen)


def _choose(
    built: tuple, size: int, share: float, aim: float, seed: int, profile: str
) -> tuple[np.ndarray, float]:
    """The events to keep so that the share of anomalous windows comes near ``share``."""
    search = _ShareSearch(built, size)
    order = _turns_by_kind(built, seed, profile)

    def prefix(k: int) -> np.ndarray:
        chosen = np.zeros(search.n_events, dtype=bool)
        chosen[order[:k]] = True
        return chosen

    lo, hi = 0, len(order)  # the first prefix that reaches the target
    while lo < hi:
        mid = (lo + hi) // 2
        if search.share(prefix(mid)) >= share:
            hi = mid
        else:
            lo = mid + 1
    candidates = [k for k in (lo - 1, lo) if 0 <= k <= len(order)]
    best = min(candidates, key=lambda k: abs(search.share(prefix(k)) - share))
    chosen = prefix(best)
    got = search.share(chosen)
    if abs(got - share) > aim:
        # Fine-tune: add or drop single events (in order) while that brings the share closer.
        for e in np.r_[order, order]:  # two passes
            trial = chosen.copy()
            trial[e] = not trial[e]
            value = search.share(trial)
            if abs(value - share) < abs(got - share):
                chosen, got = trial, value
            if abs(got - share) <= aim:
                break
    return chosen, got


def _turns_by_kind(built: tuple, seed: int, profile: str) -> np.ndarray:
    """The events shuffled within each kind, the kinds (and the storms) taking turns."""
    events, n_regular = built[3], built[7]
    rng = np.random.default_rng([int(seed) % 2**64, PROFILES.index(profile), 4_243])
    by_kind: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        by_kind.setdefault(e.kind if i < n_regular else "storm", []).append(i)
    queues = [list(rng.permutation(v)) for v in by_kind.values()]
    out: list[int] = []
    while any(queues):
        for q in queues:
            if q:
                out.append(int(q.pop(0)))
    return np.array(out, dtype=np.int64)


def _assemble(
    rows: _Rows,
    tables: _Tables,
    vendor: _Vendor,
    events: list[_Event],
    start: datetime,
    window: float,
    rng: np.random.Generator,
) -> SimulatedLog:
    t, product, key, ip, state, mc, fn, fexp, dov, doid, event = rows.columns()
    keep = (t >= 0) & (t < window)
    order = np.flatnonzero(keep)
    order = order[np.argsort(t[order], kind="stable")]
    t, product, key, ip, state = t[order], product[order], key[order], ip[order], state[order]
    mc, fn, fexp, dov, doid, event = (
        mc[order],
        fn[order],
        fexp[order],
        dov[order],
        doid[order],
        event[order],
    )
    t0_us = int(start.timestamp()) * 1_000_000
    sec = np.floor(t).astype(np.int64)  # the Web API Log keeps whole seconds
    dt = np.diff(t, prepend=0.0)
    ids = int(rng.integers(1_000_000, 50_000_000)) + np.cumsum(
        1 + rng.poisson(vendor.other_traffic_per_s * dt)
    )
    fexp_us = np.where(
        np.isnan(fexp), -1, t0_us + np.floor(np.nan_to_num(fexp)).astype(np.int64) * 1_000_000
    )

    ip_tab = pl.Series(tables.ips[0].tolist(), dtype=pl.Utf8)
    if vendor.anonymise_ip:
        ip_tab = pl.Series([_anonymise(x) for x in ip_tab.to_list()], dtype=pl.Utf8)
    key_tab = pl.Series(np.concatenate(tables.keys).tolist(), dtype=pl.Utf8)
    mc_tab = pl.Series(np.concatenate(tables.mcs).tolist(), dtype=pl.Utf8)
    fn_tab = pl.Series(tables.names, dtype=pl.Utf8)
    frame = pl.DataFrame(
        {
            "Id": ids.astype(np.int64),
            "ProductId": product,
            "Key": key_tab.gather(key),
            "IP": ip_tab.gather(ip),
            "Time": pl.Series(t0_us + sec * 1_000_000, dtype=pl.Int64),
            "State": state,
            "MachineCode": mc_tab.gather(mc),
            "FriendlyName": fn_tab.gather(fn),
            "FloatingExpires": pl.Series(fexp_us, dtype=pl.Int64),
            "DOIntValue": pl.Series(dov, dtype=pl.Int64),
            "DOId": pl.Series(doid, dtype=pl.Int64),
        }
    )
    log = (
        frame.with_columns(
            pl.col("Time").cast(pl.Datetime("us", "UTC")),
            pl.when(pl.col("FloatingExpires") >= 0)
            .then(pl.col("FloatingExpires"))
            .cast(pl.Datetime("us", "UTC"))
            .alias("FloatingExpires"),
            pl.when(pl.col("DOIntValue") != _NULL_INT)
            .then(pl.col("DOIntValue"))
            .alias("DOIntValue"),
            pl.when(pl.col("DOId") >= 0).then(pl.col("DOId")).alias("DOId"),
        )
        .select(list(_LOG_SCHEMA))
        .cast(_LOG_SCHEMA)
    )

    kinds = [e.kind for e in events]
    lab = np.flatnonzero(event >= 0)
    labels = pl.DataFrame(
        {
            "Id": pl.Series(ids[lab], dtype=pl.Int64),
            "event": pl.Series(event[lab], dtype=pl.Int64),
            "kind": pl.Series([kinds[e] for e in event[lab]], dtype=pl.Utf8),
        }
    )
    n_rows = np.bincount(event[lab], minlength=len(events))
    ev_frame = pl.DataFrame(
        {
            "event": pl.Series(np.arange(len(events)), dtype=pl.Int64),
            "kind": pl.Series(kinds, dtype=pl.Utf8),
            "start_time": pl.Series(
                [t0_us + int(np.floor(e.start)) * 1_000_000 for e in events], dtype=pl.Int64
            ).cast(pl.Datetime("us", "UTC")),
            "end_time": pl.Series(
                [t0_us + int(np.floor(e.end)) * 1_000_000 for e in events], dtype=pl.Int64
            ).cast(pl.Datetime("us", "UTC")),
            "key": pl.Series([e.key for e in events], dtype=pl.Utf8),
            "ip": pl.Series(
                [_anonymise(e.ip) if vendor.anonymise_ip else e.ip for e in events], dtype=pl.Utf8
            ),
            "n_rows": pl.Series(n_rows, dtype=pl.Int64),
            "description": pl.Series([e.description for e in events], dtype=pl.Utf8),
        }
    )
    return SimulatedLog(log=log, labels=labels, events=ev_frame)
