"""Operator papercuts of the worker itself: the ledger's shape checked at
start, what /readyz and the metrics say, lag after a transactional
producer's commit marker, result times from hostile timestamps."""
import json
import os
import re
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from harness import cloudevent, read_results
from test_ops import samples, scrape
from test_outcomes import http_port, readyz


def test_ledger_of_the_wrong_shape_refuses_to_start(env):
    """A sluice.jobs without the columns the job statements use would
    dead-letter every job as retries_exhausted: the worker says what is
    wrong and exits 1 instead."""
    env.pg.query("alter table sluice.jobs drop column attempts")
    w = env.worker().start()
    assert w.wait(30) == 1
    log = w.log()
    assert "sluice.jobs does not have the shape this worker needs" in log, log[-2000:]
    assert "attempts" in log and "sluicectl migrate" in log


def test_readyz_says_authentication_failed(env):
    """A wrong password is retried (a fleet survives a rotated secret), and
    /readyz and the log say plainly what is wrong."""
    env.pg.query("create role wrongpw login password 'right'")
    hba_path = os.path.join(os.environ["SLUICE_SERVICES_DIR"], "pg", "data", "pg_hba.conf")
    with open(hba_path) as f:
        hba = f.read()
    try:
        # Trust for everyone but this role, which must give its password.
        with open(hba_path, "w") as f:
            f.write("host all wrongpw 127.0.0.1/32 scram-sha-256\n" + hba)
        env.pg.query("select pg_reload_conf()")
        w = env.worker(http_listen="127.0.0.1:0")
        conninfo = re.sub(r"\buser=\S+", "", env.pg.conninfo) + " user=wrongpw password=wrong"
        with open(w.conf_path) as f:
            body = f.read()
        with open(w.conf_path, "w") as f:
            f.write(re.sub(r'conninfo = "[^"]*"', "conninfo = " + json.dumps(conninfo), body))
        w.start()
        port = http_port(w)
        w.wait_for_log("password authentication failed")
        code, why = readyz(port)
        assert code == 503 and "password authentication failed" in why, why
        assert "=wrong " not in why and "=wrong\n" not in why, why
        assert w.alive()
        assert w.stop(30) == 0
    finally:
        with open(hba_path, "w") as f:
            f.write(hba)
        env.pg.query("select pg_reload_conf()")


def test_lag_after_a_transactional_commit_marker(env):
    """A transactional producer's commit marker takes the last offset of the
    partition: once the job before it is done, lag is 0 and the group's
    committed offset reaches the end."""
    w = env.worker(http_listen="127.0.0.1:0").start()
    port = http_port(w)
    p = Producer({"bootstrap.servers": env.kafka.brokers, "transactional.id": "tx-" + uuid.uuid4().hex})
    p.init_transactions(30)
    p.begin_transaction()
    ev = cloudevent("ledger.open", {"account": "tx-1", "balance": 5})
    p.produce(env.jobs, json.dumps(ev).encode(), key=b"tx-1", partition=0)
    p.commit_transaction(30)
    res = read_results(env.kafka, env.results, 1, timeout=60)
    assert res.first(ev["id"])["data"]["status"] == "succeeded"
    end = env.kafka.end_offsets(env.jobs)[0]
    assert end == 2  # the job and the marker
    deadline = time.time() + 20
    while True:
        s = samples(scrape(port)[2])
        lag = s.get(("sluice_consumer_lag_messages", (("partition", "0"), ("topic", env.jobs))))
        c = Consumer({"bootstrap.servers": env.kafka.brokers, "group.id": env.group})
        committed = c.committed([TopicPartition(env.jobs, 0)], timeout=10)[0].offset
        c.close()
        if lag == 0 and committed == end:
            break
        assert time.time() < deadline, f"lag {lag}, committed {committed}, end {end}"
        time.sleep(0.5)
    assert w.stop(30) == 0


def test_compressed_jobs_and_aborted_transactions_from_another_client(env):
    """Jobs from another client (confluent-kafka's own librdkafka build)
    compressed with each codec Kafka has run; a job of an aborted transaction
    never runs, the one committed after it does."""
    w = env.worker().start()
    sent = {}
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        p = Producer({"bootstrap.servers": env.kafka.brokers, "compression.type": codec, "linger.ms": 5})
        for i in range(3):
            ev = cloudevent("ledger.open", {"account": f"{codec}-{i}", "balance": 5})
            p.produce(env.jobs, json.dumps(ev).encode(), key=f"{codec}-{i}".encode())
            sent[ev["id"]] = codec
        assert p.flush(30) == 0
    tx = Producer({"bootstrap.servers": env.kafka.brokers, "transactional.id": "tx-" + uuid.uuid4().hex,
                   "compression.type": "zstd"})
    tx.init_transactions(30)
    tx.begin_transaction()
    aborted = cloudevent("ledger.open", {"account": "aborted", "balance": 5})
    # One key and partition for both: had the aborted job been read, it
    # would have run before the committed one, on the same executor.
    tx.produce(env.jobs, json.dumps(aborted).encode(), key=b"tx", partition=0)
    tx.flush(30)
    tx.abort_transaction(30)
    tx.begin_transaction()
    committed = cloudevent("ledger.open", {"account": "committed", "balance": 5})
    tx.produce(env.jobs, json.dumps(committed).encode(), key=b"tx", partition=0)
    tx.commit_transaction(30)
    sent[committed["id"]] = "transaction"
    res = read_results(env.kafka, env.results, len(sent), timeout=90)
    for job, how in sent.items():
        assert res.first(job)["data"]["status"] == "succeeded", (how, res.first(job))
    assert aborted["id"] not in res.by_job
    assert env.pg.scalar("select count(*) from sluice.jobs where id = %s", aborted["id"]) == 0
    assert env.pg.scalar("select count(*) from ledger.accounts where id = 'aborted'") == 0
    assert w.stop(30) == 0

