"""An independent second generator of Cryptolens-like Web API logs, for held-out evaluation.

Written without reading :mod:`licanom.sim` (nor the documents about it or about the detectors'
defaults): its vendors, their traffic and the anomalies come from a separate idea of how a
licensing platform is used, so that a detector tuned on licanom's own simulator can be judged on
worlds it was never tuned on. Only the input contract is shared: the raw Web API Log columns and
dtypes (licanom.data.columns, licanom.data.schema), the state codes (licanom.data.states) and the
:class:`~licanom.sim.world.SimulatedLog` container.

Vendors (:data:`PROFILES`), their volume drawn log-uniformly per world:

* ``desktop``  node-locked desktop app validated at start-up (Activate), office hours, 200-3,000/day;
* ``usage``    SDK metered through data-object increments in bursts of jobs, month-end rush and
  monthly quotas, 2,000-20,000/day;
* ``floating`` concurrent licences: a heartbeat per open seat every 5-15 minutes, seats over the
  key's capacity fail and retry, 1,500-15,000/day;
* ``indie``    a small vendor with a few dozen hobbyist customers, evenings, 20-150/day;
* ``enterprise`` a handful of large organisations behind a few NAT addresses, thousands of machines,
  1,000-8,000/day.

Normal traffic has its own failures (mistyped keys, network retries, seats briefly full, quotas
reached, trials expiring) and unlabelled look-alikes of the anomalies: CI farms activating fresh
machines every day, support staff touching many keys from one office, travelling laptops and VPN
users, a trial cohort expiring on one day, a big customer rolling out to hundreds of machines, a
release day, traffic growth or decline, per-time-zone daily and weekly cycles, month-end rushes.

Anomalies (labelled): ``brute_force``, ``key_sharing``, ``floating_overuse``, ``failure_loop``,
``runaway_client``, ``usage_fraud``. A contamination :data:`LEVELS` sets the share of 100-row
windows holding one; ``storm`` comes mostly from long failure loops and runaway machines.
The normal requests depend on (profile, seed) only and the anomalies on (profile, seed, level);
the level still moves the Ids (drawn after the anomalies) and, with ``usage_fraud``, the counter
values of the customer's later requests.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import iptocc
import numpy as np
import polars as pl

from licanom.sim.world import SimulatedLog

PROFILES: tuple[str, ...] = ("desktop", "usage", "floating", "indie", "enterprise")
LEVELS: tuple[str, ...] = ("low", "medium", "high", "storm")
LEVEL_RANGES: dict[str, tuple[float, float]] = {
    "low": (0.03, 0.08), "medium": (0.10, 0.20), "high": (0.25, 0.40), "storm": (0.40, 0.65),
}
KINDS: tuple[str, ...] = (
    "brute_force", "key_sharing", "floating_overuse", "failure_loop", "runaway_client", "usage_fraud",
)
WINDOW = 100
DAY, HOUR, MINUTE = 86400.0, 3600.0, 60.0

# State codes (group*100 + 1 ok / 2 failed *10 + detail); the detail digits are this module's own.
GETKEY, GETKEY_NOT_FOUND, GETKEY_BLOCKED, GETKEY_EXPIRED, GETKEY_THROTTLED = 1010, 1021, 1022, 1023, 1029
ACTIVATE_NEW, ACTIVATE_AGAIN, ACTIVATE_FLOATING = 2010, 2011, 2012
ACT_NOT_FOUND, ACT_BLOCKED, ACT_EXPIRED, ACT_LIMIT, ACT_SEATS_FULL = 2021, 2022, 2023, 2024, 2025
ACT_THROTTLED = 2029
CREATE_KEY, DEACTIVATE, RELEASE, EXTEND = 3010, 6010, 6011, 7010
DO_INCREMENT, DO_READ, DO_OVER_QUOTA, DO_BLOCKED, DO_EXPIRED = 8010, 8011, 8021, 8022, 8023

# Approximate standard-time UTC offsets; countries with several zones get one drawn from a list.
_TZ: dict[str, Any] = {
    "US": (-8, -7, -6, -5, -5, -5), "CA": (-8, -5, -5), "MX": -6, "BR": -3, "AR": -3, "CO": -5, "CL": -4,
    "GB": 0, "IE": 0, "PT": 0, "DE": 1, "FR": 1, "NL": 1, "BE": 1, "ES": 1, "IT": 1, "SE": 1, "NO": 1,
    "DK": 1, "PL": 1, "CZ": 1, "AT": 1, "CH": 1, "FI": 2, "RO": 2, "UA": 2, "IL": 2, "ZA": 2, "EG": 2,
    "TR": 3, "RU": (3, 3, 5, 7), "AE": 4, "IN": 5.5, "VN": 7, "TH": 7, "ID": 7, "SG": 8, "HK": 8, "CN": 8,
    "TW": 8, "PH": 8, "MY": 8, "JP": 9, "KR": 9, "AU": (10, 10, 8), "NZ": 12, "NG": 1,
}
_MIX: dict[str, str] = {
    "desktop": "US 30 DE 10 GB 8 FR 5 NL 4 CA 5 AU 4 SE 3 JP 4 IN 4 BR 3 IT 3 ES 3 PL 2 CH 2 AT 1 BE 1 "
               "DK 1 NO 1 IE 1 NZ 1 ZA 1 MX 1 KR 1",
    "usage": "US 35 DE 7 GB 7 IN 8 SG 3 NL 5 IE 3 CA 4 FR 4 JP 3 CN 3 KR 3 BR 3 AU 3 IL 2 SE 2 PL 2",
    "floating": "DE 15 US 25 JP 8 GB 8 FR 7 IT 6 SE 5 KR 5 CN 5 CH 3 AT 3 NL 3 CZ 2 PL 2 IN 3",
    "indie": "US 25 DE 7 GB 6 RU 6 BR 5 IN 6 FR 4 PL 4 UA 3 TR 3 ID 3 VN 3 PH 3 MX 3 CA 3 AU 3 AR 2 "
             "ES 2 IT 2 NL 2 RO 2 EG 1 NG 1 TH 1 MY 1",
    "enterprise": "US 35 DE 12 GB 10 JP 8 FR 7 CH 5 NL 5 SE 4 IN 5 SG 4 AU 3 CA 2",
    "attack": "US 15 CN 12 RU 12 BR 8 IN 8 VN 6 NL 6 DE 5 UA 5 ID 5 TR 4 KR 4 RO 4 SG 3 HK 3",
    "cloud": "US 50 IE 12 DE 12 NL 10 GB 8 SG 5 JP 3",
    "vpn": "NL 20 SE 15 CH 15 US 20 DE 10 GB 10 SG 10",
}
@dataclass(frozen=True)
class _Profile:
    """How one kind of vendor is drawn."""

    mode: str                          # "node" (node-locked), "usage" (metered) or "floating"
    volume: tuple[float, float]        # requests a day, drawn log-uniformly per world
    sched: tuple[float, float, float]  # weights of office, evening and server schedules
    per_cust: float                    # mean installations per customer (node and usage modes with customers)
    nat: float                         # share of customers behind a NAT address
    v6: float                          # share of customers on IPv6
    getkey: float                      # share of installations that validate with GetKey, not Activate
    follow: float                      # share of sessions with a follow-up request
    join: float                        # share of customers who join during the world
    named: float                       # share of machines with a FriendlyName
    per_inst: float                    # rough rows per installation-day, to size the population
    rollout: tuple[int, int] | None    # machines of a big customer's one-day rollout; None: no rollout


# enterprise and floating draw their installations per organisation, not per customer: per_cust
# is not read for them, and floating sizes its population from its heartbeats, not per_inst
_SPEC: dict[str, _Profile] = {
    "desktop": _Profile(mode="node", volume=(200, 3000), sched=(0.75, 0.25, 0), per_cust=1.8, nat=0.3, v6=0.12,
                        getkey=0.1, follow=0.25, join=0.12, named=0.7, per_inst=1.3, rollout=(20, 120)),
    "enterprise": _Profile(mode="node", volume=(1000, 8000), sched=(1, 0, 0), per_cust=0, nat=1.0, v6=0.05,
                           getkey=0.3, follow=0.15, join=0.0, named=0.9, per_inst=1.1, rollout=(50, 300)),
    "indie": _Profile(mode="node", volume=(20, 150), sched=(0.3, 0.7, 0), per_cust=1.2, nat=0.05, v6=0.2,
                      getkey=0.5, follow=0.1, join=0.25, named=0.0, per_inst=1.0, rollout=None),
    "usage": _Profile(mode="usage", volume=(2000, 20000), sched=(0.35, 0, 0.65), per_cust=2.0, nat=1.0, v6=0.1,
                      getkey=0.0, follow=0.0, join=0.1, named=0.5, per_inst=40.0, rollout=(10, 60)),
    "floating": _Profile(mode="floating", volume=(1500, 15000), sched=(1, 0, 0), per_cust=0, nat=0.85, v6=0.05,
                         getkey=0.0, follow=0.0, join=0.05, named=0.0, per_inst=0.0, rollout=None),
}
_WEEK = np.array([[1.0, 0.1], [0.9, 1.4], [1.0, 0.6]])  # weekday / weekend factor per schedule


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("|".join(map(str, ("secondsim", *parts))).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _logu(rng: np.random.Generator, lo: float, hi: float, size: int | None = None) -> Any:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


@lru_cache(maxsize=None)
def _mix(name: str) -> tuple[tuple[str, ...], np.ndarray]:
    parts = _MIX[name].split()
    weights = np.array([float(x) for x in parts[1::2]])
    return tuple(parts[0::2]), weights / weights.sum()


def _pick(rng: np.random.Generator, name: str, size: int | None = None) -> Any:
    countries, p = _mix(name)
    return rng.choice(countries, size, p=p)


@lru_cache(maxsize=1)
def _pools() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Public IPv4 and IPv6 addresses per country, random ones classified with iptocc (once per process)."""
    rng = np.random.default_rng(20240611)  # fixed: every world draws from the same address pools
    octets = rng.integers(0, 256, size=(400_000, 4))
    octets[:, 0] = rng.integers(1, 224, size=len(octets))
    v4 = [f"{a}.{b}.{c}.{d}" for a, b, c, d in octets.tolist()]
    heads = np.array([0x2001] + list(range(0x2400, 0x2410)) + list(range(0x2600, 0x2610))
                     + list(range(0x2800, 0x2804)) + list(range(0x2A00, 0x2A10)) + [0x2C0F])
    h = rng.integers(0, 0x10000, size=(60_000, 4))
    v6 = [f"{a:x}:{b:x}:{c:x}:{d:x}::{e:x}" for a, b, c, d, e in
          zip(rng.choice(heads, len(h)).tolist(), *h.T.tolist(), strict=True)]
    out: list[dict[str, np.ndarray]] = []
    for texts, cap in ((v4, 4000), (v6, 600)):
        by: dict[str, list[str]] = {}
        for text, cc in zip(texts, iptocc.country_code(texts), strict=True):
            if cc in _TZ and len(by.setdefault(cc, [])) < cap:
                by[cc].append(text)
        out.append({cc: np.array(v) for cc, v in by.items()})
    return out[0], out[1]


