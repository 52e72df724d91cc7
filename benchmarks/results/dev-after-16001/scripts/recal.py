"""Offline: calibration refitted before each night on the training calibration scores and the
vendor's earlier nights' scores (a window of the last W scores), the default decision on top."""
import sys, polars as pl, numpy as np
from pathlib import Path
from benchmarks import offline_decisions as od
from licanom.detectors.decision import DEFAULT_MIN_SEVERITY, stands_out, Calibration
from licanom.detectors.context import TAIL_SCALE_NATS
od.NIGHT_CUT_HOUR = 2
files=od.stored([Path(a) for a in sys.argv[1:]])
ch=pl.concat(pl.read_parquet(f).select(*od.VENDOR,"severity","score","start_time","truth","events",
     ((pl.col("chunk") == 0).cum_sum() * 1_000_000 + pl.col("start_time").dt.epoch("d")).alias("night"),
     (pl.col("chunk") == 0).cum_sum().alias("pass")) for f in files)
cals=od._calibration_scores(files)
groups=[(tuple(k), v["_i"].to_numpy(), v["night"].to_numpy(), v["pass"].to_numpy(), v["score"].to_numpy()) for k,v in ch.with_row_index("_i").group_by(list(od.VENDOR), maintain_order=True)]
sev0=ch["severity"].to_numpy()
def severities(mode, window):
    out=sev0.copy()
    if mode=="stored": return out
    for key,i,n,p,sc in groups:
        base=cals[key]
        for pi in np.unique(p):
            m=p==pi
            earlier=sc[p<pi]
            ref=np.r_[base, earlier]
            if window: ref=ref[-window:]
            cal=Calibration.fit(ref, scale=TAIL_SCALE_NATS)
            out[i[m]]=cal.severity(sc[m])
    return out
def decide(sev,k):
    s=od._scaled(sev,k); out=s>=DEFAULT_MIN_SEVERITY
    for key,i,n,p,sc in groups:
        rec=Calibration.fit(cals[key],scale=TAIL_SCALE_NATS).recent_severity()
        out[i] |= stands_out(s[i], n, recent=od._scaled(rec,k))
    return out
# check: refit on base alone reproduces stored severity
chk=severities("x",0)
for mode,w in [("stored",0),("grow",0),("grow",400),("grow",150)]:
    sev=severities(mode,w) if mode!="stored" else sev0
    for k in (0.9,1.0,1.15):
        f,fa,sil,_=od.judge(ch,decide(sev,k))
        print(f"{mode} w={w} k={k}: {f:.3f} {fa:.1f} {sil}", flush=True)
