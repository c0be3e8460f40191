"""Never guess an outcome: what the worker publishes when PostgreSQL cannot
judge a job (stopped, a COMMIT whose answer is lost), and a frozen worker
that must not hold the others (DESIGN.md, Failures).

Each test stops or freezes something the whole suite shares (the server, a
worker in the middle of transactions); they restore it before they end.
"""
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psycopg
from confluent_kafka import Consumer, TopicPartition

from harness import ROOT, cloudevent, read_results
from test_worker import Env

SERVICES = str(ROOT / "tests" / "services")


def services(*args):
    r = subprocess.run([SERVICES, *args], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"tests/services {' '.join(args)}: {r.stderr}{r.stdout}"


class PgDown:
    """Stops the shared server at once (`pg_ctl -m immediate`: no COMMIT in
    flight gets its answer) and always starts it again."""

    def __init__(self, pg):
        self.pg = pg
        self.down = False

    def stop(self):
        services("stop", "pg", "--immediate")
        self.down = True

    def start(self):
        if self.down:
            services("start", "pg")
            self.down = False
        self.pg.reconnect()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.start()


def readyz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def http_port(w):
    w.wait_for_log("http listening on")
    return int(re.search(r"http listening on \S+ \(port (\d+)\)", w.log()).group(1))


class TopicWatch:
    """Reads a topic from the start in a thread and keeps every message with
    the time it was read, so a test can ask what arrived when."""

    def __init__(self, kafka, topic):
        self.got = []
        self.stop = False
        self.c = Consumer({"bootstrap.servers": kafka.brokers, "group.id": "watch-" + topic,
                           "auto.offset.reset": "earliest", "enable.auto.commit": False})
        md = kafka.admin.list_topics(topic, timeout=10)
        self.c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop:
            for m in self.c.consume(500, 0.2):
                if not m.error():
                    self.got.append((time.time(), m.value()))

    def between(self, t0, t1):
        return [v for t, v in self.got if t0 <= t <= t1]

    def close(self):
        self.stop = True
        self.t.join(10)
        self.c.close()


def opened(env, accounts, balance=1000, **worker_kw):
    """Opens `accounts` with one worker and returns it, still running."""
    evs = [cloudevent("ledger.open", {"account": a, "balance": balance}) for a in accounts]
    env.produce_jobs(evs, lambda ev: ev["data"]["account"].encode())
    w = env.worker(**worker_kw).start()
    res = read_results(env.kafka, env.results, len(evs), timeout=120)
    assert len(res.by_job) == len(evs), w.log()[-3000:]
    return w


def transfer(src, dst, amount=1):
    return cloudevent("ledger.transfer", {"from": src, "to": dst, "amount": amount})


def ledger_rows(pg, ids):
    return {r[0]: (r[1], r[2]) for r in pg.query(
        "select id, status, result from sluice.jobs where id = any(%s)", list(ids))}


FAST_RETRIES = {"max_attempts": 3, "initial_backoff": 0.05, "max_backoff": 0.1}


def test_redelivered_success_meets_an_outage(kafka, pg, tmp_path):
    """Issue reproduction (a): j1 succeeds and is published, but its offset
    cannot be committed past j0, which waits for a lock; the worker is
    killed, and its successor meets PostgreSQL stopped for longer than its
    whole retry budget. It must wait, not publish `failed` for j1."""
    env = Env(kafka, pg, tmp_path, partitions=1)
    try:
        w = opened(env, ["a", "b", "c", "d"], executors=4)
        holder = psycopg.connect(pg.conninfo)
        env.holder = holder
        holder.execute("select * from ledger.accounts where id = 'a' for update")
        j0, j1 = transfer("a", "b"), transfer("c", "d")
        env.produce_jobs([j0, j1], lambda ev: ev["data"]["from"].encode())
        watch = TopicWatch(kafka, env.results)
        deadline = time.time() + 60
        while not any(j1["id"].encode() in v for _, v in watch.got):
            assert time.time() < deadline, "j1 was not published:\n" + w.log()[-3000:]
            time.sleep(0.1)
        w.kill()
        # Its successor runs j0 (which waits for the lock again) with j1
        # queued behind it on its one executor.
        w2 = env.worker(executors=1, retry={"max_attempts": 4, "initial_backoff": 0.05,
                                            "max_backoff": 0.1}).start()
        w2.wait_for_log("assigned")
        deadline = time.time() + 30
        while pg.scalar("select count(*) from pg_stat_activity where wait_event_type = 'Lock'") == 0:
            assert time.time() < deadline, "j0 did not wait for the lock:\n" + w2.log()[-3000:]
            time.sleep(0.05)
        with PgDown(pg) as outage:
            outage.stop()  # the holder's lock goes with the server
            t_down = time.time()
            time.sleep(8)
            during = watch.between(t_down, time.time())
            outage.start()
        assert during == [], f"published during the outage: {during[:2]}\n" + w2.log()[-3000:]
        # j1's second copy comes after j0's result, which is all that
        # read_results waits for (plus a second): wait for it here.
        deadline = time.time() + 60
        while sum(j1["id"].encode() in v for _, v in watch.got) < 2 and time.time() < deadline:
            time.sleep(0.1)
        res = read_results(kafka, env.results, 4 + 2, timeout=120)
        assert w2.stop(60) == 0, w2.log()[-3000:]
        watch.close()
        res.assert_copies_identical()
        assert res.first(j0["id"])["data"]["status"] == "succeeded"
        assert res.first(j1["id"])["data"]["status"] == "succeeded"
        assert len(res.by_job[j1["id"]]) >= 2, "j1 was not redelivered: the test proves nothing"
        rows = ledger_rows(pg, [j0["id"], j1["id"]])
        for j in (j0, j1):
            assert rows[j["id"]][1].encode() == res.by_job[j["id"]][0][0]
        assert kafka.consume(env.dlq, idle=2.0, timeout=10) == []
        assert pg.scalar("select sum(balance) from ledger.accounts") == 4000
    finally:
        env.kill_all()


def test_commit_whose_answer_is_lost_then_an_outage(kafka, pg, tmp_path):
    """Issue reproduction (b): a COMMIT that became durable but whose answer
    never came (it waits for a synchronous standby that does not exist when
    the server stops), followed by an outage longer than the retry budget.
    The ledger says succeeded: so must the one published result."""
    env = Env(kafka, pg, tmp_path, partitions=1)
    auto_conf = os.path.join(os.environ["SLUICE_SERVICES_DIR"], "pg", "data", "postgresql.auto.conf")
    try:
        w = opened(env, ["a", "b"], executors=1, retry=FAST_RETRIES)
        pg.query("alter system set synchronous_standby_names = 'nobody'")
        pg.query("select pg_reload_conf()")
        # The server reloads a moment later; once this session sees the
        # setting, every process (the worker's sessions, the checkpointer
        # that tells COMMITs to wait) has been told: give them a moment too.
        deadline = time.time() + 30
        while pg.scalar("show synchronous_standby_names") != "nobody":
            assert time.time() < deadline, "the server did not reload its configuration"
            time.sleep(0.05)
        time.sleep(0.5)
        j = transfer("a", "b", 5)
        env.produce_jobs([j], lambda ev: b"a")
        with PgDown(pg) as outage:
            deadline = time.time() + 30
            while pg.scalar("select count(*) from pg_stat_activity where wait_event = 'SyncRep'") == 0:
                assert time.time() < deadline, "no COMMIT waited for the standby:\n" + w.log()[-3000:]
                time.sleep(0.05)
            outage.stop()
            # Started again without the standby, so that COMMITs return.
            with open(auto_conf) as f:
                kept = [line for line in f if "synchronous_standby_names" not in line]
            with open(auto_conf, "w") as f:
                f.writelines(kept)
            time.sleep(6)
        res = read_results(kafka, env.results, 2 + 1, timeout=120)
        assert w.stop(60) == 0, w.log()[-3000:]
        res.assert_copies_identical()
        status, stored = ledger_rows(pg, [j["id"]])[j["id"]]
        assert status == "succeeded"
        assert res.by_job[j["id"]][0][0] == stored.encode()
        assert kafka.consume(env.dlq, idle=2.0, timeout=10) == []
        assert pg.scalar("select sum(balance) from ledger.accounts") == 2000
    finally:
        pg.query("alter system reset synchronous_standby_names")
        pg.query("select pg_reload_conf()")
        env.kill_all()


def test_outage_under_load_publishes_nothing_and_waits(kafka, pg, tmp_path):
    """PostgreSQL stopped at once under load, for SLUICE_OUTAGE_SECONDS (15
    by default; the README's figure is a 60 s run): no result and no dead
    letter is published during it, /readyz says why, the worker's memory
    stays bounded, and every job completes afterwards."""
    outage_s = float(os.environ.get("SLUICE_OUTAGE_SECONDS", "15"))
    env = Env(kafka, pg, tmp_path)
    try:
        opens = env.open_accounts()
        w = env.worker(executors=4, max_batch=32, max_in_flight=500, http_listen="127.0.0.1:0",
                       retry=FAST_RETRIES).start()
        port = http_port(w)
        read_results(kafka, env.results, len(opens), timeout=120)
        transfers = env.transfers(6000, seed=3)
        results, dlq = TopicWatch(kafka, env.results), TopicWatch(kafka, env.dlq)
        stop_feed = threading.Event()

        def feed():
            for i in range(0, len(transfers), 50):
                if stop_feed.is_set():
                    return
                env.produce_jobs(transfers[i:i + 50], lambda ev: ev["data"]["from"].encode())
                time.sleep(0.05)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        time.sleep(3)
        with PgDown(pg) as outage:
            outage.stop()
            t_down = time.time()
            time.sleep(3)
            code, why = readyz(port)
            rss0 = rss_kib(w.proc.pid)
            time.sleep(max(outage_s - 3, 1))
            rss1 = rss_kib(w.proc.pid)
            t_up = time.time()
            published = results.between(t_down + 2, t_up)
            dead = dlq.between(t_down, t_up)
            outage.start()
        feeder.join(120)
        ids = [ev["id"] for ev in opens + transfers]
        res = read_results(kafka, env.results, len(ids), timeout=240)
        log = w.log()
        assert w.stop(60) == 0, log[-3000:]
        results.close()
        dlq.close()
        print(f"\noutage {outage_s:.0f} s: {len(published)} results and {len(dead)} dead letters published during it; "
              f"/readyz {code} {why.strip()!r}; worker RSS {rss0} -> {rss1} KiB; "
              f"{len(ids)} jobs done {time.time() - t_up:.1f} s after the server came back")
        assert published == [], f"{len(published)} results published during the outage"
        assert dead == [], f"{len(dead)} dead letters published during the outage"
        assert code == 503 and "waiting for postgresql" in why, (code, why)
        assert rss1 - rss0 < 16 * 1024, f"RSS grew from {rss0} to {rss1} KiB during the outage"
        env.check_ledger(res, ids)
        assert res.status_counts().get("failed", 0) == 0
        assert kafka.consume(env.dlq, idle=2.0, timeout=10) == []
        # Said once per interval, not once per job.
        assert log.count("postgresql cannot judge jobs now") <= outage_s / 10 + 2, log[-3000:]
        assert "postgresql answers again" in log
    finally:
        env.kill_all()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_frozen_worker_stalls_no_one(kafka, pg, tmp_path):
    """Two workers, 20 hot accounts, 6 partitions, ~250 jobs/s; one worker is
    frozen (SIGSTOP) inside its transactions for longer than the consumer
    session timeout. Once the group has moved its partitions, the other
    worker keeps finishing jobs: the frozen one's locks went with its
    sessions (idle_in_transaction_session_timeout), and no lock wait is
    unbounded."""
    env = Env(kafka, pg, tmp_path)
    try:
        hot = [f"h-{i:02d}" for i in range(20)]
        a = opened(env, hot, balance=100000, executors=4)
        # A marker transfer (amount 7) sleeps 2 s inside its statement, so a
        # worker frozen during it is sure to be inside a transaction that
        # holds the locks of two hot accounts once the statement ends.
        pg.query("""
            create function slow_marker() returns trigger language plpgsql as $$
            begin
                if new.amount = 7 then perform pg_sleep(2); end if;
                return new;
            end $$;
            create trigger slow_marker before insert on ledger.transfers
                for each row execute function slow_marker();""")
        b = env.worker(executors=4).start()
        b.wait_for_log("assigned")
        time.sleep(3)
        jobs = []
        results = TopicWatch(kafka, env.results)
        stop_feed = threading.Event()

        def feed():
            n = 0
            while not stop_feed.is_set() and n < 12000:
                batch = []
                for _ in range(25):
                    x, y = jobs_rng.sample(hot, 2)
                    batch.append(transfer(x, y))
                n += len(batch)
                jobs.extend(batch)
                env.produce_jobs(batch, lambda ev: ev["data"]["from"].encode())
                time.sleep(0.1)

        import random
        jobs_rng = random.Random(7)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        time.sleep(5)
        markers = [transfer("h-00", "h-01", 7) for _ in range(6)]
        for p, ev in enumerate(markers):
            kafka.produce(env.jobs, json.dumps(ev).encode(), key=b"h-00", partition=p)
        jobs.extend(markers)
        time.sleep(1)
        b.signal(signal.SIGSTOP)
        t_freeze = time.time()
        try:
            time.sleep(30)
            # After the session timeout (10 s) and a rebalance, a owns
            # every partition; b's transactions ended 5 s after the freeze.
            finished = results.between(t_freeze + 15, time.time())
        finally:
            b.signal(signal.SIGCONT)
        stop_feed.set()
        feeder.join(30)
        ids = [ev["id"] for ev in jobs]
        res = read_results(kafka, env.results, len(hot) + len(ids), timeout=240)
        for w in (a, b):
            assert w.stop(90) == 0, w.log()[-3000:]
        results.close()
        assert len(finished) > 100, (f"only {len(finished)} jobs finished in the 15 s after the group "
                                     f"moved on from the frozen worker:\n" + a.log()[-3000:])
        missing = [j for j in ids if j not in res.by_job]
        assert not missing, f"{len(missing)} jobs without a result"
        res.assert_copies_identical()
        assert res.status_counts().get("failed", 0) == 0
        assert pg.scalar("select sum(balance) from ledger.accounts") == 20 * 100000
        assert pg.scalar("select count(*) from ledger.transfers where amount = 7") == 6
        assert pg.scalar("select count(*) from ledger.transfers") == len(ids)
    finally:
        env.kill_all()
