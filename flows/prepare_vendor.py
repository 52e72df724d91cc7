"""Flow: a vendor's log from its source to chunks (extract -> validate -> encode -> chunk)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.utilities.annotations import opaque

from flows.naming import run_name
from flows.states import refused
from licanom.config import VendorConfigError
from licanom.data.pipeline import Prepared
from tasks import data, vendors


@flow(name="prepare-vendor", log_prints=True, flow_run_name=run_name("prepare"))
def prepare_vendor(vendor: str = "demo", out_dir: str | None = None) -> Prepared:
    """extract -> validate -> encode -> chunk, written to ``<out_dir>/<vendor>/prepared``.

    Args:
        vendor: The vendor to prepare (a file in conf/vendors/).
        out_dir: Where to write (empty: the vendor's output_dir, the project's out/ by default).
    """
    cfg = vendors.vendor_config(vendor)
    if isinstance(cfg, VendorConfigError):  # one line, not a traceback; the error: its exit code, 2
        return refused(cfg)  # type: ignore[return-value]
    raw = data.extract(cfg)
    validation = data.validate(raw, cfg)
    prepared = data.encode_and_chunk(opaque(validation), cfg)
    data.write_prepared(opaque(prepared), Path(out_dir or cfg.output_dir) / vendor / "prepared")
    why = validation.commonest_reason(private=cfg.privacy.pseudonymise)
    print(f"{vendor}: {raw.height:,} rows read, {validation.quarantine.height:,} quarantined{f' ({why})' if why else ''}, "
          f"{prepared.chunks.n_chunks:,} chunks")
    return prepared
