"""SQL-function handlers (handler = "sql:SCHEMA.FUNCTION"): every outcome a
function can give, the job object it gets, jobs that wait for a function not
deployed yet, per-type role and statement_timeout, `sluice-worker -n`, and
the crash invariants with a SQL handler in per-job and grouped modes."""
import json
import re
import subprocess
import time
import uuid

import pytest

from harness import BIN, ROOT, Worker, cloudevent, conf_text, read_results
from test_outcomes import TopicWatch, http_port, readyz
from test_worker import Env, batch_modes, round_trips

FUNCTIONS = """
create schema app;
create table app.seen (job_id text primary key, n int);
-- Echoes the job object it was given, and writes a row.
create function app.echo(job jsonb) returns jsonb language plpgsql as $$
begin
  insert into app.seen values (job->>'id', (job->'data'->>'n')::int);
  return jsonb_build_object('job', job);
end $$;
create function app.nothing(job jsonb) returns jsonb language sql as $$ select null::jsonb $$;
create function app.jsonnull(job jsonb) returns jsonb language sql as $$ select 'null'::jsonb $$;
create function app.array(job jsonb) returns jsonb language sql as $$ select '[1, 2]'::jsonb $$;
create function app.refuse(job jsonb) returns jsonb language plpgsql as $$
begin
  insert into app.seen values (job->>'id', 0);  -- rolled back with the refusal
  return sluice.reject('too_big', 'n is ' || (job->'data'->>'n'));
end $$;
create function app.later(job jsonb) returns jsonb language plpgsql as $$
begin
  if (job->>'attempt')::int < 2 then
    return sluice.retry('not yet', interval '0.3 seconds');
  end if;
  return jsonb_build_object('attempt', job->'attempt');
end $$;
create function app.boom(job jsonb) returns jsonb language plpgsql as $$
begin raise exception 'boom %', job->'data'->>'n'; end $$;
create function app.slow(job jsonb) returns jsonb language plpgsql as $$
begin perform pg_sleep(5); return '{}'; end $$;
create function app.whoami(job jsonb) returns jsonb language sql as $$
  select jsonb_build_object('user', current_user::text) $$;
create function app.meddle(job jsonb) returns jsonb language plpgsql as $$
begin update sluice.jobs set status = status where false; return '{}'; end $$;
"""

TYPES = {
    "t.echo": "sql:app.echo", "t.nothing": "sql:app.nothing", "t.jsonnull": "sql:app.jsonnull",
    "t.array": "sql:app.array",
    "t.refuse": "sql:app.refuse", "t.later": "sql:app.later", "t.boom": "sql:app.boom",
    "t.missing": "sql:app.missing",
}


def jobs_block(types, extra=None):
    extra = extra or {}
    rows = []
    for t, h in types.items():
        more = "".join(f" {k} = {json.dumps(v)};" for k, v in extra.get(t, {}).items())
        rows.append(f'  {{ type = "{t}"; handler = "{h}";{more} }}')
    return "jobs = (\n" + ",\n".join(rows) + "\n);"


class SqlEnv(Env):
    def __init__(self, kafka, pg, tmp_path, types, extra=None, partitions=3):
        super().__init__(kafka, pg, tmp_path, partitions=partitions)
        self.types, self.extra = types, extra

    def worker(self, **kw):
        self.n += 1
        conf = self.tmp / f"worker{self.n}.conf"
        text = conf_text(self.kafka.brokers, self.pg.conninfo, [self.jobs], self.results, self.dlq,
                         self.group, **kw)
        text = re.sub(r"jobs = \(.*?\n\);", lambda m: jobs_block(self.types, self.extra), text, flags=re.S)
        conf.write_text(text)
        w = Worker(conf, self.tmp / f"worker{self.n}.log")
        self.workers.append(w)
        return w


@pytest.fixture
def senv(kafka, pg, tmp_path):
    e = SqlEnv(kafka, pg, tmp_path, TYPES)
    pg.query(FUNCTIONS)
    yield e
    e.kill_all()


def send(env, job_type, data, key=b"k"):
    ev = cloudevent(job_type, data)
    env.produce_jobs([ev], lambda _: key)
    return ev


