"""The worker against the real broker and server: the guarantees of DESIGN.md
under load, crashes, restarts and bad input.

Invariants checked after every run (check_ledger): every job has a result,
copies of one job's result are byte-identical, the sum of balances is
unchanged, transfers applied == `succeeded` results, no job applied twice.
"""
import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest

from harness import ROOT, Worker, cloudevent, conf_text, migrate, read_results

ACCOUNTS = 100
BALANCE = 1000


class Env:
    def __init__(self, kafka, pg, tmp_path, partitions=6):
        self.kafka = kafka
        self.pg = pg
        self.tmp = tmp_path
        self.jobs = kafka.create_topic("jobs", partitions=partitions)
        self.results = kafka.create_topic("results", partitions=3)
        self.dlq = kafka.create_topic("dlq", partitions=1)
        self.group = "g-" + uuid.uuid4().hex[:8]
        self.n = 0
        self.workers = []
        migrate(pg.conninfo)

    def worker(self, **kw):
        self.n += 1
        conf = self.tmp / f"worker{self.n}.conf"
        conf.write_text(conf_text(self.kafka.brokers, self.pg.conninfo, [self.jobs], self.results, self.dlq,
                                  self.group, **kw))
        w = Worker(conf, self.tmp / f"worker{self.n}.log")
        self.workers.append(w)
        return w

    def kill_all(self):
        """A failed test must not leave its workers running."""
        for w in self.workers:
            if w.alive():
                w.kill()

    def produce_jobs(self, events, key_of):
        for ev in events:
            self.kafka.produce(self.jobs, json.dumps(ev).encode(), key=key_of(ev), flush=False)
        self.kafka.flush()

    def open_accounts(self, n=ACCOUNTS, balance=BALANCE):
        evs = [cloudevent("ledger.open", {"account": f"acc-{i:03d}", "balance": balance}) for i in range(n)]
        self.produce_jobs(evs, lambda ev: ev["data"]["account"].encode())
        return evs

    def transfers(self, n, seed=1):
        rnd = random.Random(seed)
        evs = []
        for _ in range(n):
            a, b = rnd.sample(range(ACCOUNTS), 2)
            evs.append(cloudevent("ledger.transfer", {"from": f"acc-{a:03d}", "to": f"acc-{b:03d}",
                                                      "amount": rnd.randint(1, 300)}))
        return evs

    def check_ledger(self, results, job_ids):
        missing = [j for j in job_ids if j not in results.by_job]
        assert not missing, f"{len(missing)} jobs without a result, e.g. {missing[:3]}"
        results.assert_copies_identical()
        total = self.pg.scalar("select sum(balance) from ledger.accounts")
        assert total == ACCOUNTS * BALANCE
        transfer_ids = {j for j in job_ids if results.first(j)["type"] == "ledger.transfer.result"}
        succeeded = sum(1 for j in transfer_ids if results.first(j)["data"]["status"] == "succeeded")
        rows = self.pg.scalar("select count(*) from ledger.transfers")
        distinct = self.pg.scalar("select count(distinct (job_source, job_id)) from ledger.transfers")
        assert rows == distinct
        assert rows == succeeded, f"{rows} transfer rows but {succeeded} succeeded results"
        # Every succeeded transfer is in the ledger under its own job id.
        ledger_ids = {r[0] for r in self.pg.query("select job_id from ledger.transfers")}
        assert ledger_ids == {j for j in transfer_ids if results.first(j)["data"]["status"] == "succeeded"}
        return succeeded


def run_ledger(env, n_transfers, chaos=None, workers=1, **worker_kw):
    """Opens the accounts, then runs n_transfers through the worker(s) while
    `chaos(ws, env)` is called repeatedly (it may kill and restart workers).
    Returns (results, job ids)."""
    opens = env.open_accounts()
    ws = [env.worker(**worker_kw).start() for _ in range(workers)]
    res = read_results(env.kafka, env.results, len(opens), timeout=120)
    assert len(res.by_job) >= len(opens), "accounts were not opened:\n" + ws[0].log()[-3000:]
    transfers = env.transfers(n_transfers)
    env.produce_jobs(transfers, lambda ev: ev["data"]["from"].encode())
    ids = [ev["id"] for ev in opens + transfers]
    if chaos is not None:
        chaos(ws, env, ids)
    res = read_results(env.kafka, env.results, len(ids), timeout=240)
    for w in ws:
        if w.alive():
            assert w.stop(90) == 0, w.log()[-3000:]
    return res, ids


