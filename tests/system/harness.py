"""Process and service helpers for the system tests and benchmarks.

Kafka: topic creation with unique names, producing and reading back with
confluent-kafka (its own bundled librdkafka, so the tests do not share the
worker's client library). Pg: a per-test database and a psycopg connection.
"""
import os
import pathlib
import re
import time
import uuid

import psycopg
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The binaries under test: build/, or build/san-<set> for `make test SANITIZE=...`
# (make system passes SLUICE_BIN_DIR).
BIN = pathlib.Path(os.environ.get("SLUICE_BIN_DIR") or ROOT / "build")


class Kafka:
    def __init__(self, brokers, prefix="t"):
        self.brokers = brokers
        self.prefix = re.sub(r"[^A-Za-z0-9._-]", "_", prefix)[:40]
        self.admin = AdminClient({"bootstrap.servers": brokers})
        self._producer = None
        self.topics = []

    def topic_name(self, base):
        return f"{base}.{self.prefix}.{uuid.uuid4().hex[:8]}"

    def create_topic(self, base="t", partitions=1, config=None, name=None):
        """Creates a new empty topic and waits until it is usable; returns its name."""
        name = name or self.topic_name(base)
        cfg = {"max.message.bytes": str(4 * 1024 * 1024)}
        cfg.update(config or {})
        futures = self.admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=cfg)],
            operation_timeout=30)
        futures[name].result(timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline:
            md = self.admin.list_topics(name, timeout=5)
            t = md.topics.get(name)
            if t is not None and t.error is None and len(t.partitions) == partitions and all(
                    p.leader >= 0 for p in t.partitions.values()):
                break
            time.sleep(0.1)
        self.topics.append(name)
        return name

    @property
    def producer(self):
        if self._producer is None:
            self._producer = Producer({"bootstrap.servers": self.brokers, "acks": "all",
                                       "enable.idempotence": True, "linger.ms": 5,
                                       "message.max.bytes": 8 * 1024 * 1024})
        return self._producer

    def produce(self, topic, value, key=None, headers=None, partition=None, flush=True):
        kw = {}
        if partition is not None:
            kw["partition"] = partition
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, **kw)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)
        if flush:
            self.flush()

    def flush(self):
        left = self.producer.flush(60)
        if left:
            raise RuntimeError(f"{left} messages not delivered")

    def consume(self, topic, count=None, timeout=30.0, idle=None):
        """Reads `topic` from the beginning until `count` messages (or, with
        count=None, until `idle` seconds pass with nothing new) or `timeout`.
        Returns the messages as a list of confluent_kafka.Message."""
        c = Consumer({"bootstrap.servers": self.brokers, "group.id": "reader-" + uuid.uuid4().hex,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "isolation.level": "read_committed"})
        md = self.admin.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p, 0) for p in md.topics[topic].partitions]
        c.assign(parts)
        out = []
        deadline = time.time() + timeout
        last = time.time()
        try:
            while time.time() < deadline:
                if count is not None and len(out) >= count:
                    break
                if count is None and idle is not None and time.time() - last > idle:
                    break
                m = c.poll(0.2)
                if m is None:
                    continue
                if m.error():
                    raise KafkaException(m.error())
                out.append(m)
                last = time.time()
        finally:
            c.close()
        return out

    def end_offsets(self, topic):
        c = Consumer({"bootstrap.servers": self.brokers, "group.id": "w-" + uuid.uuid4().hex})
        md = self.admin.list_topics(topic, timeout=10)
        total = {}
        for p in md.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total[p] = hi
        c.close()
        return total

    def close(self):
        if self._producer is not None:
            self._producer.flush(10)
        if self.topics:
            try:
                fs = self.admin.delete_topics(self.topics, operation_timeout=10)
                for f in fs.values():
                    try:
                        f.result(timeout=10)
                    except Exception:
                        pass
            except Exception:
                pass


class Pg:
    def __init__(self, admin_conninfo, dbname):
        self.conninfo = _replace_dbname(admin_conninfo, dbname)
        self.dbname = dbname
        self.conn = psycopg.connect(self.conninfo, autocommit=True)

    def query(self, sql, *args):
        with self.conn.cursor() as cur:
            cur.execute(sql, args or None)
            return cur.fetchall() if cur.description else None

    def scalar(self, sql, *args):
        rows = self.query(sql, *args)
        return rows[0][0] if rows else None

    def reconnect(self, timeout=60):
        """Reconnects after a server restart."""
        deadline = time.time() + timeout
        while True:
            try:
                self.conn = psycopg.connect(self.conninfo, autocommit=True)
                return
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)

    def close(self):
        self.conn.close()


def _replace_dbname(conninfo, dbname):
    if re.search(r"\bdbname=\S+", conninfo):
        return re.sub(r"\bdbname=\S+", f"dbname={dbname}", conninfo)
    return f"{conninfo} dbname={dbname}"


# ---- the worker ----------------------------------------------------------

import json
import os
import signal
import subprocess