@batch_modes
def test_every_outcome(senv, max_batch):
    w = senv.worker(max_batch=max_batch, retry={"max_attempts": 3, "initial_backoff": 0.05,
                                                "max_backoff": 0.1}).start()
    echo = send(senv, "t.echo", {"n": 1}, key=b"key-1")
    nothing = send(senv, "t.nothing", {})
    jsonnull = send(senv, "t.jsonnull", {})
    array = send(senv, "t.array", {})
    refuse = send(senv, "t.refuse", {"n": 9})
    later = send(senv, "t.later", {})
    boom = send(senv, "t.boom", {"n": 4})
    res = read_results(senv.kafka, senv.results, 7, timeout=60)
    assert w.stop(30) == 0, w.log()[-3000:]

    out = res.first(echo["id"])["data"]
    assert out["status"] == "succeeded"
    job = out["output"]["job"]
    assert job == {"id": echo["id"], "source": echo["source"], "type": "t.echo", "subject": None,
                   "time": echo["time"], "data": {"n": 1}, "key": "key-1", "attempt": 1}
    assert senv.pg.scalar("select n from app.seen where job_id = %s", echo["id"]) == 1

    for ev in (nothing, jsonnull):
        out = res.first(ev["id"])["data"]
        assert out["status"] == "succeeded" and out.get("output") is None, out

    out = res.first(array["id"])["data"]
    assert out["status"] == "failed" and out["error"]["code"] == "invalid_output", out
    assert "an array" in out["error"]["message"]

    out = res.first(refuse["id"])["data"]
    assert out["status"] == "rejected" and out["error"] == {"code": "too_big", "message": "n is 9"}, out
    assert senv.pg.scalar("select count(*) from app.seen where job_id = %s", refuse["id"]) == 0

    out = res.first(later["id"])["data"]
    assert out["status"] == "succeeded" and out["output"] == {"attempt": 2}, out

    out = res.first(boom["id"])["data"]
    assert out["status"] == "failed" and "P0001" in out["error"]["message"], out
    assert "boom 4" in out["error"]["message"]

    letters = senv.kafka.consume(senv.dlq, idle=2.0, timeout=15)
    assert sorted(json.loads(m.value())["id"] for m in letters) == sorted([array["id"], boom["id"]])
    # The ledger holds every outcome the topic shows.
    for ev in (echo, nothing, jsonnull, array, refuse, later, boom):
        stored = senv.pg.scalar("select result from sluice.jobs where id = %s", ev["id"])
        assert stored.encode() == res.by_job[ev["id"]][0][0]


@batch_modes
def test_result_too_large_fails_the_job(senv, max_batch):
    """A result event above limits.max_result_bytes is one the result topic
    could refuse for good, and the ledger must never hold an outcome that
    cannot be published: the job fails (result_too_large) with its effects
    undone and its dead letter sent, and the jobs after it on its partition
    go on. Grouped, the big job sits between two others of its group."""
    senv.pg.query("create function app.big(job jsonb) returns jsonb language plpgsql as $$ begin "
                  "insert into app.seen values (job->>'id', 1); "
                  "return jsonb_build_object('pad', repeat('x', (job->'data'->>'n')::int)); end $$")
    senv.types = dict(senv.types, **{"t.big": "sql:app.big"})
    w = senv.worker(max_batch=max_batch, max_result_bytes=4096).start()
    small = send(senv, "t.big", {"n": 100}, key=b"one")
    big = send(senv, "t.big", {"n": 10000}, key=b"one")
    after = send(senv, "t.big", {"n": 10}, key=b"one")
    res = read_results(senv.kafka, senv.results, 3, timeout=60)
    assert w.stop(30) == 0, w.log()[-3000:]
    assert res.first(small["id"])["data"]["status"] == "succeeded"
    assert res.first(after["id"])["data"]["status"] == "succeeded"
    out = res.first(big["id"])["data"]
    assert out["status"] == "failed" and out["error"]["code"] == "result_too_large", out
    assert "more than limits.max_result_bytes (4096)" in out["error"]["message"], out
    assert senv.pg.scalar("select count(*) from app.seen where job_id = %s", big["id"]) == 0
    assert senv.pg.scalar("select count(*) from app.seen where job_id in (%s, %s)", small["id"], after["id"]) == 2
    letters = senv.kafka.consume(senv.dlq, count=1, timeout=30)
    assert [json.loads(m.value())["id"] for m in letters] == [big["id"]]
    for ev in (small, big, after):
        stored = senv.pg.scalar("select result from sluice.jobs where id = %s", ev["id"])
        assert stored.encode() == res.by_job[ev["id"]][0][0]


