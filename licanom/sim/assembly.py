"""A labelled log assembled from a world, its traffic and its injected events: :func:`simulate`,
:func:`simulate_share` (a chosen share of anomalous chunks) and :func:`anomalous_share`."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import polars as pl

from licanom.sim.world import (
    ANOMALY_KINDS,
    LATE_KINDS,
    PROFILES,
    SimulatedLog,
    _DAY,
    _DEFAULT_CUSTOMERS,
    _IpPools,
    _LOG_SCHEMA,
    _NULL_INT,
    _Tables,
    _Vendor,
    _World,
    _YEARLY_ROWS,
    _anonymise,
    _draw_vendor,
    _draw_world,
    _ip_pools,
    _machine_codes,
    _merge_worlds,
)
from licanom.sim.injector import _Event, _Injector
from licanom.sim.traffic import (
    _Rows,
    _Sessions,
    _draw_sessions,
    _expected_rows,
    _lookalikes,
    _normal_rows,
    _transient_failures,
)


# ---------------------------------------------------------------------------------------------
# Public entry point


class ShareNotReached(ValueError):
    """The simulator drew no set of events whose anomalous share lies within the tolerance of
    the one asked for (a seed whose few big events leave no subset near it)."""


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
        raise ShareNotReached(
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
