"""The worker through PgBouncer in transaction pooling mode (Debian 12's 1.18,
which knows nothing of named prepared statements), with postgres.pooling =
"transaction": the ledger in per-job and grouped modes, the crash invariants
under SIGKILLs and a PostgreSQL restart behind PgBouncer, a SQL handler with
the outbox relay, sluicectl, and what goes wrong with the default setting.

tests/services up starts PgBouncer with default_pool_size 4, and the workers
here run 8 executors, so executors share server sessions: anything sluice
left in a session (a prepared statement, a SET) would be seen by another
executor, or missed by its own next transaction.
"""
import json
import os
import random
import re
import subprocess
import time

import psycopg
import pytest

from harness import BIN, Worker, cloudevent, conf_text, migrate, read_results
from test_outbox import OUTBOX, FAST_GROUP, topic_messages, wait_until
from test_sql_handlers import SqlEnv
from test_worker import Env, batch_modes

EXECUTORS = 8  # more than PgBouncer's default_pool_size (4)


@pytest.fixture(scope="session")
def bouncer_conninfo():
    value = os.environ.get("SLUICE_PGBOUNCER_CONNINFO")
    if not value:
        pytest.fail("SLUICE_PGBOUNCER_CONNINFO is not set; run the system tests through tests/run-system "
                    "(tests/services up starts PgBouncer; 'make deps' installs it)")
    return value


def through(bouncer_conninfo, pg):
    """pg's database, reached through PgBouncer."""
    return re.sub(r"\bdbname=\S+", f"dbname={pg.dbname}", bouncer_conninfo)


def pooled(text, conninfo, pooling="transaction"):
    """A worker.conf text from conf_text() pointed at `conninfo` with
    postgres.pooling set."""
    out, n = re.subn(r"postgres: \{ conninfo = .*?; \};",
                     lambda _: f"postgres: {{ conninfo = {json.dumps(conninfo)}; pooling = \"{pooling}\"; }};",
                     text)
    assert n == 1
    return out


class BouncerEnv(Env):
    """test_worker.Env whose workers (and migrations) go through PgBouncer."""

    def __init__(self, kafka, pg, tmp_path, conninfo, pooling="transaction"):
        self.via, self.pooling = conninfo, pooling
        super().__init__(kafka, pg, tmp_path)

    def worker(self, **kw):
        self.n += 1
        conf = self.tmp / f"worker{self.n}.conf"
        conf.write_text(pooled(conf_text(self.kafka.brokers, self.pg.conninfo, [self.jobs], self.results,
                                         self.dlq, self.group, **kw), self.via, self.pooling))
        w = Worker(conf, self.tmp / f"worker{self.n}.log")
        self.workers.append(w)
        return w


@pytest.fixture
def benv(kafka, pg, tmp_path, bouncer_conninfo, monkeypatch):
    # sluicectl migrate through PgBouncer too (Env.__init__ migrates).
    monkeypatch.setattr("test_worker.migrate", lambda _: migrate(through(bouncer_conninfo, pg)))
    e = BouncerEnv(kafka, pg, tmp_path, through(bouncer_conninfo, pg))
    yield e
    e.kill_all()


def run(env, n, chaos=None, max_batch=1):
    """test_worker.run_ledger with EXECUTORS executors."""
    from test_worker import run_ledger
    return run_ledger(env, n, chaos=chaos, executors=EXECUTORS, max_batch=max_batch)


@batch_modes
def test_transfers(benv, max_batch):
    res, ids = run(benv, 3_000, max_batch=max_batch)
    benv.check_ledger(res, ids)
    assert res.status_counts().get("failed", 0) == 0, res.status_counts()
    # A clean run publishes each result once.
    assert len(res.raw) == len(ids)
    log = benv.workers[0].log()
    assert "prepared statement" not in log, log[-3000:]


