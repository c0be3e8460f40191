"""Process and service helpers for the system tests and benchmarks.

Kafka: topic creation with unique names, producing and reading back with
confluent-kafka (its own bundled librdkafka, so the tests do not share the
worker's client library). Pg: a per-test database and a psycopg connection.
"""
import pathlib
import re
import time
import uuid

import psycopg
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parents[2]


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

    def close(self):
        self.conn.close()


def _replace_dbname(conninfo, dbname):
    if re.search(r"\bdbname=\S+", conninfo):
        return re.sub(r"\bdbname=\S+", f"dbname={dbname}", conninfo)
    return f"{conninfo} dbname={dbname}"
