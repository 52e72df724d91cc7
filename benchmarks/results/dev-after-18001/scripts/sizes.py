# The events of miss.py rows and minutes (from the stored rows), found against missed, per kind and world.
#   python sizes.py DIR   (after python miss.py DIR)
import glob, polars as pl, sys
a=pl.read_parquet(sys.argv[1]+'-events.parquet')
def pre(w): return w.replace(' ','_').replace('%','pc').replace('/','_')
out=[]
for (w,p,s),g in a.group_by(['world','profile','seed']):
    f=glob.glob(f"{sys.argv[1]}/{pre(w)}-{p}-{s}-Tail_context.rows.parquet")
    r=pl.read_parquet(f[0])
    c=r.filter(pl.col('event')>=0).group_by('event').agg(pl.len().alias('rows'),(pl.col('Time').max()-pl.col('Time').min()).dt.total_minutes().alias('mins'))
    out.append(g.join(c,left_on='events',right_on='event',how='left'))
b=pl.concat(out)
print('missing sizes', b['rows'].null_count())
pl.Config.set_tbl_rows(300); pl.Config.set_tbl_width_chars(220)
print(b.group_by('kind','found').agg(pl.len(),pl.col('rows').median().alias('rows_med'),pl.col('mins').median().alias('mins_med'),pl.col('maxsev').median().alias('sev_med')).sort('kind','found'))
m=b.filter(~pl.col('found'))
print('missed', m.height, 'of', b.height, '; maxsev<40:', m.filter(pl.col('maxsev')<40).height, ' 40-55:', m.filter(pl.col('maxsev')>=40).height)
print(b.filter(~pl.col("found")).group_by("world","kind").agg(pl.len(),pl.col("rows").median(),pl.col("mins").median(),pl.col("maxsev").median(),pl.col("nm99").median()).sort("world","kind"))