def _rows(t: Any, key: Any, ip: Any, mc: Any, st: Any, fexp: Any = None, inc: Any = None) -> dict[str, np.ndarray]:
    """A block of requests: times in seconds from the start, indices into the world's tables."""
    t = np.atleast_1d(np.asarray(t, dtype=float))
    n = len(t)

    def full(v: Any, dtype: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=dtype), (n,)).copy()

    return dict(t=t, key=full(key, np.int64), ip=full(ip, np.int64), mc=full(mc, np.int64), st=full(st, np.int64),
                fexp=np.full(n, np.nan) if fexp is None else full(fexp, float),
                inc=np.zeros(n, np.int64) if inc is None else full(inc, np.int64), ev=np.full(n, -1, np.int64))


def _cat(blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {c: np.concatenate([b[c] for b in blocks]) for c in blocks[0]}


def _take(block: dict[str, np.ndarray], sel: Any) -> dict[str, np.ndarray]:
    return {c: v[sel] for c, v in block.items()}


@dataclass
class _Pop:
    """The installations (one machine running the product under one key) and their habits."""

    key: np.ndarray
    mc: np.ndarray
    cust: np.ndarray
    tz: np.ndarray
    sched: np.ndarray
    rate: np.ndarray       # sessions (or job batches) per active day
    join_t: np.ndarray     # first activation, seconds; -inf: active before the window
    end_t: np.ndarray      # licence expiry; +inf: none
    renew_t: np.ndarray    # renewal after the expiry; +inf: never
    nfail: np.ndarray      # sessions tried after expiry before the user gives up
    nat: np.ndarray
    ipmat: np.ndarray      # (n, 3) address choices
    nip: np.ndarray
    period: np.ndarray     # days between address changes (dynamic addresses)
    trip: np.ndarray       # (n, 2) days of a trip abroad (empty: none)
    trip_ip: np.ndarray
    vpn: np.ndarray
    extra: dict[str, np.ndarray]


class _World:
    def __init__(self, profile: str, seed: int, days: int) -> None:
        self.rng = rng = _rng(profile, seed, "normal")
        self.profile, self.days, self.span = profile, days, days * DAY
        self.spec = _SPEC[profile]
        self.t0 = datetime(2023, 1, 2, tzinfo=UTC) + timedelta(days=int(rng.integers(0, 840)))
        self.keys: list[str] = []
        self.key_product: list[int] = []
        self.ips: list[str] = []
        self._ip_at: dict[str, int] = {}
        self.mcs: list[str] = [""]
        self.names: list[str | None] = [None]
        self.blocks: list[dict[str, np.ndarray]] = []
        n_products = 2 if rng.random() < 0.5 else 1
        self.products = [int(p) for p in rng.choice(np.arange(1000, 40000), n_products, replace=False)]
        self.mc_len = int(rng.choice([32, 40, 64]))
        self.quota: dict[int, int] = {}
        self.base: dict[int, int] = {}
        self.heartbeat = float(rng.choice([300.0, 600.0, 900.0]))
        self.volume = 0.0
        self.home = str(_pick(rng, profile))
        self.webshop = self.ip(str(_pick(rng, "cloud")), rng=rng)
        self.office = self.ip(self.home, rng=rng)

    def add(self, *args: Any, **kw: Any) -> None:
        self.blocks.append(_rows(*args, **kw))

    def new_keys(self, n: int, rng: np.random.Generator, product: int | None = None) -> np.ndarray:
        letters = rng.integers(65, 91, size=(n, 20), dtype=np.uint8)
        start = len(self.keys)
        for row in letters:
            s = row.tobytes().decode()
            self.keys.append("-".join(s[i:i + 5] for i in range(0, 20, 5)))
            p = product if product is not None else self.products[0 if rng.random() < 0.8 else -1]
            self.key_product.append(p)
        return np.arange(start, start + n)

    def typo_key(self, key: int, rng: np.random.Generator) -> int:
        text = list(self.keys[key])
        at = int(rng.choice([i for i in range(23) if text[i] != "-"]))
        text[at] = chr(65 + (ord(text[at]) - 65 + int(rng.integers(1, 26))) % 26)
        self.keys.append("".join(text))
        self.key_product.append(self.key_product[key])
        return len(self.keys) - 1

    def ip(self, cc: str, v6: bool = False, rng: np.random.Generator | None = None) -> int:
        v4p, v6p = _pools()
        pool = (v6p if v6 else v4p).get(cc)
        if pool is None or len(pool) == 0:
            pool = v4p.get(cc, v4p["US"])
        text = str(pool[(rng or self.rng).integers(len(pool))])
        at = self._ip_at.get(text)
        if at is None:
            at = self._ip_at[text] = len(self.ips)
            self.ips.append(text)
        return at

    def new_machines(self, n: int, rng: np.random.Generator, named: float = 0.0) -> np.ndarray:
        raw = rng.bytes(self.mc_len // 2 * n).hex()
        start = len(self.mcs)
        self.mcs.extend(raw[i * self.mc_len:(i + 1) * self.mc_len] for i in range(n))
        tags = rng.integers(0, 36, size=(n, 7))
        alnum = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
        prefix = "srv-" if self.profile == "usage" else "DESKTOP-"
        for i in range(n):
            self.names.append(prefix + "".join(alnum[tags[i]]) if rng.random() < named else None)
        return np.arange(start, start + n)


def _tz_of(cc: str, rng: np.random.Generator) -> float:
    tz = _TZ[cc]
    return float(rng.choice(tz)) if isinstance(tz, tuple) else float(tz)


def _population(w: _World) -> _Pop:
    """Customers and their installations, sized to a daily volume drawn from the profile's range."""
    rng, spec, mode = w.rng, w.spec, w.spec.mode
    volume = w.volume = float(_logu(rng, *spec.volume))
    # a floating seat's rows a day: open on about 65% of days, a session of about 4.5 hours of
    # heartbeats plus its opening and release
    per_inst = 0.65 * (4.5 * HOUR / w.heartbeat + 1.5) if mode == "floating" else spec.per_inst
    n_inst = max(8, int(round(volume / per_inst)))
    if w.profile == "enterprise":
        shares = rng.dirichlet(np.full(int(rng.integers(3, 11)), 0.8))
        sizes = np.maximum(20, np.round(shares * n_inst)).astype(int)
    elif mode == "floating":
        caps = np.clip(np.round(_logu(rng, 2, 40, 200)), 2, 40).astype(int)
        users = np.maximum(2, np.round(caps * rng.uniform(0.7, 1.4, len(caps)))).astype(int)
        n_org = int(np.searchsorted(np.cumsum(users), n_inst) + 1)
        caps, sizes = caps[:n_org], users[:n_org]
    else:
        sizes = rng.geometric(1 / spec.per_cust, size=n_inst)
        sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n_inst) + 1)]
    n_cust = len(sizes)
    c_country = _pick(rng, w.profile, n_cust)
    c_tz = np.array([_tz_of(cc, rng) for cc in c_country])
    c_sched = rng.choice(3, n_cust, p=np.array(spec.sched) / sum(spec.sched))
    c_nat = rng.random(n_cust) < spec.nat
    c_v6 = rng.random(n_cust) < spec.v6
    n_keys = np.where(rng.random(n_cust) < (0.6 if w.profile == "enterprise" else 0.05), rng.integers(2, 4, n_cust), 1)
    c_keys = [w.new_keys(int(k), rng) for k in n_keys]
    c_ips = [np.array([w.ip(cc, v6, rng) for _ in range(int(rng.integers(1, 4)))]) for cc, v6 in zip(c_country, c_v6, strict=True)]
    c_join = np.where(rng.random(n_cust) < spec.join, rng.uniform(0, w.span * 0.9, n_cust), -np.inf)

    cust = np.repeat(np.arange(n_cust), sizes)
    n = len(cust)
    key = np.array([c_keys[c][rng.integers(len(c_keys[c]))] for c in cust])
    join_t = c_join[cust] + np.where(np.r_[True, cust[1:] != cust[:-1]], 0.0, rng.exponential(2 * DAY, n))
    if spec.rollout and rng.random() < 0.8:  # a big customer rolls out to many machines on one day
        big = int(np.argmax(np.where(c_nat, sizes, 0)))
        extra = int(rng.integers(*spec.rollout))
        day = float(rng.integers(1, max(2, w.days - 1)))
        at = day * DAY + (9 - c_tz[big]) * HOUR + rng.uniform(0, rng.uniform(2, 6) * HOUR, extra)
        cust, key = np.r_[cust, np.full(extra, big)], np.r_[key, np.full(extra, c_keys[big][0])]
        join_t, n = np.r_[join_t, at], n + extra
    mc = w.new_machines(n, rng, spec.named)
    nat = c_nat[cust] & ~((mode == "floating") & (rng.random(n) < 0.2))  # remote workers
    ipmat = np.zeros((n, 3), np.int64)
    nip = np.ones(n, np.int64)
    for i in range(n):
        c = cust[i]
        if nat[i]:
            ipmat[i] = np.resize(c_ips[c], 3)
            nip[i] = len(c_ips[c])
        else:
            ipmat[i] = [w.ip(c_country[c], bool(c_v6[c]), rng) for _ in range(3)]
            nip[i] = 1 if rng.random() < 0.3 else 3
    # expiries: one trial cohort ending on the same day, and scattered subscription ends
    end_t = np.full(n, np.inf)
    renew_t = np.full(n, np.inf)
    small = np.flatnonzero(np.bincount(cust, minlength=n_cust) <= 3)
    if len(small) >= 2:
        cohort = rng.choice(small, int(min(len(small), rng.integers(3, 40))), replace=False)
        day = rng.integers(0, w.days)
        for c in cohort:
            end_t[cust == c] = day * DAY + rng.uniform(0, DAY)
    lapse = np.isin(cust, np.flatnonzero(rng.random(n_cust) < 0.02))
    end_t[lapse] = rng.uniform(0, w.span, lapse.sum())
    has_end = np.isfinite(end_t)
    renew = has_end & (rng.random(n) < 0.5)
    renew_t[renew] = end_t[renew] + _logu(rng, 0.1 * DAY, 4 * DAY, renew.sum())
    trip = np.full((n, 2), -1.0)
    travels = ~nat & (rng.random(n) < 0.06)
    trip[travels, 0] = rng.integers(0, max(1, w.days - 2), travels.sum())
    trip[travels, 1] = trip[travels, 0] + rng.integers(2, 11, travels.sum())
    trip_ip = np.zeros(n, np.int64)
    for i in np.flatnonzero(travels):
        trip_ip[i] = w.ip(str(_pick(rng, "desktop")), rng=rng)
    extra_cols: dict[str, np.ndarray] = {}
    if mode == "usage":
        extra_cols["batch"] = np.clip(_logu(rng, 2, 80, n), 1, 200)
        extra_cols["gap"] = _logu(rng, 0.5, 20, n)
        inc = rng.choice([1, 1, 1, 1, 5, 10, 50, 100], n_cust)[cust]
        extra_cols["inc"] = inc
        per_session = 1.5 + extra_cols["batch"]
    elif mode == "floating":
        extra_cols["cap"] = caps[cust]
        extra_cols["dur"] = _logu(rng, 2.5, 6.5, n) * HOUR
        per_session = extra_cols["dur"] / w.heartbeat + 1.5
    else:
        per_session = np.full(n, 1.0 + spec.follow + 0.03)
    weight = rng.lognormal(0, 0.9 if mode == "usage" else 0.5, n)
    sched = c_sched[cust]
    day_factor = (_WEEK[:, 0] * 5 + _WEEK[:, 1] * 2)[sched] / 7
    rate = weight * volume / float(np.sum(weight * day_factor * per_session))
    pop = _Pop(key=key, mc=mc, cust=cust, tz=c_tz[cust], sched=sched, rate=rate,
               join_t=join_t, end_t=end_t, renew_t=renew_t, nfail=rng.integers(1, 5, n), nat=nat, ipmat=ipmat,
               nip=nip, period=rng.integers(2, 31, n), trip=trip, trip_ip=trip_ip,
               vpn=~nat & ~travels & (rng.random(n) < 0.03), extra=extra_cols)
    if mode == "usage":  # counters: month-to-date base at the start, a monthly quota on some keys
        per_day = np.bincount(key, weights=rate * per_session * inc, minlength=len(w.keys))
        dom = w.t0.day - 1
        for k in np.unique(key):
            w.base[int(k)] = int(per_day[k] * dom * rng.uniform(0.7, 1.3))
            if rng.random() < 0.4:
                w.quota[int(k)] = int(per_day[k] * 31 * rng.uniform(1.1, 2.5)) + 10
    return pop