def conf_text(brokers, conninfo, topics, results, dlq, group, executors=4, max_in_flight=1000,
              max_batch=1, shutdown_timeout=30.0, revoke_timeout=20.0, retry=None, extra="",
              consumer_properties=(), producer_properties=(), http_listen="", max_result_bytes=None):
    """A worker.conf for a test: the ledger job types, with schemas from the
    repository."""
    retry = retry or {"max_attempts": 8, "initial_backoff": 0.05, "max_backoff": 1.0}
    q = json.dumps
    more_limits = f"\n  max_result_bytes = {max_result_bytes};" if max_result_bytes else ""
    return f"""
kafka: {{
  brokers = {q(brokers)};
  group = {q(group)};
  topics = [ {", ".join(q(t) for t in topics)} ];
  dlq_topic = {q(dlq)};
  result_topic = {q(results)};
  consumer_properties = [ {", ".join(q(p) for p in consumer_properties)} ];
  producer_properties = [ {", ".join(q(p) for p in producer_properties)} ];
}};
postgres: {{ conninfo = {q(conninfo)}; }};
executors = {executors};
limits: {{
  max_in_flight = {max_in_flight};
  max_batch = {max_batch};
  shutdown_timeout = {float(shutdown_timeout)};
  revoke_timeout = {float(revoke_timeout)};{more_limits}
}};
retry: {{ max_attempts = {retry["max_attempts"]}; initial_backoff = {float(retry["initial_backoff"])}; max_backoff = {float(retry["max_backoff"])}; }};
jobs = (
  {{ type = "ledger.open"; handler = "ledger.open"; schema = {q(str(ROOT / "schemas/jobs/ledger.open.json"))}; }},
  {{ type = "ledger.transfer"; handler = "ledger.transfer"; schema = {q(str(ROOT / "schemas/jobs/ledger.transfer.json"))}; }}
);
http: {{ listen = {q(http_listen)}; }};
log: {{ level = "info"; }};
{extra}
"""


class Worker:
    """One sluice-worker process with its own config file and log file."""

    def __init__(self, conf_path, log_path, env=None):
        self.conf_path = str(conf_path)
        self.log_path = str(log_path)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("SLUICE_KAFKA_BROKERS", "SLUICE_PG_CONNINFO")}
        self.env.update(env or {})
        self.proc = None

    def start(self):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(BIN / "sluice-worker"), "-c", self.conf_path],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self):
        if self.alive():
            self.proc.kill()
        return self.wait(30)

    def stop(self, timeout=60):
        """SIGTERM and wait; returns the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def wait_for_log(self, text, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log():
                return True
            if not self.alive():
                raise AssertionError(f"worker exited ({self.proc.returncode}) before logging {text!r}:\n"
                                     + self.log()[-3000:])
            time.sleep(0.1)
        raise AssertionError(f"worker did not log {text!r} within {timeout}s:\n" + self.log()[-3000:])


def migrate(conninfo):
    """sluice's own migrations, then the ledger demo's (the job types of
    conf_text()). The sets are named, not left to the folders' names, so
    that the call means the same from any working folder."""
    r = subprocess.run([str(BIN / "sluicectl"), "migrate", "--conninfo", conninfo,
                        "--dir", str(ROOT / "schemas" / "sql"), "--set", "sluice",
                        "--dir", str(ROOT / "schemas" / "ledger"), "--set", "ledger"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout


def cloudevent(job_type, data, job_id=None, source="tests"):
    return {"specversion": "1.0", "id": job_id or uuid.uuid4().hex, "source": source, "type": job_type,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "datacontenttype": "application/json", "data": data}


class Results:
    """Every result event read from a topic, grouped by job id."""

    def __init__(self, messages):
        self.raw = [m.value() for m in messages]
        self.by_job = {}
        self.unparsed = []
        for m in messages:
            ev = json.loads(m.value())
            # A message that was not a CloudEvent has no job id: its result's
            # own id (its coordinates) stands for it.
            job = ev["data"].get("id") or "result:" + ev["id"]
            self.by_job.setdefault(job, []).append((m.value(), ev))

    def status_counts(self):
        counts = {}
        for copies in self.by_job.values():
            st = copies[0][1]["data"]["status"]
            counts[st] = counts.get(st, 0) + 1
        return counts

    def assert_copies_identical(self):
        for job_id, copies in self.by_job.items():
            first = copies[0][0]
            for raw, _ in copies[1:]:
                assert raw == first, f"job {job_id}: result copies differ:\n{first}\n{raw}"

    def first(self, job_id):
        return self.by_job[job_id][0][1]


def read_results(kafka, topic, expected_jobs, timeout=180):
    """Reads `topic` until results for `expected_jobs` distinct job ids have
    arrived (or timeout), then returns Results."""
    deadline = time.time() + timeout
    msgs = []
    seen = set()
    c = Consumer({"bootstrap.servers": kafka.brokers, "group.id": "results-" + uuid.uuid4().hex,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    md = kafka.admin.list_topics(topic, timeout=10)
    c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    try:
        while time.time() < deadline and len(seen) < expected_jobs:
            batch = c.consume(1000, 0.5)
            for m in batch:
                if m.error():
                    raise KafkaException(m.error())
                msgs.append(m)
                ev = json.loads(m.value())
                seen.add(ev["data"].get("id") or "result:" + ev["id"])
        # Pick up duplicates already on their way.
        end = time.time() + 1.0
        while time.time() < end:
            for m in c.consume(1000, 0.2):
                if not m.error():
                    msgs.append(m)
    finally:
        c.close()
    return Results(msgs)