# Every guarantee is checked per job (max_batch 1) and with jobs grouped into
# shared transactions (max_batch 32, a savepoint per job).
batch_modes = pytest.mark.parametrize("max_batch", [1, 32], ids=["per-job", "grouped"])


@batch_modes
def test_ten_thousand_transfers(env, max_batch):
    res, ids = run_ledger(env, 10_000, executors=4, max_batch=max_batch)
    succeeded = env.check_ledger(res, ids)
    counts = res.status_counts()
    assert counts.get("failed", 0) == 0, counts
    assert succeeded > 0 and counts.get("rejected", 0) >= 0
    # A clean run publishes each result once.
    assert len(res.raw) == len(ids)


@batch_modes
def test_sigkill_three_times(env, max_batch):
    def chaos(ws, env, ids):
        rnd = random.Random(7)
        for i in range(3):
            time.sleep(rnd.uniform(0.5, 2.5))
            ws[0].kill()
            ws[0] = env.worker(executors=4, max_batch=max_batch).start()
    res, ids = run_ledger(env, 10_000, chaos=chaos, executors=4, max_batch=max_batch)
    env.check_ledger(res, ids)
    assert res.status_counts().get("failed", 0) == 0


# Every fifth write to the job ledger fails with a serialization failure
# (transient). The executor sends that write in the same pipeline as the next
# job's work or as the COMMIT, so failures land in every position of a batch,
# the last one included; the jobs must be retried, none lost, none applied
# twice, no result published for a transaction that did not commit.
CHAOS_SQL = """
create sequence chaos_writes;
create function chaos_write() returns trigger language plpgsql as $$
begin
    if nextval('chaos_writes') % 5 = 0 then
        raise exception 'chaos: ledger write refused' using errcode = '40001';
    end if;
    return new;
end $$;
create trigger chaos_write before insert or update on sluice.jobs
    for each row execute function chaos_write();
"""


@batch_modes
def test_ledger_writes_failing(env, max_batch):
    env.pg.query(CHAOS_SQL)
    res, ids = run_ledger(env, 2_000, executors=4, max_batch=max_batch,
                          retry={"max_attempts": 20, "initial_backoff": 0.01, "max_backoff": 0.05})
    env.check_ledger(res, ids)
    assert res.status_counts().get("failed", 0) == 0
    assert env.pg.scalar("select last_value from chaos_writes") >= 400


# A job whose ledger write kills its own connection (a trigger terminates the
# backend). In a group that loses the whole transaction, nobody knows which
# job did it; the group's jobs then go one by one, so the job pays alone and
# its neighbours succeed.
KILLER_SQL = """
create function kill_on_write() returns trigger language plpgsql as $$
begin
    if new.id = '{id}' then
        perform pg_terminate_backend(pg_backend_pid());
    end if;
    return new;
end $$;
create trigger kill_on_write before insert or update on sluice.jobs
    for each row execute function kill_on_write();
"""


