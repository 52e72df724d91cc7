# Offline: the night rule (a night of 30 chunks or more; a night: a UTC day of a pass cut at 02:00) with
# other floors and gaps, flags only added to the stored ones; events found / false alarms per 10,000 normal
# chunks / silent vendors, per generator ("sw", "sec": the folder names before their first "-") and half of
# the seeds.
#   python night.py SWEEP-c SECOND-c
import sys, glob, polars as pl, numpy as np
def run(dirs, floor, gap):
    res={}
    for D in dirs:
      for f in sorted(glob.glob(D+'/*Tail_context.parquet')):
        d=pl.read_parquet(f).with_columns(((pl.col('start_time')-pl.duration(hours=2)).dt.date().cast(pl.Utf8)+'/'+pl.col('start_time').dt.date().cast(pl.Utf8)).alias('night'))
        sev=d['severity'].to_numpy(); fl=d['is_anomaly'].to_numpy().copy()
        for n,idx in d.with_row_index().group_by('night'):
            ii=idx['index'].to_numpy()
            if ii.size>=30:
                q90=np.quantile(sev[ii],0.9)
                fl[ii] |= (sev[ii]>=floor)&(sev[ii]-q90>=gap)
        w=d['world'][0]; s=int(d['seed'][0])
        for key in (w, 'ALL '+D.split('-')[0], f'half{1 if s<=3 else 2} '+D.split('-')[0]):
            r=res.setdefault(key,dict(ev=0,f=0,nm=0,fa=0,sil=0,vend=0))
            ex=d.with_columns(pl.Series('f1',fl)).explode('events').filter(pl.col('events').is_not_null())
            g=ex.group_by('events').agg(pl.col('f1').any())
            t=d['truth'].to_numpy()
            r['ev']+=g.height; r['f']+=int(g['f1'].sum()); r['nm']+=int((~t).sum()); r['fa']+=int((fl&~t).sum())
            if g.height: r['sil']+=int(fl.sum()==0)
    return res
dirs=sys.argv[1:]
base=None
for floor,gap in [(40,20),(35,20),(30,20),(35,25),(30,25),(30,30),(25,30)]:
    r=run(dirs,floor,gap)
    print(f'floor {floor} gap {gap}: '+'  '.join(f"{k}: {v['f']/v['ev']:.3f}/{1e4*v['fa']/v['nm']:.1f}/{v['sil']}" for k,v in sorted(r.items()) if k.startswith(('ALL','half'))))
    if floor==40: base=r
    else:
        print('   per world: '+'  '.join(f"{k[:10]}: {v['f']-base[k]['f']:+d}ev {(v['fa']-base[k]['fa']):+d}fa" for k,v in sorted(r.items()) if not k.startswith(('ALL','half'))))