def test_missing_function_waits_until_it_is_created(senv):
    w = senv.worker(http_listen="127.0.0.1:0", retry={"max_attempts": 2, "initial_backoff": 0.05,
                                                      "max_backoff": 0.1}).start()
    port = http_port(w)
    w.wait_for_log("app.missing(jsonb) does not exist")  # the warning at start
    watch = TopicWatch(senv.kafka, senv.results)
    jobs = [send(senv, "t.missing", {"n": i}, key=f"k{i}".encode()) for i in range(5)]
    deadline = time.time() + 30
    while "app.missing" not in readyz(port)[1]:
        assert time.time() < deadline, readyz(port)
        time.sleep(0.2)
    code, why = readyz(port)
    assert code == 503 and "handler_unavailable" in why and "sql:app.missing" in why, why
    time.sleep(3)
    assert watch.got == [], "published while its function was missing"
    senv.pg.query("create function app.missing(job jsonb) returns jsonb language sql as "
                  "$$ select jsonb_build_object('n', job->'data'->'n') $$")
    res = read_results(senv.kafka, senv.results, len(jobs), timeout=60)
    watch.close()
    for ev in jobs:
        assert res.first(ev["id"])["data"]["status"] == "succeeded"
    assert readyz(port)[0] == 200
    assert w.stop(30) == 0
    assert senv.kafka.consume(senv.dlq, idle=2.0, timeout=10) == []


def test_role_and_statement_timeout(kafka, pg, tmp_path):
    """A job type's role: the function runs as it (and cannot write
    sluice's tables: that fails the job, it is the function's own error);
    EXECUTE not granted to the role is a deployment mistake that waits. A
    statement_timeout ends a slow function, which counts as its attempt."""
    role = "app_" + uuid.uuid4().hex[:8]
    types = {"t.whoami": "sql:app.whoami", "t.meddle": "sql:app.meddle", "t.slow": "sql:app.slow"}
    extra = {"t.whoami": {"role": role}, "t.meddle": {"role": role},
             "t.slow": {"statement_timeout": 0.5}}
    env = SqlEnv(kafka, pg, tmp_path, types, extra)
    try:
        pg.query(FUNCTIONS)
        pg.query(f"create role {role} nologin")
        pg.query(f"grant usage on schema app to {role}")
        pg.query(f"grant execute on function app.meddle(jsonb) to {role}")
        pg.query("revoke execute on function app.whoami(jsonb) from public")
        w = env.worker(retry={"max_attempts": 2, "initial_backoff": 0.05, "max_backoff": 0.1}).start()
        meddle = send(env, "t.meddle", {}, key=b"b")
        slow = send(env, "t.slow", {}, key=b"c")
        res = read_results(kafka, env.results, 2, timeout=60)
        out = res.first(meddle["id"])["data"]
        assert out["status"] == "failed" and "42501" in out["error"]["message"], out
        out = res.first(slow["id"])["data"]
        assert out["status"] == "failed" and "statement_timeout" in out["error"]["message"], out
        who = send(env, "t.whoami", {}, key=b"a")
        time.sleep(3)
        assert who["id"] not in read_results(kafka, env.results, 3, timeout=2).by_job, "ran without EXECUTE"
        pg.query(f"grant execute on function app.whoami(jsonb) to {role}")
        res = read_results(kafka, env.results, 3, timeout=60)
        assert res.first(who["id"])["data"]["output"] == {"user": role}
        assert w.stop(30) == 0
    finally:
        env.kill_all()