def test_job_that_breaks_its_connection(env):
    opens = [cloudevent("ledger.open", {"account": f"k-{i:03d}", "balance": 10}) for i in range(40)]
    killer = opens[5]["id"]
    env.pg.query(KILLER_SQL.format(id=killer))
    env.produce_jobs(opens, lambda ev: b"one-key")
    w = env.worker(executors=1, max_batch=32,
                   retry={"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.05}).start()
    res = read_results(env.kafka, env.results, len(opens), timeout=120)
    assert w.stop(60) == 0, w.log()[-3000:]
    statuses = {ev["id"]: res.first(ev["id"])["data"]["status"] for ev in opens}
    assert statuses.pop(killer) == "failed"
    assert set(statuses.values()) == {"succeeded"}, w.log()[-3000:]
    assert env.pg.scalar("select count(*) from ledger.accounts where id like 'k-%'") == 39


@batch_modes
def test_postgres_restart(env, max_batch):
    services = os.environ["SLUICE_SERVICES_DIR"]

    def chaos(ws, env, ids):
        time.sleep(1.5)
        version = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v))[-1]
        # -l: the restarted server must not inherit our pipes.
        cmd = [f"/usr/lib/postgresql/{version}/bin/pg_ctl", "-D", f"{services}/pg/data", "-l",
               f"{services}/pg/server.log", "-m", "fast", "-w", "restart"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        env.pg.reconnect()
    res, ids = run_ledger(env, 5_000, chaos=chaos, executors=4, max_batch=max_batch)
    env.check_ledger(res, ids)
    assert res.status_counts().get("failed", 0) == 0


@batch_modes
def test_two_workers_one_killed(env, max_batch):
    def chaos(ws, env, ids):
        time.sleep(2.0)
        ws[1].kill()
    res, ids = run_ledger(env, 8_000, chaos=chaos, workers=2, executors=2, max_batch=max_batch)
    env.check_ledger(res, ids)
    assert res.status_counts().get("failed", 0) == 0


@batch_modes
def test_sigterm_during_load_drains_and_resumes(env, max_batch):
    def chaos(ws, env, ids):
        time.sleep(1.0)
        t0 = time.time()
        rc = ws[0].stop(60)
        took = time.time() - t0
        assert rc == 0, ws[0].log()[-3000:]
        assert took < 30 + 10, f"stop took {took:.1f}s"
        assert "stopped" in ws[0].log()
        ws[0] = env.worker(executors=4, max_batch=max_batch).start()
    res, ids = run_ledger(env, 6_000, chaos=chaos, executors=4, max_batch=max_batch)
    env.check_ledger(res, ids)
    assert res.status_counts().get("failed", 0) == 0


POISON = [
    # (value bytes, expected error code)
    (b'{"specversion":"1.0","id":"x","source":"s","type":"ledger.transfer","data":{"from":"a"', "invalid_json"),
    (b"not json at all", "invalid_json"),
    (b"[1,2,3]", "not_an_object"),
    (b'{"id":"p1","source":"s","type":"ledger.open","data":{}}', "missing_attribute"),
    (json.dumps({"specversion": "1.0", "id": 17, "source": "s", "type": "ledger.open", "data": {}}).encode(),
     "invalid_attribute"),
    (json.dumps({"specversion": "0.3", "id": "p2", "source": "s", "type": "ledger.open", "data": {}}).encode(),
     "unsupported_specversion"),
    (json.dumps({"specversion": "1.0", "id": "p3", "source": "s", "type": "ledger.open", "data": "x"}).encode(),
     "invalid_data"),
    (json.dumps({"specversion": "1.0", "id": "p4", "source": "s", "type": "no.such.type", "data": {}}).encode(),
     "unknown_type"),
    (json.dumps({"specversion": "1.0", "id": "p5", "source": "s", "type": "ledger.transfer",
                 "data": {"from": "acc-001", "to": "acc-002", "amount": "10"}}).encode(), "schema_violation"),
    (json.dumps({"specversion": "1.0", "id": "p6", "source": "s", "type": "ledger.transfer",
                 "data": {"from": "acc-001", "to": "acc-002"}}).encode(), "schema_violation"),
    (json.dumps({"specversion": "1.0", "id": "p7", "source": "s", "type": "ledger.transfer",
                 "data": {"from": "acc-001", "to": "acc-002", "amount": 10 ** 20}}).encode(),
     "number_out_of_range"),
    (json.dumps({"specversion": "1.0", "id": "p8", "source": "s", "type": "ledger.transfer",
                 "data": {"from": "acc-001", "to": "acc-002", "amount": -5}}).encode(), "schema_violation"),
    (b'{"specversion":"1.0","id":"p9","source":"s","type":"ledger.open","data":{"account":"\xff\xfe","balance":1}}',
     "invalid_json"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    (json.dumps({"specversion": "1.0", "id": "p10", "source": "s", "type": "ledger.open",
                 "data": {"account": "x" * (1024 * 1024), "balance": 1}}).encode(), "message_too_large"),
    (b"", "empty_message"),
    (json.dumps({"specversion": "1.0", "id": "p11", "source": "s", "type": "ledger.open",
                 "data": {"account": "'; drop table ledger.accounts; --", "balance": 0}}).encode(), None),
    (json.dumps({"specversion": "1.0", "id": "p12", "source": "s", "type": "ledger.transfer",
                 "data": {"from": "acc-001", "to": "acc-002", "amount": 1e400 if False else 1.5}}).encode(),
     "schema_violation"),
]


@batch_modes
def test_poison_corpus(env, max_batch):
    opens = env.open_accounts()
    w = env.worker(executors=4, max_batch=max_batch).start()
    res = read_results(env.kafka, env.results, len(opens), timeout=120)
    assert len(res.by_job) >= len(opens)
    good = env.transfers(200, seed=3)
    # Interleave: a bad message after every ~10 good ones, same partitions.
    expected_bad = []
    gi = 0
    for i, (value, code) in enumerate(POISON):
        for ev in good[gi:gi + 10]:
            env.kafka.produce(env.jobs, json.dumps(ev).encode(), key=ev["data"]["from"].encode(), flush=False)
        gi += 10
        env.kafka.produce(env.jobs, value, key=b"acc-001", headers=[("trace", b"t-%d" % i)], flush=False)
        expected_bad.append(code)
    for ev in good[gi:]:
        env.kafka.produce(env.jobs, json.dumps(ev).encode(), key=ev["data"]["from"].encode(), flush=False)
    env.kafka.flush()

    n_dead = sum(1 for c in expected_bad if c is not None)
    dead = env.kafka.consume(env.dlq, count=n_dead, timeout=120)
    results = read_results(env.kafka, env.results, len(opens) + len(good) + len(POISON), timeout=120)
    assert w.alive(), w.log()[-3000:]
    assert w.stop(60) == 0

    # Every good job succeeded or was rejected by the business rules.
    for ev in good:
        st = results.first(ev["id"])["data"]["status"]
        assert st in ("succeeded", "rejected"), results.first(ev["id"])
    # Each bad message: a failed result and a dead letter with the right code.
    codes = sorted(dict(m.headers())["sluice-error-code"].decode() for m in dead)
    assert codes == sorted(c for c in expected_bad if c is not None)
    failed = [ev for copies in results.by_job.values() for _, ev in copies if ev["data"]["status"] == "failed"]
    assert sorted(ev["data"]["error"]["code"] for ev in failed) == codes
    for m in dead:
        h = dict(m.headers())
        assert h["sluice-source-topic"].decode() == env.jobs
        assert int(h["sluice-source-offset"]) >= 0
        assert h["trace"].startswith(b"t-")
        assert m.key() == b"acc-001"
        for name in ("sluice-error-message", "sluice-source-partition", "sluice-attempts"):
            assert name in h
    # The SQL-looking account name is just data.
    assert env.pg.scalar("select count(*) from ledger.accounts where id like '%%drop table%%'") == 1
    env.check_ledger(results, [ev["id"] for ev in opens + good])


def round_trips(w):
    w.wait_for_log("http listening on")
    port = int(re.search(r"http listening on \S+ \(port (\d+)\)", w.log()).group(1))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return int(float(re.search(r"^sluice_pg_round_trips_total (\S+)$", text, re.M).group(1)))


@pytest.mark.parametrize("max_batch,rejecting", [(32, False), (32, True), (1, True)],
                         ids=["grouped", "grouped-some-rejected", "per-job-some-rejected"])
def test_round_trips_per_job(env, max_batch, rejecting):
    """ledger.transfer says its statement ahead, so a group of jobs costs
    about two round trips to PostgreSQL, [the group's statements] and
    [ledger writes, COMMIT], instead of one per job. Rejected jobs in the
    middle of a group (undone to their savepoint while later jobs' statements
    already ran) cost one more each, and the ledger still adds up. One
    transaction per job (max_batch 1) costs one round trip per job, not two:
    a job's COMMIT goes with the next job's statement."""
    opens = env.open_accounts()
    w = env.worker(executors=1)
    w.start()
    read_results(env.kafka, env.results, len(opens), timeout=120)
    assert w.stop(60) == 0
    rnd = random.Random(11)
    transfers = []
    for i in range(640):
        a, b = rnd.sample(range(ACCOUNTS), 2)
        # Every 7th transfer asks for more than any account holds.
        amount = 10 * BALANCE * ACCOUNTS if rejecting and i % 7 == 3 else 1
        transfers.append(cloudevent("ledger.transfer", {"from": f"acc-{a:03d}", "to": f"acc-{b:03d}",
                                                        "amount": amount}))
    env.produce_jobs(transfers, lambda ev: ev["data"]["from"].encode())
    # Preloaded, so the one executor finds full groups.
    w = env.worker(executors=1, max_batch=max_batch, http_listen="127.0.0.1:0").start()
    ids = [ev["id"] for ev in opens + transfers]
    res = read_results(env.kafka, env.results, len(ids), timeout=120)
    trips = round_trips(w)
    assert w.stop(60) == 0, w.log()[-3000:]
    env.check_ledger(res, ids)
    counts = res.status_counts()
    rejected = sum(1 for ev in transfers if ev["data"]["amount"] > 1)
    assert counts == {"succeeded": len(ids) - rejected, **({"rejected": rejected} if rejected else {})}, counts
    if max_batch > 1:
        # One per job would be 640; full groups of 32 would be about 40
        # (plus the rejections).
        assert trips <= len(transfers) / 4 + rejected, f"{trips} round trips for {len(transfers)} jobs"
    else:
        # Two per job would be 1280; chains of 16 about 680.
        assert trips <= len(transfers) * 1.2, f"{trips} round trips for {len(transfers)} jobs"
