"""The anomaly injectors: each kind of :data:`licanom.sim.world.ANOMALY_KINDS` and
:data:`licanom.sim.world.LATE_KINDS` planted as a burst of labelled rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from iptocc import country_code

from licanom.data.states import MethodGroup, make_state
from licanom.sim.world import (
    COUNTRY_CODES,
    DETAIL_DO_DECREMENT,
    DETAIL_FLOATING,
    DETAIL_HEARTBEAT,
    DETAIL_KNOWN_MACHINE,
    DETAIL_PLAIN,
    FAIL_ACCESS_DENIED,
    FAIL_BLOCKED,
    FAIL_EXPIRED,
    FAIL_KEY_NOT_FOUND,
    FAIL_TOO_MANY_MACHINES,
    FAIL_USAGE_LIMIT,
    _DAY,
    _FLOAT,
    _HOUR,
    _IpPools,
    _NODE,
    _Tables,
    _USAGE,
    _Vendor,
    _World,
    _license_keys,
    _machine_codes,
    _region,
)
from licanom.sim.traffic import _Rows, _ranges, _site_ip


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