def test_check_reports_missing_and_wrong_functions(senv):
    senv.pg.query("create function app.jsonish(job json) returns jsonb language sql as $$ select null::jsonb $$")
    senv.pg.query("create function app.counts(job jsonb) returns int language sql as $$ select 1 $$")
    for handler, want in (("sql:app.missing", "function app.missing(jsonb) does not exist"),
                          ("sql:app.jsonish", "there is app.jsonish(json)"),
                          ("sql:app.counts", "returns integer, not jsonb"),
                          ("sql:no-dots", "must name a function as SCHEMA.FUNCTION")):
        senv.types = {"t.x": handler}
        w = senv.worker()
        r = subprocess.run([str(BIN / "sluice-worker"), "-n", "-c", w.conf_path], capture_output=True,
                           text=True, timeout=30, env=w.env)
        assert r.returncode == 2, (handler, r.stdout, r.stderr)
        assert want in r.stderr and re.search(r"\.conf:\d+: ", r.stderr), (handler, r.stderr)
    senv.types = {"t.x": "sql:app.echo"}
    w = senv.worker()
    r = subprocess.run([str(BIN / "sluice-worker"), "-n", "-c", w.conf_path], capture_output=True, text=True,
                       timeout=30, env=w.env)
    assert r.returncode == 0, r.stderr


# ledger.transfer as a SQL function, for the crash invariants (shared with make bench).
TRANSFER_SQL = (ROOT / "tests" / "bench" / "sql_transfer.sql").read_text()


@batch_modes
def test_sigkill_three_times_with_a_sql_handler(kafka, pg, tmp_path, max_batch):
    env = SqlEnv(kafka, pg, tmp_path, {"ledger.open": "ledger.open", "ledger.transfer": "sql:app.transfer"},
                 partitions=6)
    try:
        pg.query(TRANSFER_SQL)
        opens = env.open_accounts()
        ws = [env.worker(executors=4, max_batch=max_batch).start()]
        read_results(kafka, env.results, len(opens), timeout=120)
        transfers = env.transfers(3000, seed=11)
        # Duplicates: every 50th job again, byte for byte.
        env.produce_jobs(transfers + transfers[::50], lambda ev: ev["data"]["from"].encode())
        for _ in range(3):
            time.sleep(1.5)
            ws[-1].kill()
            ws.append(env.worker(executors=4, max_batch=max_batch).start())
        ids = [ev["id"] for ev in opens + transfers]
        res = read_results(kafka, env.results, len(ids), timeout=240)
        assert ws[-1].stop(90) == 0, ws[-1].log()[-3000:]
        env.check_ledger(res, ids)
        assert res.status_counts().get("failed", 0) == 0
    finally:
        env.kill_all()


def test_a_group_of_sql_jobs_costs_two_round_trips(kafka, pg, tmp_path):
    """A SQL handler's call is said ahead, and its job type's
    statement_timeout goes in the same pipeline: a group of 32 costs about
    two round trips, as the built-in ledger.transfer does."""
    env = SqlEnv(kafka, pg, tmp_path, {"ledger.open": "ledger.open", "ledger.transfer": "sql:app.transfer"},
                 extra={"ledger.transfer": {"statement_timeout": 5.0}})
    try:
        pg.query(TRANSFER_SQL)
        opens = env.open_accounts()
        w = env.worker(executors=1)
        w.start()
        read_results(kafka, env.results, len(opens), timeout=120)
        assert w.stop(60) == 0
        transfers = env.transfers(640, seed=13)
        env.produce_jobs(transfers, lambda ev: ev["data"]["from"].encode())
        w = env.worker(executors=1, max_batch=32, http_listen="127.0.0.1:0").start()
        ids = [ev["id"] for ev in opens + transfers]
        res = read_results(kafka, env.results, len(ids), timeout=120)
        trips = round_trips(w)
        assert w.stop(60) == 0, w.log()[-3000:]
        env.check_ledger(res, ids)
        rejected = res.status_counts().get("rejected", 0)
        assert trips <= len(transfers) / 4 + rejected, f"{trips} round trips for {len(transfers)} jobs"
    finally:
        env.kill_all()


