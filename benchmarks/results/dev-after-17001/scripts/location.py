# How far the calibration's bulk median lies above the night's normal chunks' median, and what the
# default would find were each vendor's threshold lowered by that gap (a bound from the labels on
# what a better location of the normal bulk could give).
#   python location.py DIR-c
import sys, glob, polars as pl, numpy as np
from licanom.detectors.decision import Calibration
res={}
for f in sorted(glob.glob(sys.argv[1]+'/*Tail_context.parquet')):
    d=pl.read_parquet(f)
    cal=np.load(f.replace('.parquet','.calibration.npy'))
    c=Calibration.fit(cal, scale=3.75)
    nm=d.filter(~pl.col('truth'))
    w=d['world'][0]
    shift=max(c.median-nm['score'].median(),0) if nm.height>=5 else 0.0
    r=res.setdefault(w,dict(ev=0,f0=0,f1=0,nm=0,fa0=0,fa1=0,sil0=0,sil1=0))
    flag1=d['is_anomaly'].to_numpy() | (d['score'].to_numpy()>=d['threshold'].to_numpy()-shift)
    flag0=d['is_anomaly'].to_numpy()
    ex=d.with_columns(pl.Series('f1',flag1)).explode('events').filter(pl.col('events').is_not_null())
    g=ex.group_by('events').agg(pl.col('is_anomaly').any().alias('a0'),pl.col('f1').any().alias('a1'))
    r['ev']+=g.height; r['f0']+=g['a0'].sum(); r['f1']+=g['a1'].sum()
    t=d['truth'].to_numpy(); r['nm']+=(~t).sum(); r['fa0']+=(flag0&~t).sum(); r['fa1']+=(flag1&~t).sum()
    if g.height: r['sil0']+= (flag0.sum()==0); r['sil1']+=(flag1.sum()==0)
for w,r in sorted(res.items()):
    print(f"{w:20s} ev {r['ev']:4d} found {r['f0']/r['ev']:.3f} -> {r['f1']/r['ev']:.3f}  FA/10k {1e4*r['fa0']/r['nm']:.1f} -> {1e4*r['fa1']/r['nm']:.1f} silent {r['sil0']} -> {r['sil1']}")
