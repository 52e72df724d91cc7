# The night chunks of two runs (--chunks-out folders) compared vendor by vendor: chunks whose severity
# changed, and flags gained or lost on anomalous (truth) and normal chunks.
#   python compare.py BEFORE-c AFTER-c
import sys, glob, os, polars as pl
a,b=sys.argv[1],sys.argv[2]
tot=dict(new_t=0,new_f=0,lost_t=0,lost_f=0,sev_changed=0,vendors=0)
for f in sorted(glob.glob(a+'/*Tail_context.parquet')):
    g=os.path.join(b,os.path.basename(f))
    x=pl.read_parquet(f); y=pl.read_parquet(g)
    assert x.height==y.height
    fa,fb=x['is_anomaly'],y['is_anomaly']; t=x['truth']
    ch=(x['severity']-y['severity']).abs()>1e-6
    if ch.any(): tot['vendors']+=1; tot['sev_changed']+=int(ch.sum())
    tot['new_t']+=int((~fa&fb&t).sum()); tot['new_f']+=int((~fa&fb&~t).sum()); tot['lost_t']+=int((fa&~fb&t).sum()); tot['lost_f']+=int((fa&~fb&~t).sum())
    if ch.any(): print(os.path.basename(f), int(ch.sum()), 'changed; flags', int(fa.sum()),'->',int(fb.sum()), 'truth of changed', int((ch&t).sum()))
print(tot)