def _day_multiplier(w: _World) -> np.ndarray:
    """Growth or decline, a release day, and (metered vendors) the month-end rush."""
    rng, d = w.rng, np.arange(w.days)
    mult = np.exp(rng.uniform(-0.5, 0.7) * d / max(w.days, 1))
    release = int(rng.integers(0, w.days))
    # every client updates and validates again; seats of floating licences are restarted, not doubled
    boost = rng.uniform(1.1, 1.4) if w.spec.mode == "floating" else rng.uniform(1.8, 3.5)
    mult[release] *= boost
    if release + 1 < w.days:
        mult[release + 1] *= 1 + (boost - 1) / 3
    if w.spec.mode == "usage":
        dates = [w.t0 + timedelta(days=int(i)) for i in d]
        last = np.array([(x + timedelta(days=3)).month != x.month for x in dates])
        mult[last] *= rng.uniform(1.5, 2.5)
    return mult


def _local_hours(rng: np.random.Generator, sched: np.ndarray) -> np.ndarray:
    n = len(sched)
    u = rng.random(n)
    office = np.select([u < 0.45, u < 0.65], [rng.normal(9.0, 1.0, n), rng.normal(13.5, 0.9, n)], rng.uniform(8, 18, n))
    evening = np.select([u < 0.55, u < 0.7], [rng.normal(20.5, 2.0, n), rng.normal(12.5, 2.5, n)], rng.uniform(0, 24, n))
    server = np.where(u < 0.6, rng.uniform(0, 24, n), rng.normal(14, 4, n))
    return np.choose(sched, [office, evening, server]) % 24


