import sys, polars as pl, numpy as np
from pathlib import Path
from benchmarks import offline_decisions as od
od.NIGHT_CUT_HOUR = 2
ks=[float(x) for x in sys.argv[1].split(",")]
files=od.stored([Path(a) for a in sys.argv[2:]])
ch=od._night_chunks(files)
latest=od._latest_severities(files)
for k in ks:
    f,fa,sil,pw=od.judge(ch,od._tail_scale_line(ch,latest,k))
    print(f"k={k}: {f:.3f} {fa:.1f} {sil}  "+", ".join(f"{w[:8]} {v:.2f}" for w,v in pw.items()))
