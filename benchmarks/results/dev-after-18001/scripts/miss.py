# The events of stored night chunks (--chunks-out DIR): per event its kind, whether a flagged chunk held it,
# its largest severity, the top signal of that chunk and the night normal chunks 99th percentile; written
# to DIR-events.parquet (sizes.py reads it).
#   python miss.py DIR
import sys, glob, polars as pl
rows=[]
for f in sorted(glob.glob(sys.argv[1]+'/*Tail_context.parquet')):
    d=pl.read_parquet(f)
    km={}
    for ev,ks in zip(d['events'].to_list(), d['kinds'].to_list()):
        if len(ks)==1:
            for e in ev: km[e]=ks[0]
        elif len(ev)==1: km[ev[0]]=','.join(ks)
    ex=d.explode('events').filter(pl.col('events').is_not_null())
    g=ex.group_by('events').agg(pl.col('is_anomaly').any().alias('found'),pl.col('severity').max().alias('maxsev'),
        pl.col('top_feature').sort_by('severity').last().alias('top'),pl.len().alias('nch'))
    g=g.with_columns(pl.col('events').replace_strict(km,default='?').alias('kind'))
    nm=d.filter(~pl.col('truth'))
    g=g.with_columns(pl.lit(d['world'][0]).alias('world'),pl.lit(d['profile'][0]).alias('profile'),pl.lit(int(d['seed'][0])).alias('seed'),
       pl.lit(nm['severity'].quantile(0.99) if nm.height else None).alias('nm99'), pl.lit(d.height).alias('chunks'), pl.lit(float(d['threshold'][0])).alias('thr'))
    rows.append(g)
a=pl.concat(rows)
a.write_parquet(sys.argv[1].rstrip('/')+'-events.parquet')
m=a.filter(~pl.col('found'))
pl.Config.set_tbl_rows(300); pl.Config.set_tbl_width_chars(220); pl.Config.set_fmt_str_lengths(40)
print(a.group_by('kind').agg(pl.len(),pl.col('found').mean()).sort('kind'))
print(m.sort(['kind','world']).select('world','profile','seed','kind','maxsev','nm99','top','nch','chunks'))
print(m.group_by('kind','top').len().sort('len',descending=True))