def test_a_key_that_is_no_text_is_null(senv):
    """The job object's key is text or null: a Kafka key that is not UTF-8,
    or holds a NUL byte (which jsonb refuses), is null, not a failed job."""
    w = senv.worker().start()
    jobs = [send(senv, "t.echo", {"n": i}, key=k) for i, k in enumerate((b"a\x00b", b"\xff\xfe", b"plain"))]
    res = read_results(senv.kafka, senv.results, len(jobs), timeout=60)
    assert w.stop(30) == 0, w.log()[-3000:]
    keys = [res.first(ev["id"])["data"]["output"]["job"]["key"] for ev in jobs]
    assert keys == [None, None, "plain"], keys


def test_result_topic_with_a_small_message_limit(senv):
    """A result topic whose max.message.bytes is below what the producer
    batches (librdkafka's batch.size, 1,000,000 bytes) refuses whole batches
    of results each small enough for it, on every retry: the worker learns
    the topic's limit at start, keeps its batches under it, and fails a job
    whose result alone is above it (result_too_large) instead of retrying a
    result the topic can never take."""
    senv.results = senv.kafka.create_topic("small-results", partitions=1, config={"max.message.bytes": "8192"})
    senv.pg.query("create function app.big(job jsonb) returns jsonb language plpgsql as $$ begin "
                  "insert into app.seen values (job->>'id', 1); "
                  "return jsonb_build_object('pad', repeat('x', (job->'data'->>'n')::int)); end $$")
    senv.types = dict(senv.types, **{"t.big": "sql:app.big"})
    jobs = [cloudevent("t.big", {"n": 600}) for _ in range(120)]
    big = cloudevent("t.big", {"n": 9000})
    senv.produce_jobs(jobs[:60] + [big] + jobs[60:], lambda ev: f"k{hash(ev['id']) % 7}".encode())
    w = senv.worker(max_batch=32).start()
    w.wait_for_log("max.message.bytes 8192")
    res = read_results(senv.kafka, senv.results, len(jobs) + 1, timeout=60)
    assert w.stop(30) == 0, w.log()[-3000:]
    for ev in jobs:
        assert res.first(ev["id"])["data"]["status"] == "succeeded", res.first(ev["id"])
    out = res.first(big["id"])["data"]
    assert out["status"] == "failed" and out["error"]["code"] == "result_too_large", out
    assert "max.message.bytes" in out["error"]["message"], out
    assert senv.pg.scalar("select count(*) from app.seen where job_id = %s", big["id"]) == 0
    assert "too large" not in w.log().replace("result_too_large", ""), w.log()[-3000:]


