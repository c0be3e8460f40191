"""Enqueue from PostgreSQL (schemas/sql/0006_outbox.sql, 0007_schedules.sql,
common/relay.c): the transactional outbox under concurrent producers and a
relaying worker killed again and again, delayed and cancelled jobs,
recurring jobs across several workers and kills, follow-up chains in SQL
handlers, dead letters for bad data, argument errors and lease fencing."""
import datetime
import json
import random
import re
import signal
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

from harness import BIN, ROOT, Worker, conf_text, read_results
from test_sql_handlers import SqlEnv

# A short lease, so that a killed relay's shard is taken over quickly; a
# short poll, for the delayed-job tolerance; a short session, so that a
# killed member leaves the group quickly.
OUTBOX = "outbox: { poll_interval = 0.05; lease_ttl = 3.0; };"
FAST_GROUP = ("session.timeout.ms=6000", "heartbeat.interval.ms=500")

FUNCTIONS = """
create schema app;
create table app.done (id text primary key, key text, n bigint, at timestamptz not null default clock_timestamp());
create function app.rec(job jsonb) returns jsonb language plpgsql as $$
begin
  insert into app.done (id, key, n) values (job->>'id', job->>'key', (job->'data'->>'n')::bigint);
  return '{}';
end $$;
"""


def outbox_env(kafka, pg, tmp_path, types, extra=None, partitions=6):
    env = SqlEnv(kafka, pg, tmp_path, types, extra, partitions=partitions)
    return env


def start_worker(env, **kw):
    kw.setdefault("extra", OUTBOX)
    kw.setdefault("consumer_properties", FAST_GROUP)
    return env.worker(**kw).start()