def _sessions(w: _World, pop: _Pop, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Session (or job batch) starts: (installation, time, address, lapsed licence)."""
    rng, n, days = w.rng, len(pop.key), w.days
    weekend = ((w.t0.weekday() + np.arange(days)) % 7 >= 5).astype(int)
    lam = pop.rate[:, None] * mult[None, :] * _WEEK[pop.sched][:, weekend]
    at = np.repeat(np.arange(n * days), rng.poisson(lam).ravel())
    inst, day = at // days, at % days
    t = (day + _local_hours(rng, pop.sched[inst]) / 24) * DAY - pop.tz[inst] * HOUR
    keep = (t >= 0) & (t < w.span) & (t > pop.join_t[inst])
    inst, t = inst[keep], t[keep]
    order = np.lexsort((t, inst))
    inst, t = inst[order], t[order]
    lapsed = (t >= pop.end_t[inst]) & (t < pop.renew_t[inst])
    c = np.cumsum(lapsed)
    first = np.r_[True, inst[1:] != inst[:-1]]
    group = np.cumsum(first) - 1
    rank = c - (c - lapsed)[np.flatnonzero(first)][group]
    keep = ~lapsed | (rank <= pop.nfail[inst])
    inst, t, lapsed = inst[keep], t[keep], lapsed[keep]
    day = (t // DAY).astype(int)
    choice = np.where(pop.nat[inst], rng.integers(0, 3, len(t)) % pop.nip[inst], (day // pop.period[inst]) % pop.nip[inst])
    ip = pop.ipmat[inst, choice]
    away = (day >= pop.trip[inst, 0]) & (day < pop.trip[inst, 1])
    ip[away] = pop.trip_ip[inst[away]]
    vpn = np.flatnonzero(pop.vpn[inst])
    if len(vpn):
        exits = np.array([w.ip(str(cc), rng=rng) for cc in _pick(rng, "vpn", 6)])
        ip[vpn] = exits[rng.integers(0, len(exits), len(vpn))]
    return inst, t, ip, lapsed


def _lifecycle(w: _World, pop: _Pop) -> None:
    """First activations of new installations (with typos and key purchases) and renewals."""
    rng, spec = w.rng, w.spec
    new = np.flatnonzero(np.isfinite(pop.join_t) & (pop.join_t < w.span))
    floating = spec.mode == "floating"
    if len(new):
        t = pop.join_t[new]
        fexp = t + w.heartbeat if floating else None
        w.add(t, pop.key[new], pop.ipmat[new, 0], pop.mc[new], ACTIVATE_FLOATING if floating else ACTIVATE_NEW, fexp)
        typo = new[rng.random(len(new)) < 0.12]
        for i in typo:
            w.add(pop.join_t[i] - rng.uniform(5, 90), w.typo_key(int(pop.key[i]), rng), pop.ipmat[i, 0], pop.mc[i],
                  ACT_NOT_FOUND)
        first = new[np.r_[True, pop.cust[new][1:] != pop.cust[new][:-1]]]
        bought = pop.join_t[first] - _logu(rng, 60, 2 * DAY, len(first))
        w.add(bought, pop.key[first], w.webshop, 0, CREATE_KEY)
    renewed = np.flatnonzero(np.isfinite(pop.renew_t) & (pop.renew_t < w.span))
    _, once = np.unique(pop.key[renewed], return_index=True)
    renewed = renewed[once]
    w.add(pop.renew_t[renewed], pop.key[renewed], w.webshop, 0, EXTEND)


def _node_traffic(w: _World, pop: _Pop, inst: np.ndarray, t: np.ndarray, ip: np.ndarray, lapsed: np.ndarray) -> None:
    rng, spec, n = w.rng, w.spec, len(t)
    key = pop.key[inst]
    getkey = rng.random(n) < spec.getkey
    mc = np.where(getkey, 0, pop.mc[inst])
    st = np.where(lapsed, np.where(getkey, GETKEY_EXPIRED, ACT_EXPIRED), np.where(getkey, GETKEY, ACTIVATE_AGAIN))
    w.add(t, key, ip, mc, st)
    again = lapsed & (rng.random(n) < 0.6)  # the user tries once or twice more at once
    w.add(t[again] + rng.uniform(2, 25, again.sum()), key[again], ip[again], mc[again], st[again])
    follow = ~lapsed & ~getkey & (rng.random(n) < spec.follow)
    w.add(t[follow] + rng.exponential(400, follow.sum()), key[follow], ip[follow], 0, GETKEY)
    dup = rng.random(n) < 0.015  # network retry
    w.add(t[dup] + rng.uniform(0.5, 20, dup.sum()), key[dup], ip[dup], mc[dup], st[dup])
    limit = np.flatnonzero(~lapsed & (rng.random(n) < 0.003))  # a new machine hits the machine limit
    if len(limit):
        fresh = w.new_machines(len(limit), rng, spec.named)
        w.add(t[limit], key[limit], ip[limit], fresh, ACT_LIMIT)
        w.add(t[limit] + rng.uniform(20, 300, len(limit)), key[limit], ip[limit], pop.mc[inst[limit]], DEACTIVATE)
        w.add(t[limit] + rng.uniform(320, 900, len(limit)), key[limit], ip[limit], fresh, ACTIVATE_NEW)


def _usage_traffic(w: _World, pop: _Pop, inst: np.ndarray, t: np.ndarray, ip: np.ndarray, lapsed: np.ndarray) -> None:
    rng, n = w.rng, len(t)
    key, mc = pop.key[inst], pop.mc[inst]
    check = rng.random(n) < 0.4
    w.add(t[check] - rng.uniform(0.2, 3, check.sum()), key[check], ip[check], mc[check],
          np.where(lapsed[check], ACT_EXPIRED, ACTIVATE_AGAIN))
    w.add(t[lapsed], key[lapsed], ip[lapsed], mc[lapsed], DO_EXPIRED)
    jobs = np.flatnonzero(~lapsed)
    size = rng.geometric(1 / pop.extra["batch"][inst[jobs]])
    rep = np.repeat(jobs, size)
    gaps = rng.exponential(pop.extra["gap"][inst[rep]])
    cs = np.cumsum(gaps)
    starts = np.r_[0, np.cumsum(size)[:-1]]
    offset = cs - np.repeat(cs[starts] - gaps[starts], size)
    inc = pop.extra["inc"][inst[rep]] * np.where(rng.random(len(rep)) < 0.2, rng.integers(1, 4, len(rep)), 1)
    w.add(t[rep] + offset, key[rep], ip[rep], mc[rep], DO_INCREMENT, inc=inc)
    read = ~lapsed & (rng.random(n) < 0.1)
    w.add(t[read] + rng.uniform(1, 120, read.sum()), key[read], ip[read], mc[read], DO_READ)


def _floating_traffic(w: _World, pop: _Pop, inst: np.ndarray, t: np.ndarray, ip: np.ndarray, lapsed: np.ndarray) -> None:
    """Seats taken per key in time order; a session over capacity retries until a seat frees."""
    rng, h = w.rng, w.heartbeat
    key, dur = pop.key[inst], pop.extra["dur"][inst] * rng.uniform(0.3, 1.5, len(t))
    w.add(t[lapsed], key[lapsed], ip[lapsed], pop.mc[inst[lapsed]], ACT_EXPIRED)
    start = np.full(len(t), np.nan)
    fails: list[tuple[int, float]] = []
    retry, patience = h * 0.5, rng.uniform(10, 45) * MINUTE
    ok = np.flatnonzero(~lapsed)
    ok = ok[np.lexsort((t[ok], key[ok]))]
    for group in np.split(ok, np.flatnonzero(np.diff(key[ok])) + 1):
        seats: list[float] = []
        cap = int(pop.extra["cap"][inst[group[0]]]) if len(group) else 0
        for s in group:
            while seats and seats[0] <= t[s]:
                heapq.heappop(seats)
            if len(seats) < cap:
                start[s] = t[s]
            else:
                wait = seats[0] - t[s]
                tries = int(np.ceil(wait / retry)) if wait <= patience else int(patience // retry) + 1
                fails.extend((int(s), t[s] + k * retry) for k in range(tries))
                if wait > patience:
                    continue
                heapq.heappop(seats)
                start[s] = t[s] + tries * retry
            heapq.heappush(seats, start[s] + dur[s] + h)
    if fails:
        s_idx = np.array([f[0] for f in fails])
        w.add([f[1] for f in fails], key[s_idx], ip[s_idx], pop.mc[inst[s_idx]], ACT_SEATS_FULL)
    on = np.flatnonzero(np.isfinite(start))
    beats = np.maximum(1, np.ceil(dur[on] / h)).astype(int)
    rep = np.repeat(on, beats)
    k = np.arange(len(rep)) - np.repeat(np.r_[0, np.cumsum(beats)[:-1]], beats)
    bt = start[rep] + k * h * rng.uniform(0.93, 1.0, len(rep)) + rng.uniform(0, 3, len(rep))
    w.add(bt, key[rep], ip[rep], pop.mc[inst[rep]], ACTIVATE_FLOATING, fexp=bt + h)
    rel = on[rng.random(len(on)) < 0.75]
    w.add(start[rel] + dur[rel] + rng.uniform(5, 60, len(rel)), key[rel], ip[rel], pop.mc[inst[rel]], RELEASE)


def _lookalikes(w: _World, pop: _Pop, inst: np.ndarray, t: np.ndarray, ip: np.ndarray) -> None:
    """Ordinary failures (mistyped keys, a revoked key passed around), a CI farm activating fresh
    machines every working day, support staff touching many keys from one office."""
    rng, floating = w.rng, w.spec.mode == "floating"
    for i in np.flatnonzero(rng.random(len(t)) < 0.004):
        k = int(pop.key[inst[i]])
        st = ACT_NOT_FOUND if rng.random() < 0.7 else GETKEY_NOT_FOUND
        w.add(t[i] - rng.uniform(5, 120, int(rng.integers(1, 3))), w.typo_key(k, rng), ip[i], pop.mc[inst[i]], st)
    revoked = w.new_keys(int(rng.integers(1, 6)), rng)
    tries = rng.poisson(w.volume * w.days * rng.uniform(0.0005, 0.003))
    if tries:
        places = _pick(rng, "attack", tries)
        w.add(np.sort(rng.uniform(0, w.span, tries)), rng.choice(revoked, tries), [w.ip(str(c), rng=rng) for c in places],
              w.new_machines(tries, rng), ACT_BLOCKED)
    if w.profile != "indie" or rng.random() < 0.3:
        key = int(pop.key[rng.integers(len(pop.key))])
        region = str(_pick(rng, "cloud"))
        farm = [w.ip(region, rng=rng) for _ in range(int(rng.integers(1, 4)))]
        per_day = max(1.0, w.volume * rng.uniform(0.003, 0.03) / 3)
        for d in range(w.days):
            if (w.t0.weekday() + d) % 7 >= 5 and rng.random() < 0.7:
                continue
            jobs = rng.poisson(per_day)
            t = d * DAY + rng.uniform(0, DAY, jobs)
            mcs = w.new_machines(jobs, rng)
            ips = np.array(farm)[rng.integers(0, len(farm), jobs)]
            long = rng.uniform(3, 40, jobs) * MINUTE
            if floating:
                w.add(t, key, ips, mcs, ACTIVATE_FLOATING, fexp=t + w.heartbeat)
                w.add(t + long, key, ips, mcs, RELEASE)
            else:
                w.add(t, key, ips, mcs, ACTIVATE_NEW)
                w.add(t + rng.uniform(5, 60, jobs), key, ips, 0, GETKEY)
                w.add(t + long, key, ips, mcs, DEACTIVATE)
    if rng.random() < 0.85:
        tz = _tz_of(w.home, rng)
        all_keys = np.unique(pop.key)
        for d in range(w.days):
            if (w.t0.weekday() + d) % 7 >= 5 or rng.random() < 0.5:
                continue
            touched = rng.choice(all_keys, int(min(len(all_keys), rng.integers(3, 26))), replace=False)
            reps = rng.integers(1, 4, len(touched))
            keys = np.repeat(touched, reps)
            t = d * DAY + (rng.uniform(9, 17.5, len(keys)) - tz) * HOUR
            w.add(t, keys, w.office, 0, np.where(rng.random(len(keys)) < 0.1, EXTEND, GETKEY))


# ---------------------------------------------------------------------------------------------
# Anomalies


@dataclass
class _Event:
    kind: str
    rows: dict[str, np.ndarray]
    key: str
    ip: str
    what: str


def _victim(w: _World, pop: _Pop, rng: np.random.Generator, where: np.ndarray | None = None) -> int:
    ok = ~np.isfinite(pop.join_t) & ~np.isfinite(pop.end_t)
    if where is not None:
        ok &= where
    pick = np.flatnonzero(ok) if ok.any() else np.arange(len(pop.key))
    return int(rng.choice(pick))


def _brute_force(w: _World, pop: _Pop, rng: np.random.Generator, long: float) -> _Event:
    fast = rng.random() < 0.5
    n = int(_logu(rng, 30, 1500) if fast else _logu(rng, 20, 400))
    gap = _logu(rng, 0.2, 3) if fast else _logu(rng, 30, 900)
    t = rng.uniform(0, w.span) + np.cumsum(rng.exponential(gap, n))
    per_key = rng.uniform(1, 2.5)
    keys = w.new_keys(int(np.ceil(n / per_key)), rng, product=int(rng.choice(w.products)))
    ip = w.ip(str(_pick(rng, "attack")), rng=rng)
    mc = int(w.new_machines(1, rng)[0]) if rng.random() < 0.5 else 0
    st = ACT_NOT_FOUND if rng.random() < 0.7 else GETKEY_NOT_FOUND
    rows = _rows(t, keys[(np.arange(n) / per_key).astype(int)], ip, mc, st)
    return _Event("brute_force", rows, "", w.ips[ip], "one address tries invented keys every ~{gap}")


def _key_sharing(w: _World, pop: _Pop, rng: np.random.Generator, long: float) -> _Event:
    i = _victim(w, pop, rng)
    key, floating = int(pop.key[i]), w.spec.mode == "floating"
    m = int(_logu(rng, 8, 250))
    span = _logu(rng, 2 * HOUR, 4 * DAY)
    t0 = rng.uniform(0, max(w.span - span, 1))
    places = _pick(rng, "attack" if rng.random() < 0.5 else "desktop", int(rng.integers(1, 9)))
    limit = int(rng.integers(2, 11))
    blocks = []
    for j, mc in enumerate(w.new_machines(m, rng)):
        ip = w.ip(str(rng.choice(places)), rng=rng)
        first = t0 + rng.uniform(0, span)
        later = np.sort(first + rng.uniform(30, max(span - (first - t0), 60), rng.poisson(3)))
        if floating:
            st = ACTIVATE_FLOATING if j < limit or rng.random() < 0.2 else ACT_SEATS_FULL
            tt = np.r_[first, later]
            blocks.append(_rows(tt, key, ip, mc, st, fexp=tt + w.heartbeat if st == ACTIVATE_FLOATING else None))
        elif j < limit:
            blocks.append(_rows(np.r_[first, later], key, ip, mc, np.r_[ACTIVATE_NEW, np.full(len(later), ACTIVATE_AGAIN)]))
        else:
            blocks.append(_rows(first + np.r_[0, rng.uniform(5, 600, rng.poisson(1.5))], key, ip, mc, ACT_LIMIT))
    rows = _cat(blocks)
    return _Event("key_sharing", rows, w.keys[key], "", f"a key spreads to up to {m} new machines in {len(set(places))} countries")


def _floating_overuse(w: _World, pop: _Pop, rng: np.random.Generator, long: float) -> _Event:
    i = _victim(w, pop, rng)
    key, cap, h = int(pop.key[i]), int(pop.extra["cap"][i]), w.heartbeat
    extra = int(rng.integers(max(2, cap // 2), 3 * cap + 6))
    span = _logu(rng, 1 * HOUR, 10 * HOUR)
    day = int(rng.integers(0, w.days))
    t0 = day * DAY + (rng.uniform(8, 12) - pop.tz[i]) * HOUR
    own = rng.random() < 0.6
    fail = rng.uniform(0.5, 0.95)
    blocks = []
    for mc in w.new_machines(extra, rng):
        ip = int(pop.ipmat[i, 0]) if own else w.ip(str(_pick(rng, "desktop")), rng=rng)
        a = t0 + rng.uniform(0, 0.3 * span)
        tt = a + np.arange(max(1, int(rng.uniform(0.3, 1) * span / h))) * h * rng.uniform(0.5, 1.0)
        st = np.where(rng.random(len(tt)) < fail, ACT_SEATS_FULL, ACTIVATE_FLOATING)
        blocks.append(_rows(tt, key, ip, mc, st, fexp=np.where(st == ACTIVATE_FLOATING, tt + h, np.nan)))
    return _Event("floating_overuse", _cat(blocks), w.keys[key], w.ips[int(pop.ipmat[i, 0])] if own else "",
                  f"{extra} machines over a {cap}-seat key")


def _failure_loop(w: _World, pop: _Pop, rng: np.random.Generator, long: float) -> _Event:
    i = _victim(w, pop, rng)
    mode = w.spec.mode
    options = {"node": [ACT_EXPIRED, ACT_BLOCKED, ACT_LIMIT, GETKEY_EXPIRED, GETKEY_BLOCKED],
               "usage": [ACT_EXPIRED, DO_EXPIRED, DO_BLOCKED, GETKEY_BLOCKED],
               "floating": [ACT_EXPIRED, ACT_BLOCKED, ACT_SEATS_FULL]}[mode]
    st = int(rng.choice(options))
    gap = _logu(rng, 3, 600) if long else _logu(rng, 2, 900)
    span = min(_logu(rng, 1 * DAY, 8 * DAY), long) if long else _logu(rng, 10 * MINUTE, 3 * DAY)
    n = int(min(300_000, max(3, span / gap)))  # at most 300,000 rows a storm
    steps = gap * rng.uniform(0.8, 1.2, n)
    if rng.random() < 0.3:  # exponential back-off up to the final interval
        steps = np.minimum(steps, 2.0 ** np.minimum(np.arange(n), 40))
    t = rng.uniform(0, w.span) + np.cumsum(steps)
    ip = int(pop.ipmat[i, 0])
    same_key = st in (ACT_LIMIT, ACT_SEATS_FULL)
    key = int(pop.key[i]) if same_key else int(w.new_keys(1, rng, w.key_product[int(pop.key[i])])[0])
    mc = 0 if st in (GETKEY_EXPIRED, GETKEY_BLOCKED) else int(w.new_machines(1, rng)[0])
    return _Event("failure_loop", _rows(t, key, ip, mc, st), w.keys[key], w.ips[ip],
                  f"a client retries a failing request (State {st}) every ~{{gap}}")


def _runaway(w: _World, pop: _Pop, rng: np.random.Generator, long: float) -> _Event:
    i = _victim(w, pop, rng)
    mode = w.spec.mode
    gap = _logu(rng, 0.3, 20)
    span = min(_logu(rng, 2 * HOUR, 40 * HOUR), long) if long else _logu(rng, 5 * MINUTE, 12 * HOUR)
    n = int(min(300_000, max(3, span / gap)))  # at most 300,000 rows a storm
    t = rng.uniform(0, w.span) + np.cumsum(rng.exponential(gap, n))
    ok = {"node": ACTIVATE_AGAIN if rng.random() < 0.6 else GETKEY, "usage": DO_READ, "floating": ACTIVATE_FLOATING}[mode]
    st = np.where(rng.random(n) < rng.uniform(0, 0.1), GETKEY_THROTTLED if ok == GETKEY else ACT_THROTTLED, ok)
    ip = int(pop.ipmat[i, 0])
    fexp = np.where(st == ACTIVATE_FLOATING, t + w.heartbeat, np.nan)
    return _Event("runaway_client", _rows(t, pop.key[i], ip, np.where(st == GETKEY, 0, pop.mc[i]), st, fexp=fexp),
                  w.keys[int(pop.key[i])], w.ips[ip], "one machine calls every ~{gap}")


def _usage_fraud(w: _World, pop: _Pop, rng: np.random.Generator, long: float) -> _Event:
    free = np.array([int(k) not in w.quota for k in pop.key])
    i = _victim(w, pop, rng, free)
    n = int(_logu(rng, 20, 2500))
    span = _logu(rng, 1 * HOUR, 4 * DAY)
    t = np.sort(rng.uniform(0, span, n)) + rng.uniform(0, w.span)
    factor = _logu(rng, 20, 500)
    inc = np.maximum(1, np.round(pop.extra["inc"][i] * pop.extra["batch"][i] * factor * rng.uniform(0.5, 1.5, n)))
    moved = rng.random() < 0.4
    ip = w.ip(str(_pick(rng, "attack")), rng=rng) if moved else int(pop.ipmat[i, 0])
    mc = int(w.new_machines(1, rng)[0]) if moved else int(pop.mc[i])
    return _Event("usage_fraud", _rows(t, pop.key[i], ip, mc, DO_INCREMENT, inc=inc.astype(np.int64)),
                  w.keys[int(pop.key[i])], w.ips[ip], f"counter increments ~{factor:.0f}x a normal job")


# Each kind's generator takes ``long``: the longest span, in seconds, of a storm (a failure loop or
# a runaway machine lasting hours to days), or 0.0 for an ordinary event; the other kinds ignore it.
_GENERATORS = {"brute_force": _brute_force, "key_sharing": _key_sharing, "floating_overuse": _floating_overuse,
               "failure_loop": _failure_loop, "runaway_client": _runaway, "usage_fraud": _usage_fraud}
_WEIGHTS = {"brute_force": 0.22, "key_sharing": 0.2, "floating_overuse": 0.25, "failure_loop": 0.25,
            "runaway_client": 0.15, "usage_fraud": 0.25}


def _share(normal_t: np.ndarray, anomal_t: np.ndarray) -> float:
    """Share of full 100-row windows holding an anomalous row, rows merged in time order."""
    total = (len(normal_t) + len(anomal_t)) // WINDOW
    if total == 0:
        return 0.0
    pos = np.searchsorted(normal_t, anomal_t, side="right") + np.arange(len(anomal_t))
    win = pos[pos < total * WINDOW] // WINDOW
    return len(np.unique(win)) / total


def _inject(w: _World, pop: _Pop, normal_t: np.ndarray, level: str, rng: np.random.Generator) -> list[_Event]:
    """Add events until the window share reaches a target inside the level's range. Each event may
    take about a k-th of the target (k drawn per world), a long storm a third to two thirds of it; an
    event that would take more is cut short (it ended earlier)."""
    lo, hi = LEVEL_RANGES[level]
    target = rng.uniform(lo + 0.2 * (hi - lo), hi - 0.25 * (hi - lo))
    one = 1.0 / max(1, len(normal_t) // WINDOW)  # one window's share
    cap = max(hi - 0.01, 1.5 * one)
    step = target / rng.integers(*{"low": (3, 12), "medium": (5, 18), "high": (6, 22), "storm": (4, 12)}[level])
    mode = w.spec.mode
    kinds = [k for k in KINDS if (k != "floating_overuse" or mode == "floating") and (k != "usage_fraud" or mode == "usage")]
    weights = np.array([_WEIGHTS[k] for k in kinds])
    anomal = np.zeros(0)
    share, events = 0.0, []
    for _ in range(500):  # a bound on events a world draws; the target share ends it long before
        if share >= target:
            break
        long = (level == "storm" and share < 0.75 * target) or (level == "high" and rng.random() < 0.3)
        kind = (str(rng.choice(["failure_loop", "runaway_client"], p=[0.65, 0.35])) if long
                else str(rng.choice(kinds, p=weights / weights.sum())))
        room = target * rng.uniform(0.3, 0.7) if long else step * rng.uniform(0.3, 1.7)
        limit = min(cap, share + max(1.2 * one, room))
        # a long storm lasts at most about its share of the time: it touches most windows it spans
        ev = _GENERATORS[kind](w, pop, rng, max(6 * HOUR, room * w.span * rng.uniform(0.4, 1.0)) if long else 0.0)
        inside = (ev.rows["t"] >= 0) & (ev.rows["t"] < w.span)
        rows = _take(ev.rows, np.flatnonzero(inside)[np.argsort(ev.rows["t"][inside], kind="stable")])
        if len(rows["t"]) < 3:
            continue
        new = _share(normal_t, np.sort(np.r_[anomal, rows["t"]]))
        if new > limit and long:  # thin a long storm out (a slower client) before cutting it short
            a, b = 1, max(1, len(rows["t"]) // 3)
            while b - a > 1:
                mid = (a + b) // 2
                a, b = (a, mid) if _share(normal_t, np.sort(np.r_[anomal, rows["t"][::mid]])) <= limit else (mid, b)
            rows = _take(rows, slice(0, None, b))
            new = _share(normal_t, np.sort(np.r_[anomal, rows["t"]]))
        if new > limit:
            a, b = 0, len(rows["t"])  # the longest prefix that stays under the limit
            while b - a > 1:
                mid = (a + b) // 2
                a, b = (mid, b) if _share(normal_t, np.sort(np.r_[anomal, rows["t"][:mid]])) <= limit else (a, mid)
            if a < 3:
                continue
            rows = _take(rows, slice(0, a))
            new = _share(normal_t, np.sort(np.r_[anomal, rows["t"]]))
        rows["ev"][:] = len(events)
        events.append(_Event(ev.kind, rows, ev.key, ev.ip, ev.what))
        anomal, share = np.sort(np.r_[anomal, rows["t"]]), new
    return events


# ---------------------------------------------------------------------------------------------
# Assembly


def _assemble(w: _World, events: list[_Event]) -> SimulatedLog:
    rows = _cat([b for b in w.blocks if len(b["t"])] + [e.rows for e in events])
    inside = (rows["t"] >= 0) & (rows["t"] < w.span)
    rows = _take(rows, np.flatnonzero(inside)[np.argsort(rows["t"][inside], kind="stable")])
    t0_us = int(w.t0.timestamp() * 1_000_000)
    utc = pl.Datetime("us", "UTC")
    nk = len(w.keys)
    quota, base = np.zeros(nk, np.int64), np.zeros(nk, np.int64)
    quota[list(w.quota)] = list(w.quota.values())
    base[list(w.base)] = list(w.base.values())
    has_fexp = ~np.isnan(rows["fexp"])
    frame = pl.DataFrame({
        "Time": pl.Series(t0_us + np.round(rows["t"] * 1e6).astype(np.int64)).cast(utc),
        "fexp": pl.Series(t0_us + np.round(np.nan_to_num(rows["fexp"]) * 1e6).astype(np.int64)).cast(utc),
        "has_fexp": has_fexp, "key": rows["key"], "ip": rows["ip"], "mc": rows["mc"], "st": rows["st"],
        "inc": rows["inc"], "ev": rows["ev"], "quota": quota[rows["key"]], "base": base[rows["key"]],
    })
    # Data-object counters: month-to-date per key, reset each month; a key over its monthly quota
    # fails its increments (the value stays) and its client stops after a few failures.
    is_do, st, cum = (pl.col("st") // 100) == 80, pl.col("st"), pl.col("cum")
    frame = frame.with_columns(month=pl.col("Time").dt.year() * 12 + pl.col("Time").dt.month())
    first_month = frame["month"].min()
    frame = frame.with_columns(
        cum=pl.when(st == DO_INCREMENT).then(pl.col("inc")).otherwise(0).cum_sum().over("key", "month")
        + pl.when(pl.col("month") == first_month).then(pl.col("base")).otherwise(0),
    ).with_columns(
        capped=(pl.col("quota") > 0) & (cum > pl.col("quota")) & (pl.col("ev") < 0),
    ).with_columns(
        over=pl.col("capped") & (st == DO_INCREMENT),
        last_ok=pl.when((st == DO_INCREMENT) & ~pl.col("capped")).then(cum).max().over("key", "month"),
    ).with_columns(
        n_over=pl.col("over").cast(pl.Int64).cum_sum().over("key", "month"),
    ).filter(~pl.col("over") | (pl.col("n_over") <= 5 + pl.col("key") % 20))  # a client gives up after 5-24 refusals a month
    gaps = w.rng.geometric(1 / w.rng.uniform(1, 30), frame.height)
    ids = int(w.rng.integers(1_000_000, 90_000_000)) + np.cumsum(gaps)
    keys, ips = pl.Series(w.keys, dtype=pl.String), pl.Series(w.ips, dtype=pl.String)
    mcs, names = pl.Series(w.mcs, dtype=pl.String), pl.Series(w.names, dtype=pl.String)
    # each key's data object: distinct Ids spread over 10,000-899,999 (7919 is a prime step)
    doid = pl.Series(10_000 + (np.arange(nk) * 7919 + 31) % 890_000, dtype=pl.Int64)
    activation = (frame["st"] // 100 == 20).to_numpy()
    log = frame.select(
        pl.Series("Id", ids, dtype=pl.Int64),
        pl.Series(w.key_product, dtype=pl.Int64).gather(frame["key"]).alias("ProductId"),
        keys.gather(frame["key"]).alias("Key"),
        ips.gather(frame["ip"]).alias("IP"),
        "Time",
        pl.when(pl.col("over")).then(DO_OVER_QUOTA).otherwise(st).cast(pl.Int64).alias("State"),
        mcs.gather(frame["mc"]).alias("MachineCode"),
        names.gather(pl.Series(np.where(activation, frame["mc"].to_numpy(), 0))).alias("FriendlyName"),
        pl.when(pl.col("has_fexp")).then(pl.col("fexp")).alias("FloatingExpires"),
        pl.when(is_do).then(pl.when(pl.col("capped")).then(pl.col("last_ok").fill_null(pl.col("quota")))
                            .otherwise(cum)).cast(pl.Int64).alias("DOIntValue"),
        pl.when(is_do).then(doid.gather(frame["key"])).alias("DOId"),
    )
    ev = frame["ev"]
    labelled = log.select("Id", "Time", "Key", "IP").with_columns(old=ev).filter(pl.col("old") >= 0)
    median = labelled.group_by("old").agg(pl.col("Time").diff().dt.total_microseconds().median() / 1e6)
    gaps = {old: f"{g:.1f} s" if g < 60 else f"{g / 60:.0f} min" for old, g in median.iter_rows() if g is not None}
    kept = labelled.group_by("old").agg(start_time=pl.col("Time").min(), end_time=pl.col("Time").max(),
                                        n_rows=pl.len()).sort("start_time", "old")
    renumber = dict(zip(kept["old"].to_list(), range(1, kept.height + 1), strict=True))
    labels = labelled.select(
        "Id", pl.col("old").replace_strict(renumber, return_dtype=pl.Int64).alias("event"),
        pl.col("old").replace_strict({i: e.kind for i, e in enumerate(events)}, return_dtype=pl.String).alias("kind"),
    )
    table = []
    for old, start, end, n in kept.iter_rows():
        e = events[old]
        hours = (end - start).total_seconds() / HOUR
        table.append(dict(event=renumber[old], kind=e.kind, start_time=start, end_time=end, key=e.key, ip=e.ip,
                          n_rows=n, description=f"{e.what.format(gap=gaps.get(old, '?'))}; {n:,} rows over {hours:.1f} h"))
    schema = {"event": pl.Int64, "kind": pl.String, "start_time": utc, "end_time": utc, "key": pl.String,
              "ip": pl.String, "n_rows": pl.Int64, "description": pl.String}
    return SimulatedLog(log=log, labels=labels, events=pl.DataFrame(table, schema=schema))


def simulate(profile: str, seed: int, days: int = 21, level: str = "medium") -> SimulatedLog:
    """One vendor's log over ``days`` days with labelled anomalies at a contamination ``level``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    w = _World(profile, seed, days)
    pop = _population(w)
    _lifecycle(w, pop)
    inst, t, ip, lapsed = _sessions(w, pop, _day_multiplier(w))
    {"node": _node_traffic, "usage": _usage_traffic, "floating": _floating_traffic}[w.spec.mode](
        w, pop, inst, t, ip, lapsed)
    _lookalikes(w, pop, inst, t, ip)
    normal_t = np.sort(np.concatenate([b["t"] for b in w.blocks]))
    normal_t = normal_t[(normal_t >= 0) & (normal_t < w.span)]
    events = _inject(w, pop, normal_t, level, _rng(profile, seed, level, "anomalies"))
    return _assemble(w, events)


def anomalous_share(sim: SimulatedLog, size: int = WINDOW) -> float:
    """Share of full non-overlapping ``size``-row windows (log in Id order) holding a labelled row."""
    log = sim.log.sort("Id")
    n = log.height // size
    if n == 0:
        return 0.0
    flag = log["Id"].is_in(sim.labels["Id"].implode()).to_numpy()[: n * size]
    return float(flag.reshape(n, size).any(axis=1).mean())
