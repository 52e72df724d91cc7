"""The simulator: Cryptolens-like Web API Logs of one software vendor, with labelled anomalies.

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
loosely); the ``DETAIL_*`` and ``FAIL_*`` constants of :mod:`.world` name them.

The package: the world (:mod:`.world`), normal traffic and look-alikes (:mod:`.traffic`), the
anomaly injectors (:mod:`.injector`) and the assembly of a labelled log (:mod:`.assembly`). It
imports only ``licanom.data`` (columns and state codes), numpy and polars.
"""

from licanom.sim.assembly import ShareNotReached, anomalous_share, simulate, simulate_share
from licanom.sim.world import ANOMALY_KINDS, LATE_KINDS, PROFILES, SimulatedLog

__all__ = ["ANOMALY_KINDS", "LATE_KINDS", "PROFILES", "ShareNotReached", "SimulatedLog", "anomalous_share", "simulate", "simulate_share"]
