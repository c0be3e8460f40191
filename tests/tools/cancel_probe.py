#!/usr/bin/env python3
"""Who cancels? Reproduces SQLSTATE 57014 ("canceling statement due to user
request") with nobody cancelling: sessions that take row locks under a 1 ms
lock_timeout (what a sluice group does for every job after its first) now
and then get 57014 instead of 55P03. PostgreSQL implements lock_timeout by
signalling the backend with SIGINT; when that signal is handled after the
timeout's indicator was reset (the lock came just in time, and the next
statement's lock wait started), it reads as a user's cancel.

    tests/tools/cancel_probe.py CONNINFO SECONDS

Measured 2026-12-07 on PostgreSQL 15.18, 12 sessions, 4 hot rows, 60 s:
{'ok': 30144, '55P03': 125506, '57014': 4}. sluice therefore treats a 57014
it did not ask for as "cannot judge now": no attempt counted, never failed.
"""
import collections, random, sys, threading, time
import psycopg
conninfo = sys.argv[1]
with psycopg.connect(conninfo, autocommit=True) as c:
    c.execute("drop table if exists hot; create table hot (id int primary key, v bigint); insert into hot select g, 0 from generate_series(1,4) g")
counts = collections.Counter()
stop = time.time() + float(sys.argv[2])
def run():
    c = psycopg.connect(conninfo, autocommit=True)
    rnd = random.Random()
    while time.time() < stop:
        try:
            with c.transaction():
                c.execute("set local lock_timeout = '1ms'")
                c.execute("update hot set v = v + 1 where id = %s", (rnd.randint(1, 4),))
                c.execute("update hot set v = v + 1 where id = %s", (rnd.randint(1, 4),))
            counts["ok"] += 1
        except psycopg.Error as e:
            counts[e.sqlstate] += 1
ts = [threading.Thread(target=run) for _ in range(12)]
[t.start() for t in ts]; [t.join() for t in ts]
print(dict(counts))
