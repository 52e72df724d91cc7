# How often the daily job's rule (licanom.detectors.context._daily_job) fires on training chunks set aside at
# random, no job among them (400 draws per setting: days, chunks a day, share set aside), and on two
# constructed cases: a vendor whose traffic lies in two hours, and a job at 03:00 every day.
#   python chance.py [MARGIN] [MIN_DAYS]   (defaults: JOB_MARGIN, JOB_MIN_DAYS; 1.0 7 for the figures on 7 days)
import numpy as np, sys
from licanom.detectors.context import JOB_MARGIN, JOB_MIN_DAYS, _daily_job
rng=np.random.default_rng(0)
M=float(sys.argv[1]) if len(sys.argv) > 1 else JOB_MARGIN
D=int(sys.argv[2]) if len(sys.argv) > 2 else JOB_MIN_DAYS
for n_days in (5,7,10,14,21):
  for per_day in (6,24,48):
    for p in (0.1,0.2,0.3):
      fired=0
      for trial in range(400):
        days=np.repeat(np.arange(20000,20000+n_days),per_day)+np.tile((np.arange(per_day)+rng.uniform(0,1,per_day))/per_day,n_days)
        keep=rng.uniform(size=days.size)>p
        fired+=_daily_job(keep,days,margin=M,min_days=D).any()
      print(n_days,per_day,p,fired/400)
# two-hour vendor: 14 days x 12 chunks 09:00-10:55, 8 flood days
days=np.repeat(np.arange(20000,20014),12)+np.tile((9+np.arange(12)/6)/24,14)
keep=np.ones(days.size,bool); keep[rng.choice(days.size,28,replace=False)]=False
print('two-hour vendor rejoined', _daily_job(keep,days).sum())
# a job: 24/day, job at 3:00 every day + 10% random
days=np.repeat(np.arange(20000,20014),24)+np.tile((np.arange(24)+0.3)/24,14)
keep=rng.uniform(size=days.size)>0.1; keep[3::24]=False
print('job rejoined', _daily_job(keep,days)[3::24].sum(), 'of 14; others', _daily_job(keep,days).sum()-_daily_job(keep,days)[3::24].sum())
print('integer days', _daily_job(keep,np.floor(days)).sum())
