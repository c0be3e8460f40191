"""What a group of transfer jobs costs PostgreSQL, by the shape of its statements.

Run by tests/bench/group-shapes on a throwaway PostgreSQL. pgbench sends a
group of --group transfer jobs as one pipeline (begin ... commit, like the
worker), from two clients, over 100,000 accounts, in three shapes:

  statements    what the worker sends: a ledger.transfer() call per job, then
                a ledger row per job (sluice.jobs, with the stored result);
  batched-rows  the same calls, and the group's ledger rows in one insert
                (unnest of arrays);
  one-call      one call of a PL/pgSQL function that runs the group's
                transfers (arrays in, a row per job out), and the rows in one
                insert: the "whole group as one server-side call" design,
                with the ledger rows kept.

The shapes alternate for --rounds rounds of --seconds each. Prints, per shape
and round, groups/s, jobs/s and PostgreSQL's CPU per job (the postmaster and
all its processes, over the round).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import find_pgbench, proc_tree_cpu_seconds  # noqa: E402

ACCOUNTS = 100000
RESULT = ('{"specversion":"1.0","id":"r","source":"sluice","type":"ledger.transfer.result",'
          '"subject":"j","time":"2026-12-07T15:00:00.000Z","datacontenttype":"application/json",'
          '"data":{"status":"succeeded","output":{"from":"acct-1","to":"acct-2","amount":5,'
          '"from_balance":999995,"to_balance":1000005}}}')
RECORD_TAIL = ("on conflict (source, id) do update set status = excluded.status, result = excluded.result, "
               "finished_at = now(), attempts = sluice.jobs.attempts + excluded.attempts where "
               "case when sluice.jobs.status in ('running', 'failed') then true "
               "else sluice.job_final(sluice.jobs.source, sluice.jobs.id, sluice.jobs.status) end;")
# The group's transfers in one call: ledger.transfer() for each, a row each.
TRANSFER_MANY = """
create schema if not exists bench_shapes;
create or replace function bench_shapes.transfer_many(p_source text, p_ids text[], p_from text[], p_to text[],
                                                 p_amount bigint[])
returns table (code text, from_balance bigint, to_balance bigint)
language plpgsql as $$
begin
    for i in 1 .. coalesce(array_length(p_ids, 1), 0) loop
        select t.code, t.from_balance, t.to_balance into code, from_balance, to_balance
            from ledger.transfer(p_source, p_ids[i], p_from[i], p_to[i], p_amount[i]) t;
        return next;
    end loop;