def test_result_topic_limit_lowered_while_the_worker_runs(senv):
    """A result topic's max.message.bytes lowered after the worker started
    (which sized its batches to the limit then) refuses whole batches of
    results each small enough for it, and went on refusing them on every
    retry: the partition waited until a restart. A record refused as too
    large is now produced again in a batch of its own, so every result
    arrives, once, with the worker running on."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    senv.results = senv.kafka.create_topic("shrinking-results", partitions=1)
    senv.pg.query("create function app.big(job jsonb) returns jsonb language plpgsql as $$ begin "
                  "insert into app.seen values (job->>'id', 1); "
                  "return jsonb_build_object('pad', repeat('x', (job->'data'->>'n')::int)); end $$")
    senv.types = dict(senv.types, **{"t.big": "sql:app.big"})
    w = senv.worker(max_batch=32).start()
    first = [cloudevent("t.big", {"n": 600}) for _ in range(5)]
    senv.produce_jobs(first, lambda ev: b"k")
    read_results(senv.kafka, senv.results, len(first), timeout=60)
    res = ConfigResource(ConfigResource.Type.TOPIC, senv.results, incremental_configs=[
        ConfigEntry("max.message.bytes", "4096", incremental_operation=AlterConfigOpType.SET)])
    for f in senv.kafka.admin.incremental_alter_configs([res]).values():
        f.result(30)
    time.sleep(1)  # the broker applies a topic's config change asynchronously
    jobs = [cloudevent("t.big", {"n": 600}) for _ in range(300)]
    senv.produce_jobs(jobs, lambda ev: f"k{hash(ev['id']) % 7}".encode())
    out = read_results(senv.kafka, senv.results, len(first) + len(jobs), timeout=90)
    w.wait_for_log("refused a batch of records as too large")
    assert w.alive(), w.log()[-3000:]
    assert w.stop(30) == 0, w.log()[-3000:]
    for ev in first + jobs:
        assert out.first(ev["id"])["data"]["status"] == "succeeded", out.first(ev["id"])
    out.assert_copies_identical()
    assert senv.pg.scalar("select count(*) from app.seen") == len(first) + len(jobs)
    assert "partition waits" not in w.log(), w.log()[-3000:]


def test_compacted_result_and_dead_letter_topics_take_keyless_jobs(senv):
    """A compacted topic (cleanup.policy=compact) refuses records without a
    key, and the result of a job without a key was retried forever: its
    partition waited. Results and dead letters of keyless jobs now go there
    keyed by the job's "topic:partition:offset" (the same on every
    delivery): for a dead-letter topic compacted when the worker starts, and
    for a result topic compacted while it runs. Keyed jobs keep their key."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    senv.dlq = senv.kafka.create_topic("compacted-dlq", partitions=1, config={"cleanup.policy": "compact"})
    w = senv.worker().start()
    w.wait_for_log("is compacted (cleanup.policy)")
    res = ConfigResource(ConfigResource.Type.TOPIC, senv.results, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    for f in senv.kafka.admin.incremental_alter_configs([res]).values():
        f.result(30)
    time.sleep(1)  # the broker applies a topic's config change asynchronously
    echo = [send(senv, "t.echo", {"n": i}, key=None) for i in range(5)]
    keyed = send(senv, "t.echo", {"n": 9}, key=b"mine")
    boom = send(senv, "t.boom", {"n": 4}, key=None)
    out = read_results(senv.kafka, senv.results, 7, timeout=60)
    letters = senv.kafka.consume(senv.dlq, count=1, timeout=30)
    assert w.alive(), w.log()[-3000:]
    assert w.stop(30) == 0, w.log()[-3000:]
    for ev in echo:
        assert out.first(ev["id"])["data"]["status"] == "succeeded"
    assert out.first(boom["id"])["data"]["status"] == "failed"
    keys = {json.loads(m.value())["data"]["id"]: m.key()
            for m in senv.kafka.consume(senv.results, idle=2.0, timeout=30)}
    assert keys[keyed["id"]] == b"mine"
    for ev in echo + [boom]:
        assert re.fullmatch(rb"%s:\d+:\d+" % re.escape(senv.jobs.encode()), keys[ev["id"]]), keys[ev["id"]]
    assert len(letters) == 1 and json.loads(letters[0].value())["id"] == boom["id"]
    assert letters[0].key() == keys[boom["id"]]


def test_a_missing_result_topic_holds_results_until_it_is_made(senv):
    """Without its result topic (auto-create off) a finished job's result
    cannot go out: it is produced again each second, and the partition
    waits. The log says so in a line per 10 s, not a line per record per
    second (300 jobs in flight made 4,000 lines in 45 s). Once the topic
    is made, every result arrives, and each job ran once."""
    senv.results = senv.kafka.topic_name("made-later")
    # librdkafka fails a record for a missing topic after 30 s by default.
    w = senv.worker(producer_properties=["topic.metadata.propagation.max.ms=2000"]).start()
    jobs = [cloudevent("t.echo", {"n": i}) for i in range(300)]
    senv.produce_jobs(jobs, lambda ev: ev["id"].encode())
    w.wait_for_log("Unknown topic", timeout=60)
    time.sleep(14)
    lines = [ln for ln in w.log().splitlines() if "Unknown topic" in ln]
    assert 1 <= len(lines) <= 5, lines
    assert re.search(r"and \d+ more records failed", w.log()), lines
    senv.kafka.create_topic(name=senv.results)
    out = read_results(senv.kafka, senv.results, len(jobs), timeout=90)
    assert w.stop(30) == 0, w.log()[-3000:]
    for ev in jobs:
        assert out.first(ev["id"])["data"]["status"] == "succeeded"
    out.assert_copies_identical()
    assert senv.pg.scalar("select count(*) from app.seen") == len(jobs)
