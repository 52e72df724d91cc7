"""Normal traffic of a simulated vendor: sessions by working hours, churn, usage, transient
failures, and the unlabelled look-alikes (farms, support desks, trial expiries, travel)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from licanom.data.states import MethodGroup, make_state
from licanom.sim.world import (
    COUNTRY_CODES,
    DETAIL_BLOCK,
    DETAIL_DO_DECREMENT,
    DETAIL_DO_SET,
    DETAIL_FLOATING,
    DETAIL_HEARTBEAT,
    DETAIL_KNOWN_MACHINE,
    DETAIL_PLAIN,
    FAIL_ACCESS_DENIED,
    FAIL_BAD_REQUEST,
    FAIL_BLOCKED,
    FAIL_EXPIRED,
    FAIL_KEY_NOT_FOUND,
    FAIL_RATE_LIMITED,
    FAIL_TOO_MANY_MACHINES,
    FAIL_USAGE_LIMIT,
    _COUNTRIES,
    _DAY,
    _FLOAT,
    _HOUR,
    _HOURS_B2B,
    _HOURS_B2C,
    _IpPools,
    _NODE,
    _NULL_INT,
    _Tables,
    _USAGE,
    _Vendor,
    _WEEKDAY_B2B,
    _WEEKDAY_B2C,
    _World,
    _license_keys,
    _machine_codes,
    _mistyped,
)


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