def test_far_future_timestamp_gives_a_valid_result_time(env):
    """The producer sets a message's timestamp: one past year 9999 must not
    make a result whose time fails our own result schema."""
    w = env.worker().start()
    far = 10_000_000_000_000_000  # ms: year 318857
    env.kafka.producer.produce(env.jobs, value=b"{not json", key=b"k", timestamp=far)
    env.kafka.flush()
    res = read_results(env.kafka, env.results, 1, timeout=60)
    (raw, ev), = [c[0] for c in res.by_job.values()]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", ev["time"]), ev["time"]
    assert w.stop(30) == 0


def test_duplicates_are_not_database_errors(env):
    """A redelivered transfer collides with its first run's row (its handler
    fails with 23505) and is answered with the stored result: that counts in
    sluice_duplicates_total only, not as a permanent PostgreSQL error."""
    w = env.worker(executors=2, http_listen="127.0.0.1:0").start()
    port = http_port(w)
    opens = env.open_accounts(10)
    read_results(env.kafka, env.results, len(opens), timeout=60)
    t = cloudevent("ledger.transfer", {"from": "acc-001", "to": "acc-002", "amount": 1})
    for _ in range(5):
        env.produce_jobs([t], lambda ev: b"acc-001")
    res = read_results(env.kafka, env.results, len(opens) + 1, timeout=60)
    # read_results stops soon after the first copy's result; the four
    # copies after it are answered one by one, later.
    deadline = time.time() + 30
    while True:
        s = samples(scrape(port)[2])
        if s.get(("sluice_duplicates_total", ()), 0) >= 4 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert s[("sluice_duplicates_total", ())] == 4, s.get(("sluice_duplicates_total", ()))
    assert s.get(("sluice_pg_errors_total", (("class", "permanent"),)), 0) == 0
    res.assert_copies_identical()
    assert w.stop(30) == 0


def test_cloudevents_binary_mode(env):
    """The CloudEvents Kafka binding's binary mode: attributes in ce_*
    headers, the data as the value. Decoded like structured mode, and its
    result names the same job."""
    w = env.worker().start()
    job_id = uuid.uuid4().hex
    headers = [("ce_specversion", b"1.0"), ("ce_id", job_id.encode()), ("ce_source", b"binary-tests"),
               ("ce_type", b"ledger.open"), ("content-type", b"application/json")]
    env.kafka.produce(env.jobs, json.dumps({"account": "bin-1", "balance": 7}).encode(), key=b"bin-1",
                      headers=headers)
    # The same without ce_type: a clear error, not "missing specversion".
    env.kafka.produce(env.jobs, b'{"account": "bin-2", "balance": 7}', key=b"bin-2",
                      headers=[h for h in headers if h[0] != "ce_type"])
    res = read_results(env.kafka, env.results, 2, timeout=60)
    ok = res.first(job_id)
    assert ok["data"]["status"] == "succeeded" and ok["data"]["source"] == "binary-tests", ok
    bad = [c[0][1] for j, c in res.by_job.items() if j != job_id][0]
    assert bad["data"]["error"]["code"] == "missing_attribute" and "type" in bad["data"]["error"]["message"], bad
    assert env.pg.scalar("select balance from ledger.accounts where id = 'bin-1'") == 7
    assert w.stop(30) == 0


def test_brokers_down_said_once_and_plainly(env):
    """With no broker to reach, /readyz names the brokers (not "not in the
    consumer group"), and each failure is logged once, not also as a
    librdkafka FAIL line."""
    w = env.worker(http_listen="127.0.0.1:0")
    with open(w.conf_path) as f:
        body = f.read()
    with open(w.conf_path, "w") as f:
        f.write(re.sub(r'brokers = "[^"]*"', 'brokers = "127.0.0.1:1"', body))
    w.start()
    port = http_port(w)
    w.wait_for_log("_TRANSPORT")
    deadline = time.time() + 20
    while "kafka brokers unreachable" not in readyz(port)[1]:
        assert time.time() < deadline, readyz(port)
        time.sleep(0.2)
    assert w.stop(30) == 0
    log = w.log()
    assert "kafka FAIL" not in log, log[-2000:]