end $$;
"""


def script(shape, n):
    """The pgbench script of one group in this shape."""
    out = []
    for k in range(n):
        out += [f"\\set f{k} random(0, {ACCOUNTS - 1})", f"\\set j{k} random(1, 1000000000000000)"]
    out += ["\\startpipeline", "begin;"]
    job = "'g' || :j{k}"
    frm = "'acct-' || :f{k}"
    to = f"'acct-' || ((:f{{k}} + 1) % {ACCOUNTS})"
    res = "'" + RESULT + "'"

    def arr(fmt):
        return "array[" + ", ".join(fmt.replace("{k}", str(k)) for k in range(n)) + "]"
    if shape == "one-call":
        out.append("select * from bench_shapes.transfer_many('bench', " + arr(job) + ", " + arr(frm) + ", "
                   + arr(to) + ", " + arr("5::bigint") + ");")
    else:
        for k in range(n):
            out.append(f"select code, from_balance, to_balance from ledger.transfer('bench', "
                       f"{job.replace('{k}', str(k))}, {frm.replace('{k}', str(k))}, "
                       f"{to.replace('{k}', str(k))}, 5::bigint);")
    if shape == "statements":
        for k in range(n):
            out.append("insert into sluice.jobs (source, id, type, status, result, attempts, finished_at) "
                       f"values ('bench', {job.replace('{k}', str(k))}, 'ledger.transfer', 'succeeded', {res}, 1, "
                       "now()) " + RECORD_TAIL)
    else:
        out.append("insert into sluice.jobs (source, id, type, status, result, attempts, finished_at) "
                   "select 'bench', u.id, 'ledger.transfer', 'succeeded', u.r, 1, now() from unnest("
                   + arr(job) + ", " + arr(res) + ") as u(id, r) " + RECORD_TAIL)
    out += ["commit;", "\\endpipeline"]
    return "\n".join(out) + "\n"


def postmaster_pid(conn):
    data = conn.execute("show data_directory").fetchone()[0]
    with open(os.path.join(data, "postmaster.pid")) as f:
        return int(f.readline())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conninfo", default=os.environ.get("SLUICE_PG_CONNINFO"))
    ap.add_argument("--group", type=int, default=32, help="jobs per group (default 32, the worker's max_batch)")
    ap.add_argument("--seconds", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=2)
    args = ap.parse_args()
    if not args.conninfo:
        sys.exit("group_shapes: no --conninfo and no SLUICE_PG_CONNINFO")
    pgbench = find_pgbench()
    if pgbench is None:
        sys.exit("group_shapes: pgbench not found; run 'make deps'")
    with psycopg.connect(args.conninfo, autocommit=True) as c:
        if c.execute("select to_regclass('ledger.accounts')").fetchone()[0] is None:
            sys.exit("group_shapes: no ledger schema; tests/bench/group-shapes migrates it")
        c.execute("truncate ledger.transfers, sluice.jobs")
        c.execute("delete from ledger.accounts")
        c.execute(f"insert into ledger.accounts select 'acct-' || g, 1000000000 from generate_series(0, {ACCOUNTS - 1}) g")
        c.execute("vacuum analyze ledger.accounts")
        c.execute(TRANSFER_MANY)
        pm = postmaster_pid(c)
    shapes = ["statements", "batched-rows", "one-call"]
    results = {s: [] for s in shapes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for shape in (shapes if r % 2 == 0 else shapes[::-1]):
                path = os.path.join(tmp, shape + ".sql")
                with open(path, "w") as f:
                    f.write(script(shape, args.group))
                cpu0 = proc_tree_cpu_seconds(pm)
                t0 = time.time()
                p = subprocess.run([pgbench, "-n", "-M", "prepared", "-c", str(args.clients), "-j",
                                    str(args.clients), "-T", str(args.seconds), "--max-tries=20", "-f", path,
                                    args.conninfo], capture_output=True, text=True)
                wall = time.time() - t0
                # pgbench's sessions end with it: once the postmaster has
                # reaped their backends, their CPU is in its children's.
                time.sleep(1)
                cpu1 = proc_tree_cpu_seconds(pm)
                tx = [line for line in p.stdout.splitlines() if line.startswith("number of transactions actually processed")]
                if p.returncode != 0 or not tx:
                    sys.exit(f"group_shapes: pgbench failed ({shape}):\n{p.stdout}\n{p.stderr}")
                groups = int(tx[0].split(":")[1].split("/")[0])
                jobs = groups * args.group
                row = {"groups_per_s": groups / wall, "jobs_per_s": jobs / wall,
                       "pg_us_per_job": (cpu1 - cpu0) * 1e6 / jobs}
                results[shape].append(row)
                print(f"round {r + 1} {shape:<13} {row['groups_per_s']:7.1f} groups/s {row['jobs_per_s']:8.0f} jobs/s "
                      f"PostgreSQL {row['pg_us_per_job']:6.1f} us/job", flush=True)
                with psycopg.connect(args.conninfo, autocommit=True) as c:
                    c.execute("truncate ledger.transfers, sluice.jobs")
    with psycopg.connect(args.conninfo, autocommit=True) as c:
        c.execute("drop schema bench_shapes cascade")
    print(f"\n{'shape':<13} {'groups/s (median)':>18} {'jobs/s':>8} {'PostgreSQL us/job':>18}")
    for shape in shapes:
        rs = results[shape]
        print(f"{shape:<13} {statistics.median(r['groups_per_s'] for r in rs):18.1f} "
              f"{statistics.median(r['jobs_per_s'] for r in rs):8.0f} "
              f"{statistics.median(r['pg_us_per_job'] for r in rs):18.1f}")


if __name__ == "__main__":
    main()
