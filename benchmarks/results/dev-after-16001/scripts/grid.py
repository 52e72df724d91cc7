import sys, polars as pl, numpy as np
from pathlib import Path
from benchmarks import offline_decisions as od
from licanom.detectors.decision import DEFAULT_MIN_SEVERITY, stands_out
od.NIGHT_CUT_HOUR = 2
files=od.stored([Path(a) for a in sys.argv[1:]])
ch=od._night_chunks(files)
latest=od._latest_severities(files)
groups=[(tuple(k), v["_i"].to_numpy(), v["night"].to_numpy()) for k,v in ch.with_row_index("_i").group_by(list(od.VENDOR), maintain_order=True)]
sev0=ch["severity"].to_numpy()
def line(k, **kw):
    s=od._scaled(sev0,k); out=s>=DEFAULT_MIN_SEVERITY
    for key,i,n in groups:
        out[i] |= stands_out(s[i], n, recent=od._scaled(latest.get(key,np.empty(0)),k), **kw)
    return out
import itertools
for fl,gp in [(35,25),(40,25),(45,25),(35,30),(40,30),(35,20)]:
    for k in (0.9,1.0,1.15):
        f,fa,sil,_=od.judge(ch,line(k,small_floor=fl,small_gap=gp))
        print(f"floor {fl} gap {gp} k {k}: {f:.3f} {fa:.1f} {sil}")