def wait_until(pred, timeout, what, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def topic_messages(kafka, topic, expected=None, timeout=120):
    """Every message of topic, in partition order, until `expected` messages
    (or 2 s of nothing new)."""
    return kafka.consume(topic, count=expected, timeout=timeout, idle=None if expected else 2.0)


# ---- the crash test ----------------------------------------------------------

PRODUCERS = 8
ENQUEUES = 50_000
KILLS = 10
KEYS = 64


def test_outbox_exactly_once_in_effect_under_kills(kafka, pg, tmp_path):
    """8 sessions enqueue 50,000 jobs in transactions of 1-5, a third rolled
    back, each waiting a random moment before its commit so that commits
    interleave out of xid order, while the relaying worker is SIGKILLed 10
    times (and restarted). Every committed job runs exactly once (one ledger
    row, one effect row, results only for it, all copies alike), no
    rolled-back one runs, and per key the jobs are first delivered in the
    order their transactions got their xids."""
    env = outbox_env(kafka, pg, tmp_path, {"o.rec": "sql:app.rec"})
    try:
        pg.query(FUNCTIONS)
        worker = [start_worker(env, max_batch=32)]
        committed = []          # (xid, index in tx, id, key)
        rolled_back = []
        lock = threading.Lock()
        done_producing = threading.Event()
        per_producer = ENQUEUES // PRODUCERS
        errors = []

        def produce(p):
            rnd = random.Random(p)
            conn = psycopg.connect(pg.conninfo, autocommit=False)
            try:
                made = 0
                while made < per_producer:
                    n = min(rnd.randint(1, 5), per_producer - made)
                    with conn.cursor() as cur:
                        cur.execute("select pg_current_xact_id()::text")
                        xid = int(cur.fetchone()[0])
                        rows = []
                        for i in range(n):
                            key = f"k{rnd.randrange(KEYS)}"
                            cur.execute("select sluice.enqueue('o.rec', %s::jsonb, %s)",
                                        (json.dumps({"n": p * 10_000_000 + made + i, "p": p}), key))
                            rows.append((xid, i, cur.fetchone()[0], key))
                    made += n
                    time.sleep(rnd.uniform(0, 0.02))
                    if rnd.random() < 1 / 3:
                        conn.rollback()
                        with lock:
                            rolled_back.extend(r[2] for r in rows)
                    else:
                        conn.commit()
                        with lock:
                            committed.extend(rows)
            except Exception as e:  # reported by the main thread
                errors.append(repr(e))
            finally:
                conn.close()

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
        started = time.time()
        for t in threads:
            t.start()

        # Kill the relaying worker while it relays, ten times.
        for k in range(KILLS):
            w = worker[-1]
            w.wait_for_log("outbox relay: relaying shard 0", timeout=60)
            time.sleep(random.uniform(0.3, 1.5))
            w.signal(signal.SIGKILL)
            w.wait(30)
            worker.append(start_worker(env, max_batch=32))
        for t in threads:
            t.join(timeout=300)
        produce_seconds = time.time() - started
        assert not errors, errors
        assert len(committed) + len(rolled_back) == per_producer * PRODUCERS

        wait_until(lambda: pg.scalar("select count(*) from sluice.outbox") == 0, 120, "an empty outbox")
        ids = {r[2] for r in committed}
        wait_until(lambda: pg.scalar("select count(*) from app.done") >= len(ids), 120, "every job's effect")
        res = read_results(kafka, env.results, len(ids), timeout=120)
        assert worker[-1].stop(30) == 0, worker[-1].log()[-3000:]

        # Exactly once in effect: one ledger row and one effect row per
        # committed job, none for a rolled-back one.
        assert pg.scalar("select count(*) from app.done") == len(ids)
        assert pg.scalar("select count(*) from sluice.jobs where status = 'succeeded'") == len(ids)
        done = {r[0] for r in pg.query("select id from app.done")}
        assert done == ids
        rb = set(rolled_back)
        assert not (done & rb)
        assert set(res.by_job) == ids
        res.assert_copies_identical()

        # Per-key order of first delivery = (xid, index in its transaction).
        want = {}
        for xid, i, job_id, key in sorted(committed):
            want.setdefault(key, []).append(job_id)
        msgs = topic_messages(kafka, env.jobs, timeout=120)
        first = {}
        seen = set()
        for m in msgs:
            ev = json.loads(m.value())
            assert ev["specversion"] == "1.0" and ev["type"] == "o.rec" and ev["source"] == "sluice.outbox"
            assert ev["id"] not in rb, "a rolled-back job was sent"
            if ev["id"] in seen:
                continue
            seen.add(ev["id"])
            first.setdefault(m.key().decode(), []).append(ev["id"])
        assert seen == ids
        for key, order in want.items():
            assert first[key] == order, f"key {key}: first deliveries out of xid order"
        print(f"\n{len(ids)} committed, {len(rb)} rolled back, {len(msgs)} messages "
              f"({len(msgs) - len(ids)} resent), producing took {produce_seconds:.1f}s")
    finally:
        env.kill_all()


def test_fatal_idempotence_error_stops_the_worker_and_loses_nothing(kafka, pg, tmp_path):
    """A fatal error of the relay's idempotent producer (raised on cue with
    librdkafka's rd_kafka_test_fatal_error()) stops relaying and the worker
    exits 1, never continuing silently; the rows it had not deleted are sent
    by the next worker, and every job runs once."""
    env = outbox_env(kafka, pg, tmp_path, {"o.rec": "sql:app.rec"}, partitions=2)
    try:
        pg.query(FUNCTIONS)
        ids = [r[0] for r in pg.query("select sluice.enqueue('o.rec', jsonb_build_object('n', g), 'k' || g % 3) "
                                      "from generate_series(1, 50) g")]
        w = env.worker(extra="outbox: { poll_interval = 0.05; lease_ttl = 3.0; batch = 20; };",
                       consumer_properties=FAST_GROUP)
        w.env["SLUICE_TEST_RELAY_FATAL_AFTER"] = "20"
        w.start()
        assert w.wait(60) == 1, w.log()[-3000:]
        assert "fatal kafka error in the outbox relay's producer" in w.log()
        assert pg.scalar("select count(*) from sluice.outbox") >= 30
        w2 = start_worker(env)
        wait_until(lambda: pg.scalar("select count(*) from app.done") == 50, 60, "every job")
        # A row is deleted after its delivery is acknowledged, which can be
        # after its job ran.
        wait_until(lambda: pg.scalar("select count(*) from sluice.outbox") == 0, 30, "an empty outbox")
        assert {r[0] for r in pg.query("select id from app.done")} == set(ids)
        assert w2.stop(30) == 0
    finally:
        env.kill_all()


def test_shards_spread_over_workers(kafka, pg, tmp_path):
    """4 shards, 3 workers: each worker relays its fair share (2, 1, 1 or
    so; never a shard twice), a stopped worker's shards go to the others,
    and jobs from 4 concurrent sessions run once each, in xid order per
    key."""
    env = outbox_env(kafka, pg, tmp_path, {"o.rec": "sql:app.rec"}, partitions=4)
    try:
        pg.query(FUNCTIONS)
        pg.query("select sluice.outbox_set_shards(4)")
        workers = [start_worker(env) for _ in range(3)]

        def holders():
            return pg.query("select holder from sluice.outbox_leases where holder is not null "
                            "and expires_at > now() order by shard")

        wait_until(lambda: len(holders()) == 4 and len({h for (h,) in holders()}) == 3, 30,
                   "4 shards held by 3 workers")
        committed, lock = [], threading.Lock()

        def produce(p):
            rnd = random.Random(100 + p)
            with psycopg.connect(pg.conninfo, autocommit=False) as conn:
                for _ in range(400):
                    xid = int(conn.execute("select pg_current_xact_id()::text").fetchone()[0])
                    rows = []
                    for i in range(rnd.randint(1, 3)):
                        key = f"k{rnd.randrange(40)}"
                        rows.append((xid, i, conn.execute("select sluice.enqueue('o.rec', '{}', %s)",
                                                          (key,)).fetchone()[0], key))
                    time.sleep(rnd.uniform(0, 0.005))
                    if rnd.random() < 0.25:
                        conn.rollback()
                    else:
                        conn.commit()
                        with lock:
                            committed.extend(rows)

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
        for t in threads:
            t.start()
        time.sleep(1)
        assert workers[0].stop(30) == 0  # its shards move to the others
        for t in threads:
            t.join(120)
        ids = {r[2] for r in committed}
        wait_until(lambda: pg.scalar("select count(*) from app.done") >= len(ids), 60, "every job")
        wait_until(lambda: len({h for (h,) in holders()}) == 2 and len(holders()) == 4, 30,
                   "4 shards held by the 2 workers left")
        assert {r[0] for r in pg.query("select id from app.done")} == ids
        assert pg.scalar("select count(*) from app.done") == len(ids)
        want = {}
        for xid, i, job_id, key in sorted(committed):
            want.setdefault(key, []).append(job_id)
        first, seen = {}, set()
        for m in topic_messages(kafka, env.jobs, timeout=60):
            job_id = json.loads(m.value())["id"]
            if job_id not in seen:
                seen.add(job_id)
                first.setdefault(m.key().decode(), []).append(job_id)
        assert first == want
        for w in workers[1:]:
            assert w.stop(30) == 0
    finally:
        env.kill_all()


def test_shard_count_changes_only_while_empty(pg):
    from harness import migrate
    migrate(pg.conninfo)
    with pytest.raises(psycopg.Error) as e:
        pg.query("select sluice.outbox_set_shards(0)")
    assert e.value.sqlstate == "22023"
    pg.query("select sluice.enqueue('t', '{}')")
    with pytest.raises(psycopg.Error) as e:
        pg.query("select sluice.outbox_set_shards(2)")
    assert "while the outbox holds rows" in str(e.value)
    pg.query("delete from sluice.outbox")
    pg.query("select sluice.outbox_set_shards(3)")
    assert pg.query("select shard from sluice.outbox_leases order by shard") == [(0,), (1,), (2,)]
    # Fair shares: 3 shards over 2 relays alive is 2 and 1, by name.
    assert pg.scalar("select sluice.outbox_heartbeat('b', interval '10 seconds')") == 3
    assert pg.scalar("select sluice.outbox_heartbeat('a', interval '10 seconds')") == 2
    assert pg.scalar("select sluice.outbox_heartbeat('b', interval '10 seconds')") == 1


# ---- delayed jobs ----------------------------------------------------------------

def test_delayed_jobs_fire_on_time_and_cancelled_ones_never(kafka, pg, tmp_path):
    env = outbox_env(kafka, pg, tmp_path, {"o.rec": "sql:app.rec"}, partitions=2)
    try:
        pg.query(FUNCTIONS)
        w = start_worker(env)
        w.wait_for_log("outbox relay: relaying shard 0", timeout=60)
        w.wait_for_log("assigned", timeout=60)  # the consumer's first assignment
        jobs = {}
        for i in range(20):
            delay = 1.5 + (i % 5) * 0.5
            row = pg.query("select sluice.enqueue('o.rec', %s::jsonb, %s, run_at => clock_timestamp() + %s * "
                           "interval '1 second'), clock_timestamp() + %s * interval '1 second'",
                           json.dumps({"n": i}), f"d{i % 3}", delay, delay)[0]
            jobs[row[0]] = row[1]
        cancelled = list(jobs)[::4]
        for job_id in cancelled:
            assert pg.scalar("select sluice.cancel(%s)", job_id) is True
            assert pg.scalar("select sluice.cancel(%s)", job_id) is False
        assert pg.scalar("select sluice.cancel('no-such-job')") is False
        expect = set(jobs) - set(cancelled)
        wait_until(lambda: pg.scalar("select count(*) from app.done") >= len(expect), 30, "the delayed jobs")
        time.sleep(2)
        rows = dict(pg.query("select id, at from app.done"))
        assert set(rows) == expect
        late = sorted((rows[j] - jobs[j]).total_seconds() for j in expect)
        assert late[0] >= -0.001, f"a job ran {late[0]}s before its run_at"
        # Run, not just sent: relay poll + consumer fetch + the job itself.
        assert late[-1] < 1.0, f"lateness {late}"
        print(f"\ndelayed jobs: lateness min {late[0]:.3f}s median {late[len(late) // 2]:.3f}s "
              f"max {late[-1]:.3f}s")
        assert pg.scalar("select count(*) from sluice.outbox_delayed") == 0
        assert w.stop(30) == 0
    finally:
        env.kill_all()


# ---- recurring jobs --------------------------------------------------------------

def test_recurring_slots_fire_once_across_workers_and_kills(kafka, pg, tmp_path):
    """3 workers, an hourly schedule, the clock moved on one hour at a time
    (sluice.outbox_settings.clock_offset) for 6 slots, 2 workers SIGKILLed
    along the way: each slot fires once (fires counter, deterministic ids,
    one ledger row each)."""
    env = outbox_env(kafka, pg, tmp_path, {"o.rec": "sql:app.rec"}, partitions=3)
    try:
        pg.query(FUNCTIONS)
        workers = [start_worker(env) for _ in range(3)]
        for w in workers:
            w.wait_for_log("started:", timeout=60)
        first = pg.scalar("select sluice.schedule('hourly', '0 * * * *', 'o.rec', '{\"n\": 7}', 'cron')")
        assert pg.scalar("select sluice.schedule('hourly', '0 * * * *', 'o.rec', '{\"n\": 7}', 'cron')") == first
        slots = []
        for step in range(6):
            pg.query("update sluice.outbox_settings set clock_offset = clock_offset + interval '1 hour'")
            slots.append(first + datetime.timedelta(hours=step))
            wait_until(lambda: pg.scalar("select fires from sluice.schedules where name = 'hourly'") == step + 1,
                       30, f"slot {step + 1}")
            if step in (1, 3):
                victim = workers[step // 2]
                victim.signal(signal.SIGKILL)
                victim.wait(30)
                workers[step // 2] = start_worker(env)
        time.sleep(3)  # any double firing would show now
        assert pg.scalar("select fires from sluice.schedules where name = 'hourly'") == 6
        want = {pg.scalar("select sluice.schedule_job_id('hourly', %s)", s) for s in slots}
        wait_until(lambda: pg.scalar("select count(*) from app.done") >= 6, 60, "six slot jobs")
        time.sleep(1)
        assert {r[0] for r in pg.query("select id from app.done")} == want
        assert pg.scalar("select count(*) from sluice.jobs where id like 'schedule:hourly@%%'") == 6
        listing = subprocess.run([str(BIN / "sluicectl"), "schedule", "list", "--conninfo", pg.conninfo],
                                 capture_output=True, text=True, timeout=30)
        assert listing.returncode == 0, listing.stderr
        assert "hourly" in listing.stdout and "0 * * * *" in listing.stdout
        assert pg.scalar("select sluice.unschedule('hourly')") is True
        assert pg.scalar("select sluice.unschedule('hourly')") is False
        for w in workers:
            assert w.stop(30) == 0
    finally:
        env.kill_all()


def test_catch_up_fires_only_the_latest_missed_slot(pg):
    from harness import migrate
    migrate(pg.conninfo)
    first = pg.scalar("select sluice.schedule('m', '*/10 * * * *', 'o.rec', '{}')")
    pg.query("update sluice.outbox_settings set clock_offset = interval '1 hour 5 minutes'")
    assert pg.scalar("select sluice.schedule_fire()") == 1
    assert pg.scalar("select sluice.schedule_fire()") == 0
    last = pg.scalar("select last_slot from sluice.schedules")
    now = pg.scalar("select sluice.clock()")
    assert 0 <= (now - last).total_seconds() < 600 and last > first
    assert pg.scalar("select count(*) from sluice.outbox") == 1
    assert pg.scalar("select id from sluice.outbox") == pg.scalar("select sluice.schedule_job_id('m', %s)", last)


def test_a_schedule_that_cannot_fire_does_not_hold_the_others(pg):
    from harness import migrate
    migrate(pg.conninfo)
    pg.query("select sluice.schedule('bad', '* * * * *', 't', '{}'), sluice.schedule('good', '* * * * *', 't', '{}')")
    pg.query("update sluice.schedules set cron = '* * *' where name = 'bad'")  # by hand, past the checks
    pg.query("update sluice.outbox_settings set clock_offset = interval '2 minutes'")
    assert pg.scalar("select sluice.schedule_fire()") == 1
    assert pg.query("select name, fires from sluice.schedules order by name") == [("bad", 0), ("good", 1)]
    assert "expected 5 fields" in pg.scalar("select last_error from sluice.schedules where name = 'bad'")
    assert pg.scalar("select next_at > sluice.clock() from sluice.schedules where name = 'bad'") is True
    assert pg.scalar("select count(*) from sluice.outbox") == 1
    r = subprocess.run([str(BIN / "sluicectl"), "schedule", "list", "--conninfo", pg.conninfo, "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["name"] for x in rows] == ["bad", "good"]
    assert "expected 5 fields" in rows[0]["last_error"] and rows[1]["last_error"] is None
    assert rows[1]["fires"] == 1 and rows[1]["data"] == {}


# ---- follow-up jobs -----------------------------------------------------------------

CHAIN = """
create schema app;
create table app.steps (job_id text primary key, step int, chain text);
create function app.step(job jsonb) returns jsonb language plpgsql as $$
declare
  step int := (job->'data'->>'step')::int;
  chain text := job->'data'->>'chain';
  next_id text;
begin
  insert into app.steps values (job->>'id', step, chain);
  if step < 3 then
    next_id := sluice.enqueue('c.step' || (step + 1), jsonb_build_object('step', step + 1, 'chain', chain,
                              'fail_at', job->'data'->'fail_at'), job->>'key');
  end if;
  if (job->'data'->>'fail_at')::int = step then
    raise exception 'step % of chain % fails', step, chain;
  end if;
  return jsonb_build_object('next', next_id);
end $$;
"""


def test_follow_up_chain_is_atomic_per_step(kafka, pg, tmp_path):
    """c.step1 -> c.step2 -> c.step3, each a SQL handler that writes its
    effect and enqueues the next step in the job's own transaction; step 2
    runs as a role of its own. A chain whose step 2 fails has step 1's effect
    and nothing after it: the failed step's enqueue rolled back with it."""
    role = "chain_" + uuid.uuid4().hex[:8]
    types = {"c.step1": "sql:app.step", "c.step2": "sql:app.step", "c.step3": "sql:app.step"}
    env = outbox_env(kafka, pg, tmp_path, types, {"c.step2": {"role": role}}, partitions=2)
    try:
        pg.query(CHAIN)
        pg.query(f"create role {role} nologin")
        pg.query(f"grant usage on schema app to {role}")
        pg.query(f"grant insert on app.steps to {role}")
        w = start_worker(env, retry={"max_attempts": 1, "initial_backoff": 0.05, "max_backoff": 0.1})
        pg.query("select sluice.enqueue('c.step1', '{\"step\": 1, \"chain\": \"ok\"}', 'ok')")
        pg.query("select sluice.enqueue('c.step1', '{\"step\": 1, \"chain\": \"bad\", \"fail_at\": 2}', 'bad')")
        wait_until(lambda: pg.scalar("select count(*) from app.steps where chain = 'ok'") == 3, 60,
                   "the whole ok chain")
        wait_until(lambda: pg.scalar("select count(*) from sluice.jobs where status = 'failed'") == 1, 30,
                   "the failed step")
        time.sleep(2)
        assert pg.query("select step from app.steps where chain = 'ok' order by step") == [(1,), (2,), (3,)]
        assert pg.query("select step from app.steps where chain = 'bad' order by step") == [(1,)]
        wait_until(lambda: pg.scalar("select count(*) from sluice.outbox") == 0, 30, "an empty outbox")
        assert pg.scalar("select count(*) from sluice.jobs") == 5  # ok 1-3, bad 1 (succeeded), bad 2 (failed)
        assert w.stop(30) == 0
    finally:
        env.kill_all()
        try:
            pg.query(f"drop owned by {role}")
            pg.query(f"drop role if exists {role}")
        except psycopg.Error:
            pass


# ---- dead letters for bad data -----------------------------------------------------------

def test_data_failing_the_schema_is_a_dead_letter(kafka, pg, tmp_path):
    schema = tmp_path / "o.rec.json"
    schema.write_text(json.dumps({"type": "object", "required": ["n"],
                                  "properties": {"n": {"type": "integer", "minimum": 0}}}))
    env = outbox_env(kafka, pg, tmp_path, {"o.rec": "sql:app.rec"}, {"o.rec": {"schema": str(schema)}},
                     partitions=1)
    try:
        pg.query(FUNCTIONS)
        w = start_worker(env)
        good = pg.scalar("select sluice.enqueue('o.rec', '{\"n\": 1}', 'a')")
        bad = pg.scalar("select sluice.enqueue('o.rec', '{\"n\": -1}', 'a', id => 'bad-1')")
        dl = kafka.consume(env.dlq, count=1, timeout=60)
        assert len(dl) == 1
        h = dict(dl[0].headers())
        assert h["sluice-error-code"] == b"schema_violation"
        assert b"/n" in h["sluice-error-message"]
        assert h["sluice-source-topic"] == env.jobs.encode()
        assert h["sluice-source-offset"] == b"-1" and h["sluice-attempts"] == b"0"
        ev = json.loads(dl[0].value())
        assert ev["id"] == bad and ev["data"] == {"n": -1} and dl[0].key() == b"a"
        wait_until(lambda: pg.scalar("select count(*) from app.done") == 1, 60, "the good job")
        jobs = [json.loads(m.value())["id"] for m in topic_messages(kafka, env.jobs)]
        assert jobs == [good]
        wait_until(lambda: pg.scalar("select count(*) from sluice.outbox") == 0, 30, "an empty outbox")
        assert w.stop(30) == 0
    finally:
        env.kill_all()


def test_job_topic_with_a_small_message_limit(kafka, pg, tmp_path):
    """A job topic whose max.message.bytes is below what the relay's producer
    batches refuses whole batches of outbox rows each small enough for it, on
    every retry: the relay keeps its batches under the job and dead-letter
    topics' limits, read at start, and every row arrives."""
    env = outbox_env(kafka, pg, tmp_path, {"o.rec": "sql:app.rec"}, partitions=1)
    env.jobs = kafka.create_topic("small-jobs", partitions=1, config={"max.message.bytes": "8192"})
    try:
        pg.query(FUNCTIONS)
        pad = "x" * 500
        with psycopg.connect(pg.conninfo, autocommit=False) as conn:
            for i in range(300):
                conn.execute("select sluice.enqueue('o.rec', %s::jsonb, %s)",
                             (json.dumps({"n": i, "pad": pad}), f"k{i % 5}"))
        w = start_worker(env)
        w.wait_for_log("batches of outbox jobs kept under 8192 bytes")
        wait_until(lambda: pg.scalar("select count(*) from app.done") == 300, 60, "300 jobs relayed and run")
        # The last batch's rows are deleted after their acknowledgements,
        # which can be after their jobs ran.
        wait_until(lambda: pg.scalar("select count(*) from sluice.outbox") == 0, 30, "an empty outbox")
        assert len(topic_messages(kafka, env.jobs, expected=300, timeout=30)) == 300
        assert w.stop(30) == 0
        assert "could not relay" not in w.log(), w.log()[-3000:]
    finally:
        env.kill_all()


def test_outbox_topic_of_its_own_with_a_small_message_limit(kafka, pg, tmp_path):
    """Rows enqueued for a topic the worker knows nothing of at start, whose
    max.message.bytes is below the relay's batches: the relay asks what the
    topic takes before it sends there and keeps its batches under it, so no
    batch is refused (a broker that refuses one batch takes the partition's
    next, and the rows of a key would arrive out of order) and every row
    arrives, in order per key; a row whose event alone is above the limit
    goes to the dead-letter topic (message_too_large); one the dead-letter
    topic cannot take either stays in the outbox, as does one above what the
    relay's producer sends at all (message.max.bytes), whatever its topic
    takes."""
    env = outbox_env(kafka, pg, tmp_path, {"o.rec": "sql:app.rec"}, partitions=1)
    side = kafka.create_topic("side", partitions=1, config={"max.message.bytes": "65536"})
    roomy = kafka.create_topic("roomy", partitions=1, config={"max.message.bytes": str(32 << 20)})
    try:
        pg.query(FUNCTIONS)
        # Just above librdkafka's batch.size (1,000,000): a full batch and a
        # small one, which the topic would take after refusing the first.
        pad = "x" * 900
        rows = 930
        with psycopg.connect(pg.conninfo, autocommit=False) as conn:
            conn.execute("select sluice.enqueue('side.event', %s::jsonb, 'big', id => 'big-1', topic => %s)",
                         (json.dumps({"pad": "y" * 100000}), side))
            conn.execute("select sluice.enqueue('side.event', %s::jsonb, 'huge', id => 'huge-1', topic => %s)",
                         (json.dumps({"pad": "z" * (5 << 20)}), side))
            # Above the relay producer's own message.max.bytes (16 MiB), for a
            # topic that would take it.
            conn.execute("select sluice.enqueue('side.event', %s::jsonb, 'giant', id => 'giant-1', topic => %s)",
                         (json.dumps({"pad": "g" * (17 << 20)}), roomy))
            for i in range(rows):
                conn.execute("select sluice.enqueue('side.event', %s::jsonb, %s, topic => %s)",
                             (json.dumps({"n": i, "pad": pad}), f"k{i % 5}", side))
        w = start_worker(env)
        got = topic_messages(kafka, side, expected=rows, timeout=60)
        assert len(got) == rows, f"{len(got)} of {rows} rows relayed: {w.log()[-3000:]}"
        per_key = {}
        for m in got:
            per_key.setdefault(m.key().decode(), []).append(json.loads(m.value())["data"]["n"])
        assert per_key == {f"k{k}": list(range(k, rows, 5)) for k in range(5)}
        wait_until(lambda: pg.scalar("select count(*) from sluice.outbox") == 2, 30, "two rows left")
        assert [r[0] for r in pg.query("select id from sluice.outbox order by id")] == ["giant-1", "huge-1"]
        w.wait_for_log('job \\"huge-1\\" (type \\"side.event\\") stays in sluice.outbox')
        w.wait_for_log('job \\"giant-1\\" (type \\"side.event\\") stays in sluice.outbox')
        assert topic_messages(kafka, roomy) == []
        dl = topic_messages(kafka, env.dlq)
        assert len(dl) == 1
        h = dict(dl[0].headers())
        assert h["sluice-error-code"] == b"message_too_large"
        assert side.encode() in h["sluice-error-message"] and b"65536" in h["sluice-error-message"]
        assert h["sluice-source-topic"] == side.encode()
        ev = json.loads(dl[0].value())
        assert ev["id"] == "big-1" and len(ev["data"]["pad"]) == 100000 and dl[0].key() == b"big"
        w.wait_for_log("batches of outbox jobs kept under 65536 bytes")
        assert w.stop(30) == 0
        assert "could not relay" not in w.log() and "refused a batch" not in w.log(), w.log()[-3000:]
    finally:
        env.kill_all()


# ---- SQL-level contracts ------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    ("sluice.enqueue('', '{}')", "type must not be empty"),
    ("sluice.enqueue(null, '{}')", "type must not be empty"),
    ("sluice.enqueue('t', '[1]')", "data must be a JSON object, not array"),
    ("sluice.enqueue('t', null)", "data must be a JSON object, not NULL"),
    ("sluice.enqueue('t', '{}', id => '')", "id must not be empty"),
    ("sluice.enqueue('t', '{}', source => '')", "source must not be empty"),
    ("sluice.enqueue('t', '{}', topic => '')", "topic must not be empty"),
    ("sluice.enqueue('t', '{}', topic => 'my topic')", "topic \"my topic\" is not a Kafka topic name"),
    ("sluice.enqueue('t', '{}', topic => '..')", "topic \"..\" is not a Kafka topic name"),
    ("sluice.enqueue('t', '{}', topic => repeat('t', 250))", "is not a Kafka topic name"),
    ("sluice.enqueue('t', '{}', id => repeat('é', 513))", "must be at most 1024 bytes, not 1026"),
    ("sluice.enqueue(repeat('t', 1025), '{}')", "must be at most 1024 bytes, not 1025"),
    ("sluice.schedule('s', '* * *', 't', '{}')", "expected 5 fields"),
    ("sluice.schedule('s', '60 * * * *', 't', '{}')", "minute field: 60 is out of range 0-59"),
    ("sluice.schedule('s', '* 5-1 * * *', 't', '{}')", "hour field: range \"5-1\" runs backwards"),
    ("sluice.schedule('s', '*/0 * * * *', 't', '{}')", "bad step"),
    ("sluice.schedule('s', '* * * foo *', 't', '{}')", "month field: \"foo\" is not a number or a name"),
    ("sluice.schedule('s', '0 0 30 2 *', 't', '{}')", "it never fires"),
    ("sluice.schedule('s', '* * * * *', 't', '{}', tz => 'Mars/Olympus')", "invalid time zone \"Mars/Olympus\""),
    ("sluice.schedule('', '* * * * *', 't', '{}')", "name must not be empty"),
    ("sluice.schedule('s', '* * * * *', 't', '3')", "data must be a JSON object, not number"),
])
def test_bad_arguments_are_clear_errors(pg, call, message):
    from harness import migrate
    migrate(pg.conninfo)
    with pytest.raises(psycopg.Error) as e:
        pg.query(f"select {call}")
    assert e.value.sqlstate == "22023", e.value
    assert message in str(e.value), str(e.value)


def test_cron_next(pg):
    from harness import migrate
    migrate(pg.conninfo)
    cases = [
        ("*/15 * * * *", "UTC", "2026-01-01 10:07Z", "2026-01-01 10:15:00+00"),
        ("0 9 * * mon-fri", "Europe/Paris", "2026-01-03 10:07Z", "2026-01-05 08:00:00+00"),
        ("0 0 29 feb *", "UTC", "2026-01-01Z", "2028-02-29 00:00:00+00"),
        ("5,35 1-3/2 * * *", "UTC", "2026-01-01 01:40Z", "2026-01-01 03:05:00+00"),
        ("0 12 1 * 0", "UTC", "2026-01-02Z", "2026-01-04 12:00:00+00"),  # 1st of the month OR a Sunday
        ("0 0 * * 7", "UTC", "2026-01-01Z", "2026-01-04 00:00:00+00"),  # 7 is Sunday too
    ]
    for cron, tz, after, want in cases:
        got = pg.scalar("select sluice.cron_next(%s, %s, %s::timestamptz)::text", cron, tz, after)
        assert got == want, (cron, tz, after, got)


def test_a_stale_epoch_cannot_delete_rows(pg):
    """Fencing: a relay whose lease was taken over (a new epoch) cannot
    delete rows, even rows it did deliver; the new holder can."""
    from harness import migrate
    migrate(pg.conninfo)
    pg.query("select sluice.enqueue('t', '{}', 'k') from generate_series(1, 3)")
    old = pg.scalar("select sluice.outbox_acquire(0, 'old', interval '10 seconds')")
    assert pg.scalar("select sluice.outbox_acquire(0, 'new', interval '10 seconds')") is None  # still held
    pg.query("update sluice.outbox_leases set expires_at = now() - interval '1 second'")  # old one froze
    new = pg.scalar("select sluice.outbox_acquire(0, 'new', interval '10 seconds')")
    assert new == old + 1
    assert pg.scalar("select sluice.outbox_renew(0, %s, interval '10 seconds')", old) is None
    rows = pg.query("select xid::text, seq from sluice.outbox_fetch(0, 10)")
    assert len(rows) == 3
    xids = "{" + ",".join(r[0] for r in rows) + "}"
    seqs = "{" + ",".join(str(r[1]) for r in rows) + "}"
    with pytest.raises(psycopg.Error) as e:
        pg.query("select sluice.outbox_ack(0, %s, %s::xid8[], %s::bigint[])", old, xids, seqs)
    assert e.value.sqlstate == "SL004"
    assert pg.scalar("select count(*) from sluice.outbox") == 3
    assert pg.scalar("select sluice.outbox_ack(0, %s, %s::xid8[], %s::bigint[])", new, xids, seqs) == 3
    assert pg.scalar("select count(*) from sluice.outbox") == 0


def test_sluicectl_outbox_names_what_holds_the_watermark(pg, tmp_path):
    """sluicectl outbox: depth, rows behind the watermark, delayed jobs,
    leases, and the open transaction that holds the watermark back; text and
    JSON, from --conninfo or the worker's file (-c)."""
    from harness import migrate
    migrate(pg.conninfo)
    pg.query("select sluice.enqueue('t', '{}', 'k') from generate_series(1, 2)")
    pg.query("select sluice.enqueue('t', '{}', run_at => now() + interval '1 hour')")
    pg.query("select sluice.outbox_acquire(0, 'relay-x', interval '1 minute')")
    holder = psycopg.connect(pg.conninfo, autocommit=False)
    try:
        xid = holder.execute("select pg_current_xact_id()::text").fetchone()[0]
        pg.query("select sluice.enqueue('t', '{}', 'k')")  # committed, but behind the open transaction
        conf = tmp_path / "w.conf"
        conf.write_text(f'jobs = ( {{ type = "t"; }} );\npostgres: {{ conninfo = "{pg.conninfo}"; }};\n')
        env = {k: v for k, v in __import__("os").environ.items() if k != "SLUICE_PG_CONNINFO"}
        r = subprocess.run([str(BIN / "sluicectl"), "outbox", "--conninfo", pg.conninfo, "--json"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["depth"] == 3 and out["behind_watermark"] == 1 and out["delayed"] == 1
        assert 3500 < out["next_delayed_in_seconds"] <= 3600
        assert out["shards"] == 1 and out["leases"][0]["holder"] == "relay-x"
        assert out["leases"][0]["epoch"] == 1 and 0 < out["leases"][0]["expires_in_seconds"] <= 60
        assert out["oldest_transaction"]["xid"] == xid
        assert out["oldest_transaction"]["state"] == "idle in transaction"
        r = subprocess.run([str(BIN / "sluicectl"), "outbox", "-c", str(conf)], capture_output=True, text=True,
                           timeout=30, env=env)
        assert r.returncode == 0, r.stderr
        assert "outbox: 3 rows (1 behind the watermark)" in r.stdout
        assert "shard 0: held by relay-x (epoch 1" in r.stdout
        assert f"watermark: oldest running transaction: xid {xid}" in r.stdout
    finally:
        holder.close()


def test_uncommitted_rows_hold_the_watermark(pg):
    """A row of a transaction still open is not read, and neither is any row
    of a later xid (per-key order), until it ends; then both are, in xid
    order."""
    from harness import migrate
    migrate(pg.conninfo)
    early = psycopg.connect(pg.conninfo, autocommit=False)
    late = psycopg.connect(pg.conninfo, autocommit=False)
    try:
        e_id = early.execute("select sluice.enqueue('t', '{}', 'k')").fetchone()[0]
        l_id = late.execute("select sluice.enqueue('t', '{}', 'k')").fetchone()[0]
        late.commit()  # commits first, with the larger xid
        assert pg.query("select id from sluice.outbox_fetch(0, 10)") == []
        early.commit()
        assert [r[0] for r in pg.query("select id from sluice.outbox_fetch(0, 10)")] == [e_id, l_id]
    finally:
        early.close()
        late.close()


def test_rows_for_a_missing_topic_wait_without_holding_the_others(kafka, pg, tmp_path):
    """Rows enqueued for a topic that does not exist stay in the outbox, and
    the rows behind them for other topics go on: at the head of the shard's
    order they used to take every batch (and each batch waited 30 s for the
    missing topic's metadata), so nothing behind them was relayed again.
    Once the topic is made, its rows arrive, in order per key."""
    env = outbox_env(kafka, pg, tmp_path, {"o.rec": "sql:app.rec"}, partitions=1)
    missing = kafka.topic_name("not-yet")
    try:
        pg.query(FUNCTIONS)
        with psycopg.connect(pg.conninfo, autocommit=False) as conn:
            for i in range(150):
                conn.execute("select sluice.enqueue('o.rec', %s::jsonb, %s, topic => %s)",
                             (json.dumps({"n": i}), f"k{i % 3}", missing))
        with psycopg.connect(pg.conninfo, autocommit=False) as conn:
            for i in range(50):
                conn.execute("select sluice.enqueue('o.rec', %s::jsonb, %s)", (json.dumps({"n": 1000 + i}), "a"))
        w = start_worker(env, extra="outbox: { poll_interval = 0.05; lease_ttl = 3.0; batch = 100; };")
        wait_until(lambda: pg.scalar("select count(*) from app.done") == 50, 60, "the other topic's 50 jobs")
        wait_until(lambda: pg.scalar("select count(*) from sluice.outbox") == 150, 30, "the 50 rows deleted")
        w.wait_for_log(f'topic \\"{missing}\\": it does not exist')
        assert "could not relay" not in w.log(), w.log()[-3000:]
        kafka.create_topic(name=missing)
        msgs = topic_messages(kafka, missing, expected=150, timeout=90)
        assert len(msgs) == 150
        seen = {}
        for m in msgs:
            seen.setdefault(m.key(), []).append(json.loads(m.value())["data"]["n"])
        for key, ns in seen.items():
            assert ns == sorted(ns), (key, ns)
        wait_until(lambda: pg.scalar("select count(*) from sluice.outbox") == 0, 30, "an empty outbox")
        assert w.stop(30) == 0
    finally:
        env.kill_all()


def test_rows_without_a_key_to_a_compacted_topic(kafka, pg, tmp_path):
    """A compacted job topic refuses records without a key: rows enqueued
    without one were refused at every round, at the head of their shard.
    The relay now sends them keyed by their job id; rows with a key keep
    it."""
    env = outbox_env(kafka, pg, tmp_path, {"o.rec": "sql:app.rec"}, partitions=1)
    env.jobs = kafka.create_topic("compacted-jobs", partitions=1, config={"cleanup.policy": "compact"})
    try:
        pg.query(FUNCTIONS)
        ids = [pg.scalar("select sluice.enqueue('o.rec', %s::jsonb)", json.dumps({"n": i})) for i in range(20)]
        mine = pg.scalar("select sluice.enqueue('o.rec', '{\"n\": 99}', 'mine')")
        w = start_worker(env)
        wait_until(lambda: pg.scalar("select count(*) from app.done") == 21, 60, "21 jobs relayed and run")
        wait_until(lambda: pg.scalar("select count(*) from sluice.outbox") == 0, 30, "an empty outbox")
        keys = {json.loads(m.value())["id"]: m.key() for m in topic_messages(kafka, env.jobs, expected=21)}
        assert keys == dict({i: i.encode() for i in ids}, **{mine: b"mine"})
        assert w.stop(30) == 0
        assert "could not relay" not in w.log(), w.log()[-3000:]
    finally:
        env.kill_all()