def restart_postgres():
    services = os.environ["SLUICE_SERVICES_DIR"]
    version = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v))[-1]
    # -l: the restarted server must not inherit our pipes.
    cmd = [f"/usr/lib/postgresql/{version}/bin/pg_ctl", "-D", f"{services}/pg/data", "-l",
           f"{services}/pg/server.log", "-m", "fast", "-w", "restart"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@batch_modes
def test_kills_and_a_postgres_restart(benv, max_batch):
    """SIGKILL the worker twice (restarting it), then restart PostgreSQL
    behind PgBouncer: no job lost or applied twice, every copy of a result
    the same as the ledger's."""
    def chaos(ws, env, ids):
        rnd = random.Random(11)
        for _ in range(2):
            time.sleep(rnd.uniform(0.5, 1.5))
            ws[0].kill()
            ws[0] = env.worker(executors=EXECUTORS, max_batch=max_batch).start()
        time.sleep(1.0)
        restart_postgres()
        env.pg.reconnect()
    res, ids = run(benv, 4_000, chaos=chaos, max_batch=max_batch)
    benv.check_ledger(res, ids)
    assert res.status_counts().get("failed", 0) == 0, res.status_counts()
    # The published results are the ledger's, byte for byte.
    stored = dict(benv.pg.query("select id, result from sluice.jobs where id = any(%s)", ids))
    for j in ids:
        assert res.by_job[j][0][0].decode() == stored[j], j


def test_prepared_statements_break_through_pgbouncer(kafka, pg, tmp_path, bouncer_conninfo):
    """What users report: with the default (postgres.pooling = "none"), the
    executors' named statements meet each other on PgBouncer's shared
    server sessions ("prepared statement "s0" already exists" / "does not
    exist"), and jobs wait instead of running."""
    env = BouncerEnv(kafka, pg, tmp_path, through(bouncer_conninfo, pg), pooling="none")
    try:
        env.open_accounts()
        w = env.worker(executors=EXECUTORS, max_batch=1).start()
        # kv logs escape the quotes: prepared statement \"s0\" already exists
        w.wait_for_log("prepared statement", timeout=60)
    finally:
        env.kill_all()


FUNCTIONS = """
create schema app;
create table app.done (id text primary key, n bigint, follow boolean);
-- Records the job; a job with data.follow enqueues its follow-up (relayed
-- back through the outbox) in the same transaction.
create function app.rec(job jsonb) returns jsonb language plpgsql as $$
begin
  insert into app.done values (job->>'id', (job->'data'->>'n')::bigint, (job->'data'->>'follow')::boolean);
  if (job->'data'->>'follow')::boolean then
    perform sluice.enqueue('o.rec', jsonb_build_object('n', (job->'data'->>'n')::bigint + 1000000,
                                                       'follow', false), job->>'key');
  end if;
  return '{}';
end $$;
"""


def test_sql_handler_and_outbox_relay(kafka, pg, tmp_path, bouncer_conninfo, monkeypatch):
    """Jobs enqueued through PgBouncer are relayed (the relay's connection
    goes through it too), run by a sql: handler in grouped mode, and each
    enqueues a follow-up from inside its own transaction: every job and
    follow-up runs exactly once. sluicectl outbox works through it."""
    via = through(bouncer_conninfo, pg)
    monkeypatch.setattr("test_worker.migrate", lambda _: migrate(via))
    env = SqlEnv(kafka, pg, tmp_path, {"o.rec": "sql:app.rec"})
    try:
        pg.query(FUNCTIONS)
        conf_worker = env.worker

        def worker(**kw):
            w = conf_worker(**kw)
            with open(w.conf_path) as f:
                text = f.read()
            with open(w.conf_path, "w") as f:
                f.write(pooled(text, via))
            return w
        n = 300
        # Unnamed statements only: psycopg would prepare after 5 runs.
        with psycopg.connect(via, autocommit=True, prepare_threshold=None) as c:
            for i in range(n):
                c.execute("select sluice.enqueue('o.rec', %s::jsonb, %s)",
                          (json.dumps({"n": i, "follow": True}), f"k{i % 16}"))
        w = worker(executors=EXECUTORS, max_batch=32, extra=OUTBOX, consumer_properties=FAST_GROUP).start()
        wait_until(lambda: pg.scalar("select count(*) from app.done") >= 2 * n, 90,
                   "every job and follow-up to run")
        res = read_results(kafka, env.results, 2 * n, timeout=60)
        assert len(res.by_job) == 2 * n
        assert res.status_counts() == {"succeeded": 2 * n}, res.status_counts()
        assert pg.scalar("select count(*) from app.done") == 2 * n
        assert pg.scalar("select count(distinct n) from app.done") == 2 * n
        wait_until(lambda: pg.scalar("select count(*) from sluice.outbox") == 0, 30, "the outbox to drain")
        r = subprocess.run([str(BIN / "sluicectl"), "outbox", "--conninfo", via], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and "outbox: 0 rows" in r.stdout, r.stderr + r.stdout
        assert w.stop(60) == 0, w.log()[-3000:]
        assert "prepared statement" not in w.log()
    finally:
        env.kill_all()
