import sys, polars as pl, numpy as np
from pathlib import Path
from benchmarks import offline_decisions as od
from licanom.detectors import decision as dec
od.NIGHT_CUT_HOUR = 2
files=od.stored([Path(a) for a in sys.argv[1:]])
ch=od._night_chunks(files)
latest=od._latest_severities(files)
groups=[(tuple(k), v["_i"].to_numpy(), v["night"].to_numpy()) for k,v in ch.with_row_index("_i").group_by(list(od.VENDOR), maintain_order=True)]
sev0=ch["severity"].to_numpy()
def run(q, gap, floor, k):
    s=od._scaled(sev0,k); out=s>=dec.DEFAULT_MIN_SEVERITY
    for key,i,n in groups:
        base=dec.stands_out(s[i], n, recent=od._scaled(latest.get(key,np.empty(0)),k), floor=floor, gap=gap)
        if q!=0.9:
            sv=s[i]
            for night in np.unique(n):
                m=(n==night)&~np.isnan(sv)
                if m.sum()>=dec.SMALL_NIGHT_CHUNKS:
                    ref=np.quantile(sv[m],q)
                    base[m]=(sv[m]>=floor)&(sv[m]-ref>=gap)
        out[i]|=base
    return out
line=[]
for k in np.arange(0.7,1.75,0.05):
    f,fa,sil,_=od.judge(ch,run(0.9,20,40,k)); line.append((fa,f))
line.sort()
L=np.array(line)
def at(fa): return float(np.interp(fa,L[:,0],L[:,1]))
print("base k=1:", [round(x,3) for x in od.judge(ch,run(0.9,20,40,1.0))[:3]])
for q,gap,floor in [(0.5,30,40),(0.5,35,40),(0.5,30,45),(0.5,35,45),(0.5,40,40),(0.6,30,40),(0.75,25,40)]:
    res=[]
    for k in (0.9,1.0,1.15,1.3):
        f,fa,sil,_=od.judge(ch,run(q,gap,floor,k))
        res.append(f"k{k}: {f:.3f}/{fa:.1f}/{sil} ({(f-at(fa))*100:+.1f})")
    print(f"q{q} gap{gap} floor{floor}: "+"; ".join(res), flush=True)
print("per world, k=1:")
for q,gap,floor in [(0.9,20,40),(0.5,35,45)]:
    f,fa,sil,pw=od.judge(ch,run(q,gap,floor,1.0))
    x=ch.with_columns(pl.Series("f",run(q,gap,floor,1.0)))
    fw=x.group_by("world").agg(((pl.col("f")&~pl.col("truth")).sum()/pl.len()*1e4).round(1).alias("fa")).sort("world")
    print(q,gap,floor, {w: round(v,3) for w,v in pw.items()}, dict(fw.iter_rows()))
