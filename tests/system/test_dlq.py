"""sluicectl dlq, lag, status and check-config against the real broker and server.

The dead-letter test is the one issue 6 asks for: it fills the dead-letter
topic (a worker that does not know the transfer job type, plus messages that
are not JSON), lists it filtered, fixes the cause (a worker with the full
configuration), replays, and shows each job succeeding exactly once, also
when the same letters are replayed a second time. `status` reads a canned
exposition from a tiny HTTP server, so it does not depend on which metrics a
worker wires.
"""
import http.server
import json
import os
import random
import re
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from harness import ROOT, Worker, cloudevent, conf_text, migrate

BALANCE = 100


def ctl(bin_dir, *args, timeout=60, env=None, drop_env=()):
    e = {k: v for k, v in os.environ.items() if k not in drop_env}
    e.update(env or {})
    return subprocess.run([str(bin_dir / "sluicectl"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=e)


def json_lines(r):
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def read_all(kafka, topic, done, timeout=60):
    """Reads `topic` from the start until done(messages) holds or timeout;
    returns the confluent_kafka messages."""
    c = Consumer({"bootstrap.servers": kafka.brokers, "group.id": "r-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    md = kafka.admin.list_topics(topic, timeout=10)
    c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    msgs = []
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and not done(msgs):
            for m in c.consume(1000, 0.3):
                assert not m.error(), m.error()
                msgs.append(m)
    finally:
        c.close()
    return msgs


class DlqEnv:
    """Topics, a migrated database and worker configurations for one test."""

    def __init__(self, kafka, pg, tmp_path):
        self.kafka = kafka
        self.pg = pg
        self.tmp = tmp_path
        self.jobs = kafka.create_topic("jobs", partitions=3)
        self.results = kafka.create_topic("results", partitions=1)
        self.dlq = kafka.create_topic("dlq", partitions=1)
        self.group = "g-" + uuid.uuid4().hex[:8]
        self.n = 0
        migrate(pg.conninfo)

    def worker(self, transfers=True):
        """A worker; without `transfers` its configuration has no
        ledger.transfer job type, so those jobs fail with unknown_type."""
        self.n += 1
        text = conf_text(self.kafka.brokers, self.pg.conninfo, [self.jobs], self.results, self.dlq,
                         self.group, executors=2)
        if not transfers:
            text, n = re.subn(r',\s*\{ type = "ledger\.transfer";[^\n]*\}', "", text)
            assert n == 1
        conf = self.tmp / f"worker{self.n}.conf"
        conf.write_text(text)
        return Worker(conf, self.tmp / f"worker{self.n}.log").start()

    def produce(self, values_keys_headers):
        for value, key, headers in values_keys_headers:
            self.kafka.produce(self.jobs, value, key=key, headers=headers, flush=False)
        self.kafka.flush()


def result_of(m):
    ev = json.loads(m.value())
    return ev["data"].get("id") or "result:" + ev["id"], ev["data"]["status"]


def test_dlq_list_fix_replay_exactly_once(kafka, pg, tmp_path, bin_dir):
    env = DlqEnv(kafka, pg, tmp_path)
    rnd = random.Random(6)
    opens = [cloudevent("ledger.open", {"account": f"acc-{i:03d}", "balance": BALANCE}) for i in range(20)]
    transfers = []
    for _ in range(20):
        a, b = rnd.sample(range(20), 2)
        transfers.append(cloudevent("ledger.transfer", {"from": f"acc-{a:03d}", "to": f"acc-{b:03d}",
                                                        "amount": rnd.randint(1, 150)}))
    tids = {ev["id"] for ev in transfers}
    w = env.worker(transfers=False)
    env.produce([(json.dumps(ev).encode(), ev["data"]["account"].encode(), None) for ev in opens])
    env.produce([(json.dumps(ev).encode(), ev["data"]["from"].encode(), [("trace", f"t-{i}".encode())])
                 for i, ev in enumerate(transfers)]
                + [(b"not json %d" % i, b"garbage", None) for i in range(5)])

    # 20 unknown_type + 5 invalid_json dead letters, and a result for every job.
    dead = kafka.consume(env.dlq, count=25, timeout=60)
    assert len(dead) == 25, w.log()[-3000:]
    results = read_all(kafka, env.results, lambda ms: len(ms) >= 45)
    assert len(results) == 45, w.log()[-3000:]
    assert w.stop(60) == 0, w.log()[-3000:]
    assert {result_of(m) for m in results if result_of(m)[0] in tids} == {(t, "failed") for t in tids}

    # list, filtered by code, type, time and count.
    letters = json_lines(ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--code", "unknown_type", "--json"))
    assert len(letters) == 20
    assert {x["id"] for x in letters} == tids
    by_id = {ev["id"]: ev for ev in transfers}
    for x in letters:
        assert x["code"] == "unknown_type" and x["type"] == "ledger.transfer"
        assert x["source_topic"] == env.jobs and x["source_partition"] in (0, 1, 2)
        assert x["source_offset"] >= 0 and x["partition"] == 0 and x["offset"] >= 0
        assert x["key"] == by_id[x["id"]]["data"]["from"] and x["value_omitted"] is False
        assert x["message"] and x["timestamp"].endswith("Z")
    garbage = json_lines(ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--code", "invalid_json", "--json"))
    assert [(x["type"], x["id"], x["key"]) for x in garbage] == [("", None, "garbage")] * 5
    assert len(json_lines(ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--json"))) == 25
    assert len(json_lines(ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--json", "--code", "unknown_type",
                              "--code", "invalid_json"))) == 25
    assert len(json_lines(ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--json",
                              "--type", "ledger.transfer"))) == 20
    assert len(json_lines(ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--json", "--type", ""))) == 5
    assert len(json_lines(ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--json", "--since", "1h"))) == 25
    assert json_lines(ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--json", "--until",
                          "2001-01-01T00:00:00Z")) == []
    assert json_lines(ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--json", "--since",
                          "2100-01-01T00:00:00+02:00")) == []
    assert len(json_lines(ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--json", "--limit", "7"))) == 7
    r = ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--code", "unknown_type")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:5] == ["PARTITION/OFF", "TIME", "CODE", "TYPE", "ID"] and len(lines) == 21
    assert all(" unknown_type " in line and " ledger.transfer " in line for line in lines[1:])
    assert "20 of 25 dead letters" in r.stderr
    assert ctl(bin_dir, "dlq", "list", "--topic", env.dlq, "--since", "yesterday").returncode == 2

    # A dry run produces nothing.
    before = kafka.end_offsets(env.jobs)
    r = ctl(bin_dir, "dlq", "replay", "--topic", env.dlq, "--code", "unknown_type", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "20 would be replayed, 0 skipped" in r.stdout
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("would replay 0/")]) == 20
    assert kafka.end_offsets(env.jobs) == before

    # Fix the cause, replay: each transfer succeeds or is rejected, once.
    w = env.worker(transfers=True)
    r = ctl(bin_dir, "dlq", "replay", "--topic", env.dlq, "--code", "unknown_type")
    assert r.returncode == 0, r.stderr
    assert f'replayed 20 to "{env.jobs}"' in r.stdout
    assert "20 replayed, 0 failed, 0 skipped (20 of 25 dead letters selected)" in r.stdout

    def finals(ms):
        out = {}
        for m in ms:
            job, status = result_of(m)
            if job in tids and status != "failed":
                out.setdefault(job, []).append(m)
        return out

    results = read_all(kafka, env.results, lambda ms: len(finals(ms)) == 20)
    first = finals(results)
    assert len(first) == 20, w.log()[-3000:]
    statuses = {job: json.loads(ms[0].value())["data"]["status"] for job, ms in first.items()}
    assert set(statuses.values()) <= {"succeeded", "rejected"}
    succeeded = {job for job, st in statuses.items() if st == "succeeded"}
    assert succeeded, statuses
    assert {r[0] for r in pg.query("select job_id from ledger.transfers")} == succeeded
    assert pg.scalar("select count(*) from ledger.transfers") == len(succeeded)
    assert pg.scalar("select sum(balance) from ledger.accounts") == 20 * BALANCE
    stored = dict(pg.query("select id, result from sluice.jobs where type = 'ledger.transfer'"))
    for job, ms in first.items():
        assert ms[0].value().decode() == stored[job]

    # The replayed copies: same key, value and partition as the originals,
    # the producer's headers kept, no sluice-* header.
    copies = read_all(kafka, env.jobs, lambda ms: len(ms) >= 65)
    assert len(copies) == 65
    seen = {}
    for m in copies:
        if m.value() and m.value().startswith(b"{") and json.loads(m.value())["id"] in tids:
            seen.setdefault(json.loads(m.value())["id"], []).append(m)
    for job, ms in seen.items():
        assert len(ms) == 2
        assert len({(m.partition(), m.key(), m.value(), tuple(m.headers() or ())) for m in ms}) == 1
        assert [h for h, _ in ms[1].headers()] == ["trace"]

    # Replaying the same letters again changes nothing: the ledger republishes
    # the stored results, byte for byte.
    r = ctl(bin_dir, "dlq", "replay", "--topic", env.dlq, "--code", "unknown_type")
    assert r.returncode == 0, r.stderr
    assert "20 replayed, 0 failed, 0 skipped" in r.stdout
    results = read_all(kafka, env.results,
                       lambda ms: len(finals(ms)) == 20 and all(len(v) >= 2 for v in finals(ms).values()))
    again = finals(results)
    assert all(len(ms) == 2 for ms in again.values()), {k: len(v) for k, v in again.items()}
    for job, ms in again.items():
        assert ms[0].value() == ms[1].value() == stored[job].encode()
    assert pg.scalar("select count(*) from ledger.transfers") == len(succeeded)
    assert pg.scalar("select sum(balance) from ledger.accounts") == 20 * BALANCE
    assert w.stop(60) == 0, w.log()[-3000:]


def test_dlq_replay_skips_omitted_values_and_cleans_headers(kafka, bin_dir):
    jobs = kafka.create_topic("jobs", partitions=3)
    other = kafka.create_topic("other", partitions=1)
    dlq = kafka.create_topic("dlq", partitions=1)

    def letter(code, partition, offset, extra=()):
        return [("sluice-error-code", code.encode()), ("sluice-error-message", b"it broke"),
                ("sluice-source-topic", jobs.encode()), ("sluice-source-partition", str(partition).encode()),
                ("sluice-source-offset", str(offset).encode()), ("sluice-attempts", b"3"), *extra]

    kafka.produce(dlq, b'{"type":"x.y","id":"a1"}', key=b"k1",
                  headers=[("trace", b"t1")] + letter("handler_error", 2, 7), flush=False)
    kafka.produce(dlq, None, key=b"k2",
                  headers=letter("message_too_large", 0, 9, [("sluice-value-omitted", b"too large")]), flush=False)
    kafka.produce(dlq, b"\xff\xfe binary", headers=[("trace", b"t3")] + letter("invalid_json", 1, 1))

    listed = json_lines(ctl(bin_dir, "dlq", "list", "--topic", dlq, "--json"))
    assert [(x["code"], x["type"], x["id"], x["key"], x["value_omitted"], x["attempts"]) for x in listed] == [
        ("handler_error", "x.y", "a1", "k1", False, 3),
        ("message_too_large", "", None, "k2", True, 3),
        ("invalid_json", "", None, None, False, 3)]

    r = ctl(bin_dir, "dlq", "replay", "--topic", dlq)
    assert r.returncode == 0, r.stderr
    assert "2 replayed, 0 failed, 1 skipped (3 of 3 dead letters selected)" in r.stdout
    assert "dead letter at partition 0 offset 1: its value was omitted" in r.stderr
    assert f'"{jobs}" [0] at offset 9' in r.stderr
    got = sorted(read_all(kafka, jobs, lambda ms: len(ms) >= 2, timeout=20), key=lambda m: m.partition())
    assert len(got) == 2
    assert (got[0].partition(), got[0].key(), got[0].value(), got[0].headers()) == \
        (1, None, b"\xff\xfe binary", [("trace", b"t3")])
    assert (got[1].partition(), got[1].key(), got[1].value(), got[1].headers()) == \
        (2, b"k1", b'{"type":"x.y","id":"a1"}', [("trace", b"t1")])

    r = ctl(bin_dir, "dlq", "replay", "--topic", dlq, "--code", "handler_error", "--to", other)
    assert r.returncode == 0, r.stderr
    assert f'replayed 1 to "{other}"' in r.stdout
    [m] = read_all(kafka, other, lambda ms: len(ms) >= 1, timeout=20)
    assert (m.key(), m.headers()) == (b"k1", [("trace", b"t1")])

    r = ctl(bin_dir, "dlq", "replay", "--topic", dlq, "--to", "no-such-topic-" + uuid.uuid4().hex[:6])
    assert r.returncode == 1
    assert "does not exist" in r.stderr
    assert ctl(bin_dir, "dlq", "list", "--topic", "no-such-" + uuid.uuid4().hex[:6]).returncode == 2
    assert ctl(bin_dir, "dlq", "list", "--dry-run").returncode == 2
    assert ctl(bin_dir, "dlq", "purge").returncode == 2


def _letter_headers(jobs, code, partition, offset, extra=()):
    return [("sluice-error-code", code.encode()), ("sluice-error-message", b"it broke"),
            ("sluice-source-topic", jobs.encode()), ("sluice-source-partition", str(partition).encode()),
            ("sluice-source-offset", str(offset).encode()), ("sluice-attempts", b"1"), *extra]


def test_dlq_pending_hides_replayed_letters(kafka, bin_dir):
    """replay marks each delivered letter in the dead-letter topic; list and
    replay --pending leave the marked ones out, and markers are no letters."""
    jobs = kafka.create_topic("jobs", partitions=2)
    dlq = kafka.create_topic("dlq", partitions=1)
    kafka.produce(dlq, b'{"type":"x.y","id":"a1"}', key=b"k1",
                  headers=_letter_headers(jobs, "handler_error", 1, 3), flush=False)
    kafka.produce(dlq, None, key=b"k2", flush=False,
                  headers=_letter_headers(jobs, "message_too_large", 0, 4, [("sluice-value-omitted", b"big")]))
    kafka.produce(dlq, b"not json", headers=_letter_headers(jobs, "invalid_json", 0, 5))

    def listed(*args):
        return [(x["offset"], x["code"]) for x in json_lines(ctl(bin_dir, "dlq", "list", "--topic", dlq,
                                                                   "--json", *args))]

    everything = [(0, "handler_error"), (1, "message_too_large"), (2, "invalid_json")]
    assert listed("--pending") == everything
    r = ctl(bin_dir, "dlq", "replay", "--topic", dlq, "--code", "handler_error", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert listed("--pending") == everything  # a dry run marks nothing

    r = ctl(bin_dir, "dlq", "replay", "--topic", dlq, "--code", "handler_error")
    assert r.returncode == 0, r.stderr
    assert "1 replayed, 0 failed, 0 skipped (1 of 3 dead letters selected)" in r.stdout
    assert listed() == everything
    assert listed("--pending") == everything[1:]

    # The mark: no key, no value, on the letter's partition, after the letter.
    msgs = read_all(kafka, dlq, lambda ms: len(ms) >= 4, timeout=20)
    assert len(msgs) == 4
    mark = msgs[3]
    assert (mark.partition(), mark.key(), mark.value()) == (0, None, None)
    assert dict(mark.headers()) == {"sluice-replayed-offset": b"0", "sluice-replayed-to": jobs.encode()}

    r = ctl(bin_dir, "dlq", "replay", "--topic", dlq, "--pending")
    assert r.returncode == 0, r.stderr
    assert "1 replayed, 0 failed, 1 skipped (2 of 3 dead letters selected)" in r.stdout
    # The omitted letter was skipped, not replayed: still pending.
    assert listed("--pending") == [(1, "message_too_large")]
    r = ctl(bin_dir, "dlq", "list", "--topic", dlq, "--pending")
    assert r.returncode == 0 and "1 of 3 dead letters" in r.stderr, r.stderr
    assert len(read_all(kafka, jobs, lambda ms: len(ms) >= 2, timeout=20)) == 2


def test_ctl_commands_take_the_worker_config(kafka, bin_dir, tmp_path, fake_worker):
    """lag, dlq and status with -c: group, topics, dead-letter topic, brokers
    and the HTTP listener come from the worker's configuration."""
    jobs = kafka.create_topic("jobs", partitions=2)
    dlq = kafka.create_topic("dlq", partitions=1)
    group = "g-" + uuid.uuid4().hex[:8]
    port = fake_worker.url.rsplit(":", 1)[1]

    def conf(name, listen):
        path = tmp_path / name
        path.write_text(conf_text(kafka.brokers, "host=127.0.0.1 dbname=x", [jobs], "res", dlq, group,
                                  http_listen=listen))
        return str(path)

    c = conf("worker.conf", f":{port}")
    for i in range(3):
        kafka.produce(jobs, b"{}", key=b"k%d" % i, flush=False)
    kafka.produce(dlq, b'{"type":"x.y","id":"a1"}', headers=_letter_headers(jobs, "handler_error", 0, 0))
    drop = ("SLUICE_KAFKA_BROKERS",)

    # lag: the group (never committed) and its topics, from the file.
    rows = json_lines(ctl(bin_dir, "lag", "-c", c, "--json", drop_env=drop))
    assert [(x["group"], x["topic"], x["partition"]) for x in rows] == [(group, jobs, 0), (group, jobs, 1)]
    assert sum(x["lag"] for x in rows) == 3
    # Options still win over the file.
    other = kafka.create_topic("other", partitions=1)
    rows = json_lines(ctl(bin_dir, "lag", "--config", c, "--topic", other, "--json", drop_env=drop))
    assert [(x["topic"], x["lag"]) for x in rows] == [(other, 0)]

    # dlq: the dead-letter topic and brokers from the file.
    letters = json_lines(ctl(bin_dir, "dlq", "list", "-c", c, "--json", drop_env=drop))
    assert [(x["code"], x["id"]) for x in letters] == [("handler_error", "a1")]
    r = ctl(bin_dir, "dlq", "replay", "-c", c, "--dry-run", drop_env=drop)
    assert r.returncode == 0 and "1 would be replayed" in r.stdout, r.stderr

    # status: http.listen, an empty or wildcard host reached on loopback.
    for listen in (f":{port}", f"0.0.0.0:{port}", f"127.0.0.1:{port}"):
        r = ctl(bin_dir, "status", "-c", conf("s.conf", listen), "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["url"] == fake_worker.url
    r = ctl(bin_dir, "status", "-c", conf("off.conf", ""))
    assert r.returncode == 2 and "listener is off" in r.stderr, r.stderr
    assert ctl(bin_dir, "status", "-c", c, fake_worker.url).returncode == 2

    # A broken file is refused with its line, as the worker refuses it.
    broken = tmp_path / "broken.conf"
    broken.write_text("kafka: { brokers = ; };\n")
    for cmd in (["lag"], ["dlq", "list"], ["status"]):
        r = ctl(bin_dir, *cmd, "-c", str(broken))
        assert r.returncode == 2 and f"{broken}:1: " in r.stderr, (cmd, r.stderr)


def test_dlq_prints_letters_escaped(kafka, bin_dir):
    jobs = kafka.create_topic("jobs", partitions=1)
    dlq = kafka.create_topic("dlq", partitions=1)
    kafka.produce(dlq, json.dumps({"type": "x\x1b[2J", "id": "a\x1b]0;pwned\x07\u202e"}).encode(), key=b"k",
                  headers=[("sluice-error-code", b"handler_error"), ("sluice-error-message", b"bad\x1b[31m"),
                           ("sluice-source-topic", jobs.encode()), ("sluice-source-partition", b"0"),
                           ("sluice-source-offset", b"1")])
    for args in (("dlq", "replay", "--topic", dlq, "--dry-run"), ("dlq", "list", "--topic", dlq)):
        r = subprocess.run([str(bin_dir / "sluicectl"), *args], capture_output=True, timeout=60, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        out = r.stdout + r.stderr
        assert b"\x1b" not in out and b"\x07" not in out and "\u202e".encode() not in out
        assert b"x\\x1B[2J" in out and b"a\\x1B]0;pwned\\x07\\xE2\\x80\\xAE" in out


def test_lag_per_partition_in_messages_and_seconds(kafka, pg, tmp_path, bin_dir):
    env = DlqEnv(kafka, pg, tmp_path)
    w = env.worker()
    opens = [cloudevent("ledger.open", {"account": f"a-{i}", "balance": 1}) for i in range(12)]
    env.produce([(json.dumps(ev).encode(), ev["data"]["account"].encode(), None) for ev in opens])
    assert len(read_all(kafka, env.results, lambda ms: len(ms) >= 12)) == 12, w.log()[-3000:]
    assert w.stop(60) == 0, w.log()[-3000:]

    # All done: no lag on any partition.
    rows = json_lines(ctl(bin_dir, "lag", "--group", env.group, "--topic", env.jobs, "--json"))
    assert [(x["topic"], x["partition"]) for x in rows] == [(env.jobs, p) for p in range(3)]
    ends = kafka.end_offsets(env.jobs)
    for x in rows:
        assert x["lag"] == 0 and x["lag_seconds"] == 0 and x["end"] == ends[x["partition"]]
        if ends[x["partition"]] > 0:
            assert x["committed"] == ends[x["partition"]]
    # Without --topic: the topics the group committed in.
    found = json_lines(ctl(bin_dir, "lag", "--group", env.group, "--json"))
    assert {x["topic"] for x in found} == {env.jobs}

    # A stopped worker and 10 new jobs: 10 behind, the oldest a little while ago.
    more = [cloudevent("ledger.open", {"account": f"b-{i}", "balance": 1}) for i in range(10)]
    env.produce([(json.dumps(ev).encode(), ev["data"]["account"].encode(), None) for ev in more])
    time.sleep(0.2)
    rows = json_lines(ctl(bin_dir, "lag", "--group", env.group, "--topic", env.jobs, "--json"))
    assert sum(x["lag"] for x in rows) == 10
    for x in rows:
        if x["lag"] > 0:
            assert 0 < x["lag_seconds"] < 60
        else:
            assert x["lag_seconds"] == 0
    r = ctl(bin_dir, "lag", "--group", env.group, "--topic", env.jobs)
    assert r.returncode == 0, r.stderr
    assert f'group "{env.group}": 10 messages behind' in r.stdout
    r = ctl(bin_dir, "lag", "--group", "nobody-" + uuid.uuid4().hex[:6])
    assert r.returncode == 1 and "has no committed offsets" in r.stderr


# ---- status ------------------------------------------------------------------

EXPOSITION = """\
# HELP sluice_jobs_total Jobs finished, by type and status.
# TYPE sluice_jobs_total counter
sluice_jobs_total{type="ledger.transfer",status="succeeded"} 120
sluice_jobs_total{type="ledger.transfer",status="rejected"} 7
sluice_jobs_total{type="ledger.transfer",status="failed"} 2
sluice_jobs_total{type="ledger.open",status="succeeded"} 100
# HELP sluice_job_duration_seconds Job run time.
# TYPE sluice_job_duration_seconds histogram
sluice_job_duration_seconds_bucket{type="ledger.transfer",le="0.005"} 100
sluice_job_duration_seconds_bucket{type="ledger.transfer",le="+Inf"} 129
sluice_job_duration_seconds_sum{type="ledger.transfer"} 1.29
sluice_job_duration_seconds_count{type="ledger.transfer"} 129
# TYPE sluice_jobs_in_flight gauge
sluice_jobs_in_flight 3
# TYPE sluice_job_retries_total counter
sluice_job_retries_total{type="ledger.transfer"} 4
# TYPE sluice_dead_letters_total counter
sluice_dead_letters_total{type="ledger.transfer",code="schema_violation"} 2
# TYPE sluice_consumer_lag_messages gauge
sluice_consumer_lag_messages{topic="jobs",partition="0"} 5
sluice_consumer_lag_messages{topic="jobs",partition="1"} 0
# TYPE sluice_consumer_lag_seconds gauge
sluice_consumer_lag_seconds{topic="jobs",partition="0"} 1.5
sluice_consumer_lag_seconds{topic="jobs",partition="1"} 0
# TYPE sluice_executor_utilisation_ratio gauge
sluice_executor_utilisation_ratio 0.25
# TYPE sluice_pg_errors_total counter
sluice_pg_errors_total{class="40"} 1
# TYPE sluice_kafka_errors_total counter
sluice_kafka_errors_total{error="odd \\"quoted\\" \\\\ name"} 6
# TYPE sluice_build_info gauge
sluice_build_info{version="0.1.0"} 1
"""


@pytest.fixture
def fake_worker():
    """An HTTP server with a canned /metrics; its .ready says what /readyz answers."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/metrics":
                code, body = 200, EXPOSITION
            elif self.path == "/readyz":
                code, body = (200, "ready\n") if server.ready else (503, "not ready: no partitions assigned\n")
            else:
                code, body = 404, "not found\n"
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.ready = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def test_status_summarises_metrics_and_readiness(fake_worker, bin_dir):
    r = ctl(bin_dir, "status", "--url", fake_worker.url, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["ready"] is True and s["version"] == "0.1.0" and s["url"] == fake_worker.url
    assert s["jobs"] == {"ledger.transfer": {"succeeded": 120, "rejected": 7, "failed": 2},
                         "ledger.open": {"succeeded": 100}}
    assert s["in_flight"] == 3 and s["executor_utilisation"] == 0.25
    assert s["retries"] == {"ledger.transfer": 4}
    assert s["dead_letters"] == {"ledger.transfer": {"schema_violation": 2}}
    assert s["lag"] == {"jobs[0]": {"messages": 5, "seconds": 1.5}, "jobs[1]": {"messages": 0, "seconds": 0}}
    assert s["pg_errors"] == {"40": 1} and s["kafka_errors"] == {'odd "quoted" \\ name': 6}
    assert s["job_duration_mean_seconds"] == {"ledger.transfer": pytest.approx(0.01)}

    r = ctl(bin_dir, "status", fake_worker.url)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^ready +yes$", r.stdout, re.M)
    assert re.search(r"^  ledger\.transfer +succeeded=120 rejected=7 failed=2$", r.stdout, re.M)
    assert re.search(r"^executors busy +25%$", r.stdout, re.M)
    assert re.search(r"^  jobs\[0\] +messages=5 seconds=1.5$", r.stdout, re.M)

    fake_worker.ready = False
    r = ctl(bin_dir, "status", "--url", fake_worker.url, "--json")
    assert r.returncode == 1, r.stderr
    s = json.loads(r.stdout)
    assert s["ready"] is False and s["ready_reason"] == "not ready: no partitions assigned"


def test_status_unreachable_and_bad_url(bin_dir):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = ctl(bin_dir, "status", "--url", f"http://127.0.0.1:{port}")
    assert r.returncode == 2
    assert "could not connect" in r.stderr
    assert ctl(bin_dir, "status", "--url", "https://127.0.0.1:1").returncode == 2


# ---- check-config --------------------------------------------------------------

def test_check_config_ok_and_broken(tmp_path, bin_dir):
    conninfo = "host=127.0.0.1 dbname=x user=u password=sekret"
    good = tmp_path / "good.conf"
    good.write_text(conf_text("127.0.0.1:9", conninfo, ["jobs.a", "jobs.b"], "res", "dead", "grp",
                              executors=3, http_listen="127.0.0.1:0"))
    good.chmod(0o600)  # it holds a password: readable by others, it draws a warning (below)
    drop = ("SLUICE_KAFKA_BROKERS", "SLUICE_PG_CONNINFO")
    for args in (["check-config", str(good)], ["check-config", "-c", str(good)]):
        r = ctl(bin_dir, *args, drop_env=drop)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert out.splitlines()[0] == f"{good}: ok"
        assert "sekret" not in out and "password=***" in out
        assert re.search(r"^  group +grp$", out, re.M) and re.search(r"^  topics +jobs\.a jobs\.b$", out, re.M)
        assert re.search(r"^  executors +3$", out, re.M)
        assert "    ledger.transfer: handler ledger.transfer, schema " in out
        assert "max_in_flight 1000" in out
    r = ctl(bin_dir, "check-config", str(good), drop_env=drop,
            env={"SLUICE_PG_CONNINFO": "host=h password=other-secret"})
    assert r.returncode == 0 and "other-secret" not in r.stdout
    assert "(from SLUICE_PG_CONNINFO)" in r.stdout

    assert "holds a secret" not in r.stderr
    good.chmod(0o644)
    r = ctl(bin_dir, "check-config", str(good), drop_env=drop)
    assert r.returncode == 0 and "sekret" not in r.stdout + r.stderr
    assert f'holds a secret (a password in postgres.conninfo) but is readable by others' in r.stderr

    bad = tmp_path / "bad.conf"
    bad.write_text(good.read_text().replace('handler = "ledger.transfer"', 'handler = "no.such.handler"'))
    bad.chmod(0o600)
    r = ctl(bin_dir, "check-config", str(bad), drop_env=drop)
    assert r.returncode == 1 and r.stdout == ""
    assert re.match(rf"{re.escape(str(bad))}:\d+: unknown handler \"no.such.handler\"", r.stderr), r.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text("kafka: { brokers = ; };\n")
    r = ctl(bin_dir, "check-config", str(broken), drop_env=drop)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{broken}:1: "), r.stderr
    assert ctl(bin_dir, "check-config", str(good), str(bad)).returncode == 2
    assert ctl(bin_dir, "check-config", "--frobnicate").returncode == 2
