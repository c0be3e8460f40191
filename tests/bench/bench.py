"""The throughput benchmark behind `make bench` (issue 5).

Run by tests/bench/run with fresh services, or directly with the environment
the system tests have (SLUICE_KAFKA_BROKERS, SLUICE_PG_CONNINFO,
SLUICE_SERVICES_DIR). For every mode (a name plus worker settings):

1. a fresh database (migrated with sluicectl, accounts inserted in SQL) and
   fresh topics;
2. --jobs ledger.transfer CloudEvents preloaded into the jobs topic, keyed by
   the paying account;
3. the worker started on them: throughput is jobs / (last result received by a
   live consumer - the worker's first partition assignment, as seen in its
   log), CPU is the worker's user+sys time over the whole run divided by the
   jobs, peak RSS is VmHWM, both read just before SIGTERM;
4. unless --skip-latency, a fresh worker on fresh topics and database gets jobs
   at a steady half of that throughput for --latency-seconds; latency is the
   time a result reaches the driver's consumer minus the job's CloudEvent
   `time` (millisecond precision, set when the driver produces the job);
5. the ceiling: pgbench running tests/bench/ledger_job.sql, the same SQL
   transaction as one job, with as many connections as the worker has
   executors and as many transactions as there are jobs, over the worker's
   protocol (-M extended for PQexecParams, -M prepared once the sources
   prepare statements; --ceiling-protocol overrides).

Before the first mode, --warm-up messages (not measured) go through the
broker, and then the worker runs over --warm-up jobs with the first mode's
settings (not measured either), again until the broker's JIT compiler
threads used less than 2% of a CPU in a round (at most 6 rounds), so that
compiling the broker's fetch, produce and offset-commit paths does not land
in the first mode's figures. Each mode reports the compiler's CPU per job
(kafka_jit_cpu_us_per_job).

--scaling adds throughput runs with 1, 2 and 4 executors and with 2 worker
processes in one group; --inflight-test adds a run with max_in_flight=10000
over 50,000 preloaded jobs, whose peak RSS is the memory figure of issue 5
(the jobs in flight are sampled from the worker's /metrics).

--latency-bound (issue 16; `make bench-scaling`) runs bench.wait jobs
instead: a SQL handler (sql_wait.sql) that waits --wait-ms on the server in
pg_sleep and does nothing else, one transaction per job, keyed over
--wait-keys keys. Jobs/s against 1, 4, 16, 64 executors on one partition (the
worker runs different keys of one partition on different executors), the
same grouped at 16 and 64, and against 1, 2, 4 processes in one group on 8
partitions, beside the ideal executors x processes / wait and pgbench running
the same transaction (wait_job.sql) with as many clients; per run the peak
RSS of each process, the most PostgreSQL sessions seen at once (sampled from
pg_stat_activity), the key skew and the CPU other processes took. Without
--modes, only these runs.

Prints a table and one `BENCH {json}` line per run. Timings are wall-clock on a
machine shared with PostgreSQL, Kafka and this driver.
"""
import argparse
import datetime
import glob
import json
import math
import os
import pathlib
import platform
import random
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "system"))
import psycopg  # noqa: E402
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from harness import BIN, ROOT, Kafka, Pg, Worker, conf_text, migrate  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PGBENCH_SCRIPT = os.path.join(BENCH_DIR, "ledger_job.sql")
PGBENCH_WAIT_SCRIPT = os.path.join(BENCH_DIR, "wait_job.sql")
THROUGHPUT_DEFINITION = ("jobs / (last result received by a live consumer - first partition "
                         "assignment in the worker log)")
LATENCY_DEFINITION = "result received by a live consumer - CloudEvent time of the job"
KNOWN_MODES = {
    "per-job": {"max_batch": 1},
    "grouped": {"max_batch": 32},
    # ledger.transfer as a SQL function (sql_transfer.sql) instead of the C handler.
    "per-job-sql": {"max_batch": 1, "handler": "sql"},
    "grouped-sql": {"max_batch": 32, "handler": "sql"},
    # Through PgBouncer in transaction pooling mode (tests/services starts it,
    # default_pool_size 4), with postgres.pooling = "transaction".
    "per-job-pgbouncer": {"max_batch": 1, "pgbouncer": 1},
    "grouped-pgbouncer": {"max_batch": 32, "pgbouncer": 1},
    # Latency-bound: bench.wait jobs (sql_wait.sql, pg_sleep of --wait-ms on
    # the server, nothing else) instead of transfers; see --latency-bound.
    "per-job-wait": {"max_batch": 1, "job": "wait"},
    "grouped-wait": {"max_batch": 32, "job": "wait"},
}
SETTING_KEYS = ("max_batch", "max_in_flight", "executors", "workers", "producer", "consumer", "handler",
                "pgbouncer", "job", "partitions")
SQL_TRANSFER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sql_transfer.sql")
SQL_WAIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sql_wait.sql")
KAFKA_ECHO = pathlib.Path(os.environ.get("SLUICE_KAFKA_ECHO") or ROOT / "build" / "tests" / "kafka_echo")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SUBJECT = re.compile(rb'"subject":"([^"]+)"')
JOB_ID = re.compile(rb'"id":"([^"]+)"')


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchError(Exception):
    pass


# ---- modes ---------------------------------------------------------------

def parse_modes(text):
    """`per-job,grouped,name:max_batch=8:max_in_flight=2000` -> [(name, settings)].
    A known name takes its defaults; settings after it override them."""
    modes = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, *pairs = item.split(":")
        settings = dict(KNOWN_MODES.get(name, {}))
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in SETTING_KEYS:
                raise SystemExit(f"bench: mode {item!r}: expected {'|'.join(SETTING_KEYS)}=VALUE, got {pair!r}")
            if key in ("producer", "consumer"):
                settings.setdefault(key, []).append(value)
            elif key == "handler":
                if value not in ("c", "sql"):
                    raise SystemExit(f"bench: mode {item!r}: handler is c or sql, not {value!r}")
                settings[key] = value
            elif key == "job":
                if value not in ("transfer", "wait"):
                    raise SystemExit(f"bench: mode {item!r}: job is transfer or wait, not {value!r}")
                settings[key] = value
            else:
                settings[key] = int(value)
        if name not in KNOWN_MODES and not pairs:
            raise SystemExit(f"bench: unknown mode {name!r}: known are {', '.join(KNOWN_MODES)}, "
                             "or give settings (name:max_batch=8)")
        modes.append((name, settings))
    if not modes:
        raise SystemExit("bench: --modes is empty")
    return modes


def slug(name):
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "mode"


# ---- machine and process figures ------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_mib": mem, "kernel": platform.release()}


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def read_stat(path):
    """(command name, utime + stime in seconds) of a /proc/.../stat file."""
    with open(path) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu_seconds(pid):
    """utime + stime of a live process, in seconds."""
    return read_stat(f"/proc/{pid}/stat")[1]


def proc_tree_cpu_seconds(pid):
    """CPU of a process, its reaped children and its live children, in
    seconds: PostgreSQL's postmaster and backends."""
    total = 0.0
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    total += sum(int(x) for x in fields[11:15]) / CLK_TCK
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def system_cpu():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def proc_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


# ---- the environment -------------------------------------------------------

class Env:
    def __init__(self, args):
        self.brokers = os.environ.get("SLUICE_KAFKA_BROKERS")
        self.conninfo = os.environ.get("SLUICE_PG_CONNINFO")
        services = os.environ.get("SLUICE_SERVICES_DIR")
        if not self.brokers or not self.conninfo or not services:
            raise SystemExit("bench: SLUICE_KAFKA_BROKERS, SLUICE_PG_CONNINFO and SLUICE_SERVICES_DIR must be set; "
                             "run tests/bench/run (or make bench)")
        self.args = args
        self.services_dir = services
        self.tag = args.tag
        self.work = os.path.join(services, "bench" + (f"-{self.tag}" if self.tag else ""))
        os.makedirs(self.work, exist_ok=True)
        self.pgbench = find_pgbench()
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            self.pg_version = c.execute("show server_version").fetchone()[0]
        self.ceilings = {}
        self.result_sample = None
        self.result_samples = {}  # per job kind, for the ceilings

    def dbname(self, base):
        return "bench_" + slug(base) + (f"_{slug(self.tag)}" if self.tag else "")

    def fresh_db(self, base):
        """A new migrated database with the accounts opened; returns a Pg."""
        name = self.dbname(base)
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            c.execute(f"drop database if exists {name} with (force)")
            c.execute(f"create database {name}")
        db = Pg(self.conninfo, name)
        migrate(db.conninfo)
        # acc-1 .. acc-N with balances no transfer of this benchmark can drain.
        db.query("insert into ledger.accounts (id, balance) "
                 "select 'acc-' || i, 1000000000000 from generate_series(1, %s) i", self.args.accounts)
        db.query("vacuum analyze ledger.accounts")
        return db

    def drop_db(self, db):
        db.close()
        if self.args.keep:
            return
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            c.execute(f"drop database if exists {db.dbname} with (force)")

    def services_cpu(self):
        """CPU seconds used so far by PostgreSQL (all its processes) and by the
        Kafka broker; None for a service whose pid is unknown."""
        out = {"postgres": None, "kafka": None}
        try:
            with open(os.path.join(self.services_dir, "pg", "data", "postmaster.pid")) as f:
                out["postgres"] = proc_tree_cpu_seconds(int(f.readline()))
        except (OSError, ValueError):
            pass
        try:
            out["kafka"] = proc_cpu_seconds(self.kafka_pid())
        except (OSError, ValueError):
            pass
        return out

    def kafka_pid(self):
        with open(os.path.join(self.services_dir, "kafka", "pid")) as f:
            return int(f.read().strip())

    def kafka_jit_seconds(self):
        """CPU seconds the broker's JIT compiler threads used so far, or None."""
        try:
            pid, total = self.kafka_pid(), 0.0
            for task in os.listdir(f"/proc/{pid}/task"):
                try:
                    name, cpu = read_stat(f"/proc/{pid}/task/{task}/stat")
                except OSError:
                    continue  # the thread ended meanwhile
                if name.startswith(("C1 Compiler", "C2 Compiler")):
                    total += cpu
            return total
        except (OSError, ValueError):
            return None

    def checkpoint(self):
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            c.execute("checkpoint")


def worker_protocol():
    """pgbench's -M that matches how the worker talks to PostgreSQL: `prepared`
    once the sources prepare statements, else `extended` (PQexecParams sends
    unnamed statements with parameters, as pgbench -M extended does)."""
    for path in glob.glob(str(ROOT / "common" / "*.c")) + glob.glob(str(ROOT / "workers" / "*.c")):
        with open(path, errors="replace") as f:
            if re.search(r"\bPQ(send)?[Pp]repare\b", f.read()):
                return "prepared"
    return "extended"


def find_pgbench():
    """The newest versioned pgbench, else Debian's wrapper, else None."""
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p)], reverse=True) + ["/usr/bin/pgbench"]
    for p in cands:
        if os.access(p, os.X_OK):
            return p
    return None


# ---- jobs ------------------------------------------------------------------

def event_time(ms):
    secs, milli = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{milli:03d}Z"


def transfer(rnd, accounts, job_id, ms):
    a = rnd.randint(1, accounts)
    b = 1 + (a + rnd.randint(0, accounts - 2)) % accounts
    key = f"acc-{a}"
    value = json.dumps({"specversion": "1.0", "id": job_id, "source": "bench", "type": "ledger.transfer",
                        "time": event_time(ms), "datacontenttype": "application/json",
                        "data": {"from": key, "to": f"acc-{b}", "amount": rnd.randint(1, 100)}},
                       separators=(",", ":"))
    return key, value


def wait_job(rnd, keys, job_id, ms):
    """A bench.wait CloudEvent (sql_wait.sql) keyed by one of `keys` keys."""
    key = f"key-{rnd.randint(1, keys)}"
    value = json.dumps({"specversion": "1.0", "id": job_id, "source": "bench", "type": "bench.wait",
                        "time": event_time(ms), "datacontenttype": "application/json", "data": {}},
                       separators=(",", ":"))
    return key, value


def fnv1a_executor(key, executors):
    """The executor a worker gives a keyed job: common/consumer.c's
    executor_for (64-bit FNV-1a of the key, modulo the executors)."""
    h = 0xcbf29ce484222325
    for c in key.encode():
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % executors


def key_skew(keys, executors):
    """Jobs of the busiest executor / jobs per executor on average, for one
    worker process with `executors` executors, if each key kept one executor
    (a fixed hash of the key, the worker's dispatch before 2026-12-07): then
    a preloaded run ends when its busiest executor does. The worker now
    keeps a key on its executor only while the key has jobs there, so this
    is the bound the old dispatch had, kept for comparison."""
    per = [0] * executors
    for key, n in keys.items():
        per[fnv1a_executor(key, executors)] += n
    return max(per) / (sum(per) / executors)


def make_job(env, settings, rnd, job_id, ms):
    """The (key, CloudEvent) of a mode's job: a transfer, or bench.wait."""
    if settings.get("job") == "wait":
        return wait_job(rnd, env.args.wait_keys, job_id, ms)
    return transfer(rnd, env.args.accounts, job_id, ms)


def new_producer(brokers, linger_ms):
    return Producer({"bootstrap.servers": brokers, "acks": "all", "enable.idempotence": True,
                     "linger.ms": linger_ms, "batch.num.messages": 10000, "batch.size": 1000000,
                     "queue.buffering.max.messages": 500000, "queue.buffering.max.kbytes": 1048576})


def produce(producer, topic, key, value):
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:
            producer.poll(0.05)


def preload(env, topic, n, prefix, job="transfer"):
    """Produces n jobs into topic; returns how many went under each key."""
    rnd = random.Random(1)
    p = new_producer(env.brokers, 50)
    t0 = time.time()
    ms = int(t0 * 1000)
    keys = {}
    for i in range(n):
        key, value = make_job(env, {"job": job}, rnd, f"{prefix}-{i}", ms)
        keys[key] = keys.get(key, 0) + 1
        produce(p, topic, key, value)
        if i % 10000 == 0:
            p.poll(0)
    left = p.flush(120)
    if left:
        raise BenchError(f"{left} jobs not delivered to {topic}")
    log(f"preloaded {n} jobs into {topic} in {time.time() - t0:.1f} s")
    return keys


def take(c, timeout):
    """The messages c has, waiting up to timeout seconds for the first.

    Consumer.consume(n, timeout) of confluent-kafka 2.6 returns only when it
    has n messages or the timeout is over: a result that arrived early in the
    wait was stamped at its end, which added up to the whole timeout (10 ms
    in the latency phase) to the latency measured. poll() returns as soon as
    one message is there; what else is queued then comes without waiting."""
    first = c.poll(timeout)
    if first is None:
        return []
    return [first] + c.consume(1000, 0)


def results_consumer(brokers, topic, partitions):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "bench-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  # The broker answers as soon as a result is there (fetch.min.bytes 1);
                  # a short wait would only make it answer empty fetches.
                  "fetch.wait.max.ms": 500, "fetch.min.bytes": 1})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    return c


# ---- one worker run ----------------------------------------------------------

class Run:
    """Topics, a database and the worker processes of one measured phase."""

    def __init__(self, env, name, settings, executors, workers):
        self.env, self.name, self.settings = env, name, settings
        self.http_ports = [free_port() for _ in range(workers)]
        self.group = "bench-" + uuid.uuid4().hex[:8]  # one group for all the run's processes
        self.in_flight_max = None
        self.utilisation = []
        self.executors, self.workers_n = executors, workers
        self.pg_connections = {}
        self.kafka = Kafka(env.brokers, prefix="bench")
        self.partitions = parts = settings.get("partitions", env.args.partitions)
        self.jobs_topic = self.kafka.create_topic("bench-jobs", partitions=parts)
        self.results_topic = self.kafka.create_topic("bench-results", partitions=parts)
        self.dlq_topic = self.kafka.create_topic("bench-dlq", partitions=1)
        self.db = env.fresh_db(name)
        if settings.get("handler") == "sql":
            with open(SQL_TRANSFER) as f:
                self.db.query(f.read())
        if settings.get("job") == "wait":
            with open(SQL_WAIT) as f:
                self.db.query(f.read())
            # Read by bench.wait() in every session opened after it.
            self.db.query(f"alter database {self.db.dbname} set bench.wait_s = '{env.args.wait_ms / 1000.0}'")
        self.workers = []

    def conf(self, index):
        s = self.settings
        kw = {"executors": self.executors}
        for k in ("max_batch", "max_in_flight"):
            if k in s:
                kw[k] = s[k]
        text = conf_text(self.env.brokers, self.db.conninfo, [self.jobs_topic], self.results_topic,
                         self.dlq_topic, self.group,
                         consumer_properties=s.get("consumer", ()), producer_properties=s.get("producer", ()),
                         http_listen=f"127.0.0.1:{self.http_ports[index]}", **kw)
        if s.get("handler") == "sql":
            text = text.replace('handler = "ledger.transfer";', 'handler = "sql:app.transfer";')
        if s.get("job") == "wait":
            text = text.replace("jobs = (\n", 'jobs = (\n  { type = "bench.wait"; handler = "sql:bench.wait"; },\n', 1)
            assert "sql:bench.wait" in text
        if s.get("pgbouncer"):
            bouncer = os.environ.get("SLUICE_PGBOUNCER_CONNINFO")
            if not bouncer:
                raise BenchError("SLUICE_PGBOUNCER_CONNINFO is not set (tests/services up starts PgBouncer)")
            via = re.sub(r"\bdbname=\S+", f"dbname={self.db.dbname}", bouncer)
            text = text.replace(f"postgres: {{ conninfo = {json.dumps(self.db.conninfo)}; }};",
                                f"postgres: {{ conninfo = {json.dumps(via)}; pooling = \"transaction\"; }};")
            assert "pooling" in text
        return text

    def check_conf(self, path):
        # The file's own conninfo: -n checks SQL handlers in the bench's database.
        env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_KAFKA_BROKERS", "SLUICE_PG_CONNINFO")}
        r = subprocess.run([str(BIN / "sluice-worker"), "-n", "-c", path], capture_output=True,
                           text=True, timeout=30, env=env)
        if r.returncode != 0:
            raise BenchError("the worker refuses the settings: " + (r.stderr or r.stdout).strip())

    def start(self):
        base = os.path.join(self.env.work, f"{slug(self.name)}-{uuid.uuid4().hex[:6]}")
        confs = []
        for i in range(self.workers_n):
            # One file per process: each has its own metrics port.
            conf = f"{base}-w{i}.conf"
            with open(conf, "w") as f:
                f.write(self.conf(i))
            self.check_conf(conf)
            confs.append(conf)
        # Checked first, then started together: the group's processes join
        # within milliseconds of each other instead of one check apart.
        for i, conf in enumerate(confs):
            self.workers.append(Worker(conf, f"{base}-w{i}.log").start())
        log(f"worker{'s' if self.workers_n > 1 else ''} started: {base}-w*.conf ({self.executors} executors, "
            f"{self.workers_n} process{'es' if self.workers_n > 1 else ''}, logs {base}-w*.log)")

    def watch_metrics(self):
        """Samples the first worker's /metrics every 0.2 s, from a daemon
        thread while the workers run: the most jobs in flight into
        self.in_flight_max, the executors' utilisation (share of the time
        they ran jobs, once jobs flow) into self.utilisation."""
        def sample():
            url = f"http://127.0.0.1:{self.http_ports[0]}/metrics"
            while all(w.alive() for w in self.workers):
                try:
                    with urllib.request.urlopen(url, timeout=2) as r:
                        text = r.read()
                    m = re.search(rb"^sluice_jobs_in_flight(?:\{[^}]*\})? ([0-9.e+]+)", text, re.M)
                    if m:
                        v = int(float(m.group(1)))
                        self.in_flight_max = v if self.in_flight_max is None else max(self.in_flight_max, v)
                        u = re.search(rb"^sluice_executor_utilisation_ratio(?:\{[^}]*\})? ([0-9.e+-]+)", text,
                                      re.M)
                        if u and v > 0:
                            self.utilisation.append(float(u.group(1)))
                except (OSError, ValueError):
                    pass
                time.sleep(0.2)
        threading.Thread(target=sample, daemon=True).start()

    def counters(self):
        """Sums, over the workers' /metrics, the counters that say what the
        jobs cost the pipeline (None for one a worker does not have)."""
        names = ("sluice_pg_round_trips_total", "sluice_group_replays_total", "sluice_job_retries_total",
                 "sluice_duplicates_total")
        out = dict.fromkeys(names)
        for port in self.http_ports[:self.workers_n]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                continue
            for name in names:
                for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M):
                    out[name] = (out[name] or 0) + int(float(m.group(1)))
        return out

    def watch_pg(self):
        """Samples pg_stat_activity every 0.2 s, from a daemon thread while
        the workers run: the most sessions seen at once in the run's
        database per application_name, and of the worker's (sluice-*) in
        all ("total"), into self.pg_connections. The sampling session is in
        another database; the driver's own (no application_name) is not
        counted in the total."""
        def sample():
            try:
                with psycopg.connect(self.env.conninfo, autocommit=True) as c:
                    while all(w.alive() for w in self.workers):
                        rows = c.execute("select coalesce(application_name, ''), count(*) from pg_stat_activity "
                                         "where datname = %s group by 1", (self.db.dbname,)).fetchall()
                        seen = dict(rows)
                        seen["total"] = sum(n for app, n in rows if app.startswith("sluice"))
                        for k, n in seen.items():
                            self.pg_connections[k] = max(n, self.pg_connections.get(k, 0))
                        time.sleep(0.2)
            except psycopg.Error:
                pass
        threading.Thread(target=sample, daemon=True).start()

    def check_alive(self):
        for w in self.workers:
            if not w.alive():
                raise BenchError(f"worker exited ({w.proc.returncode}):\n" + w.log()[-2000:])

    def assigned(self):
        return any("assigned" in w.log() for w in self.workers)

    def wait_assigned(self, timeout=60):
        deadline = time.time() + timeout
        while not self.assigned():
            self.check_alive()
            if time.time() > deadline:
                raise BenchError("no worker was assigned partitions within %d s" % timeout)
            time.sleep(0.005)
        return time.time()

    def figures(self):
        """CPU seconds (sum) and peak RSS (max over processes), read while the
        workers still run."""
        cpu = sum(proc_cpu_seconds(w.proc.pid) for w in self.workers)
        rss = max(proc_hwm_mib(w.proc.pid) for w in self.workers)
        return cpu, rss

    def rss_each(self):
        """Peak RSS (VmHWM) of each process, in MiB, read while they run."""
        return [round(proc_hwm_mib(w.proc.pid), 1) for w in self.workers]

    ASSIGNED = re.compile(r'^ts=(\S+) .*msg="assigned \d+ partitions"', re.M)

    def assignments(self):
        """Per process, the times (s since the epoch) of its "assigned" log lines."""
        out = []
        for w in self.workers:
            out.append([datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ")
                        .replace(tzinfo=datetime.timezone.utc).timestamp() for t in self.ASSIGNED.findall(w.log())])
        return out

    def balanced_rate(self, first_result, last_ts):
        """(jobs/s once every process holds its final partitions, seconds from
        the first assignment to then). The group's first member is assigned
        every partition at once (tests/services: no initial rebalance delay),
        the others join and the partitions are split when it next heartbeats
        (librdkafka's heartbeat.interval.ms, 3 s): until then one process
        works. Jobs whose first result was produced after the last process's
        last assignment, over the time from then to the last result."""
        times = self.assignments()
        if not last_ts or not all(times):
            return None, None
        t_first, t_all = min(t[0] for t in times), max(t[-1] for t in times)
        after = sum(1 for ts in first_result.values() if ts >= t_all * 1000)
        window = last_ts / 1000.0 - t_all
        rate = round(after / window, 1) if window > 0.5 and after > 1 else None
        return rate, round(t_all - t_first, 3)

    def max_in_flight_logged(self):
        seen = [int(x) for w in self.workers for x in re.findall(r"in_flight=(\d+)", w.log())]
        return max(seen) if seen else None

    def stop(self):
        codes = []
        for w in self.workers:
            w.signal(15)
        for w in self.workers:
            try:
                codes.append(w.wait(90))
            except subprocess.TimeoutExpired:
                codes.append(w.kill())
        return codes

    def close(self):
        for w in self.workers:
            if w.alive():
                w.kill()
        self.kafka.close()
        self.env.drop_db(self.db)


def per_job(before, after, n):
    return round((after - before) * 1e6 / n, 1) if before is not None and after is not None else None


def throughput_phase(env, name, settings, n, executors, workers, watch_in_flight=False):
    """Preloads n jobs, runs the worker(s) over them; returns a dict of figures."""
    run = Run(env, name, settings, executors, workers)
    try:
        keys = preload(env, run.jobs_topic, n, f"{slug(name)}-{uuid.uuid4().hex[:6]}", settings.get("job", "transfer"))
        c = results_consumer(env.brokers, run.results_topic, run.partitions)
        env.checkpoint()
        try:
            services0, system0, jit0 = env.services_cpu(), system_cpu(), env.kafka_jit_seconds()
            me0 = os.times()
            run.start()
            run.watch_metrics()
            run.watch_pg()
            # The assignment is watched in a thread so that the results can be
            # read meanwhile; both are stamped within a few milliseconds.
            stamp = {}

            def watch():
                try:
                    stamp["t"] = run.wait_assigned()
                except BenchError as e:
                    stamp["error"] = e
            t = threading.Thread(target=watch, daemon=True)
            t.start()
            count, values, first_ts, last_ts, seen, first_result = 0, [], None, None, set(), {}
            timeout = env.args.phase_timeout or 60 + n / 100.0
            deadline = time.time() + timeout
            last_check = 0
            while count < n:
                batch = take(c, 0.02)
                now = time.time()
                for m in batch:
                    if m.error():
                        raise KafkaException(m.error())
                    values.append(m.value())
                    found = SUBJECT.search(m.value())
                    ts = m.timestamp()[1]
                    subject = found.group(1) if found else m.value()
                    seen.add(subject)
                    first_result[subject] = min(ts, first_result.get(subject, ts))
                    first_ts = ts if first_ts is None else min(first_ts, ts)
                    last_ts = ts if last_ts is None else max(last_ts, ts)
                # Redelivered jobs (a rebalance) publish their result again:
                # the run ends when every job has one.
                count = len(seen)
                if now - last_check > 1:
                    last_check = now
                    run.check_alive()
                    if now > deadline:
                        raise BenchError(f"only {count} of {n} results within {timeout:.0f} s")
            t_end = now
            cpu, rss = run.figures()
            rss_each = run.rss_each()
            services1, system1, jit1 = env.services_cpu(), system_cpu(), env.kafka_jit_seconds()
            me1 = os.times()
            in_flight_seen = run.max_in_flight_logged()
            counters = run.counters()
            t.join(5)
            if "error" in stamp:
                raise stamp["error"]
        finally:
            c.close()
        codes = run.stop()
        t_start = stamp["t"]
        statuses, subjects = {}, set()
        for v in values:
            ev = json.loads(v)
            subjects.add(ev.get("subject"))
            st = ev["data"]["status"]
            statuses[st] = statuses.get(st, 0) + 1
            if st == "succeeded" and settings.get("job", "transfer") not in env.result_samples:
                env.result_samples[settings.get("job", "transfer")] = v.decode()
                if env.result_sample is None and settings.get("job", "transfer") == "transfer":
                    env.result_sample = v.decode()
        elapsed = t_end - t_start
        balanced, rebalance_s = run.balanced_rate(first_result, last_ts)
        # The machine is shared: the CPU that neither the worker, PostgreSQL,
        # Kafka nor this driver used, as a share of all CPUs over the phase.
        others = None
        if services0["postgres"] is not None and services0["kafka"] is not None:
            busy_s = (system1[0] - system0[0]) / CLK_TCK
            ours = (cpu + services1["postgres"] - services0["postgres"] + services1["kafka"] - services0["kafka"]
                    + me1.user + me1.system - me0.user - me0.system)
            others = round(max(0.0, busy_s - ours) / max(1e-9, (system1[1] - system0[1]) / CLK_TCK), 2)
        steady = (n - 1) / ((last_ts - first_ts) / 1000.0) if last_ts and last_ts > first_ts else None
        return {
            "jobs": n,
            "results": len(values),
            "distinct_jobs": len(subjects),
            "statuses": statuses,
            "seconds": round(elapsed, 3),
            "jobs_per_s": round(n / elapsed, 1),
            "jobs_per_s_first_to_last_result": round(steady, 1) if steady else None,
            "jobs_per_s_balanced": balanced,
            "rebalance_s": rebalance_s,
            "cpu_us_per_job": round(cpu * 1e6 / n, 1),
            "pg_cpu_us_per_job": per_job(services0["postgres"], services1["postgres"], n),
            "kafka_cpu_us_per_job": per_job(services0["kafka"], services1["kafka"], n),
            "kafka_jit_cpu_us_per_job": per_job(jit0, jit1, n),
            "machine_busy": round((system1[0] - system0[0]) / max(1, system1[1] - system0[1]), 2),
            "others_busy": others,
            "executor_utilisation": (round(sum(run.utilisation) / len(run.utilisation), 2)
                                     if run.utilisation else None),
            "peak_rss_mib": round(rss, 1),
            "pg_round_trips": counters["sluice_pg_round_trips_total"],
            "group_replays": counters["sluice_group_replays_total"],
            "job_retries": counters["sluice_job_retries_total"],
            "duplicates": counters["sluice_duplicates_total"],
            "peak_rss_mib_each": rss_each,
            "pg_connections_max": run.pg_connections.get("total"),
            "pg_connections_by_application": {k: v for k, v in sorted(run.pg_connections.items()) if k != "total"},
            "partitions": run.partitions,
            # Only one process's executors are known from the key alone.
            "key_skew": round(key_skew(keys, executors), 3) if workers == 1 else None,
            "keys": len(keys),
            "max_in_flight_logged": in_flight_seen,
            "max_in_flight_sampled": run.in_flight_max,
            "exit_codes": codes,
        }
    finally:
        run.close()


def latency_phase(env, name, settings, rate, seconds, executors, bus=False, echo=False):
    """Offers `rate` jobs/s for `seconds` to a fresh worker; returns latency figures.

    bus: no worker; the driver's consumer reads the jobs themselves, offered
    the same way, so the figures are what the bus alone gives (--bus-baseline).
    echo: instead of the worker, kafka_echo (tests/bench/kafka_echo.c) copies
    each job to the results topic with the worker's client settings: the
    latency and CPU per job of librdkafka alone (--echo-baseline)."""
    run = Run(env, name + ("-bus" if bus else "-echo" if echo else "-lat"), settings, executors, 1)
    found_id = JOB_ID if bus or echo else SUBJECT
    echo_proc = None

    def figures():
        """CPU seconds and peak RSS of what runs the jobs: kafka_echo, the worker, or nothing (bus)."""
        if echo:
            return proc_cpu_seconds(echo_proc.pid), proc_hwm_mib(echo_proc.pid)
        return run.figures() if not bus else (0.0, None)

    try:
        c = results_consumer(env.brokers, run.jobs_topic if bus else run.results_topic, run.partitions)
        p = new_producer(env.brokers, env.args.driver_linger_ms)
        rnd = random.Random(2)
        prefix = f"{slug(name)}-lat-{uuid.uuid4().hex[:6]}"
        sent = {}
        lat = []
        # Where the time goes: the result's timestamp is when the worker
        # produced it (CreateTime), so a job's latency splits into job time
        # -> result produced (the job's hop, the worker's work, its wait to
        # be published) and result produced -> received (the result's hop).
        to_produced, result_hop = [], []
        try:
            if echo:
                echo_proc = subprocess.Popen([str(KAFKA_ECHO), env.brokers, run.group, run.jobs_topic,
                                              run.results_topic], stdin=subprocess.DEVNULL)
            elif not bus:
                run.start()
                run.wait_assigned()

            def receive(timeout):
                batch = take(c, timeout)
                now = time.time()
                for m in batch:
                    if m.error():
                        raise KafkaException(m.error())
                    found = found_id.search(m.value())
                    job = found.group(1).decode() if found else None
                    t_sent = sent.pop(job, None)
                    if t_sent is not None:
                        lat.append(now * 1000.0 - t_sent)
                        ts = m.timestamp()[1]
                        to_produced.append(ts - t_sent)
                        result_hop.append(now * 1000.0 - ts)
                    elif job is not None and job.startswith("warm-"):
                        warm.discard(job)

            # Warm-up, not measured: connections, the first fetches.
            warm = set()
            for i in range(max(8, executors * 4)):
                ms = int(time.time() * 1000)
                key, value = make_job(env, settings, rnd, f"warm-{prefix}-{i}", ms)
                warm.add(f"warm-{prefix}-{i}")
                produce(p, run.jobs_topic, key, value)
            p.flush(30)
            deadline = time.time() + 60
            while warm and time.time() < deadline:
                receive(0.05)
                if echo and echo_proc.poll() is not None:
                    raise BenchError(f"kafka_echo exited with {echo_proc.returncode}")
                if not bus and not echo:
                    run.check_alive()
            if warm:
                raise BenchError("the warm-up jobs got no results within 60 s")

            # The first --latency-warm-up seconds are offered like the rest
            # but not measured: the broker's JIT compiles its paths for small
            # produce requests and fetches then (the throughput phase, with
            # preloaded jobs, does not use them), which took it most of a CPU.
            unmeasured = int(rate * env.args.latency_warm_up)
            total = unmeasured + max(1, int(rate * seconds))
            # Serialised before the clock starts: the driver shares the
            # machine, and the job's `time` is patched in when it is sent.
            jobs = []
            for k in range(total):
                job = f"{prefix}-{k}"
                key, value = make_job(env, settings, rnd, job, 0)
                at = value.index(event_time(0))
                jobs.append((job, key, (value[:at], value[at + len(event_time(0)):])))
            log(f"latency: offering {rate:.0f} jobs/s for {env.args.latency_warm_up:.0f} + {seconds:.0f} s "
                f"({total} jobs, the first {unmeasured} not measured)")
            t0, t_measured = time.time(), None
            i = 0
            while i < total:
                if t_measured is None and i >= unmeasured:
                    sys0, me0 = system_cpu(), os.times()
                    services0, jit0, t_measured = env.services_cpu(), env.kafka_jit_seconds(), time.time()
                    worker0, _ = figures()
                now = time.time()
                tick = now
                due = min(total, int((now - t0) * rate) + 1)
                while i < due:
                    ms = int(time.time() * 1000)
                    job, key, (head, tail) = jobs[i]
                    if i >= unmeasured:
                        sent[job] = ms
                    produce(p, run.jobs_topic, key, head + event_time(ms) + tail)
                    i += 1
                p.poll(0)
                # Jobs go out in ticks of 5 to 10 ms (each stamped when
                # produced): a tick per job cost the driver most of a core
                # at 1,000 jobs/s, and the worker shares the machine with it.
                # Results are read as they come meanwhile.
                next_at = max(t0 + i / rate, tick + 0.005)
                receive(max(0.0, min(0.01, next_at - time.time())))
            p.flush(30)
            measured = total - unmeasured
            offered = measured / (time.time() - t_measured)
            sys1, me1 = system_cpu(), os.times()
            services1, jit1 = env.services_cpu(), env.kafka_jit_seconds()
            deadline = time.time() + 60
            while sent and time.time() < deadline:
                receive(0.01)
            worker1, rss = figures()
            missing = len(sent)
        finally:
            c.close()
            if echo_proc is not None:
                echo_proc.terminate()
                try:
                    echo_proc.wait(10)
                except subprocess.TimeoutExpired:
                    echo_proc.kill()
                    echo_proc.wait()
        if not bus and not echo:
            run.stop()
        lat.sort()
        to_produced.sort()
        result_hop.sort()
        r = lambda v: round(v, 1) if v is not None else None  # noqa: E731
        return {"offered_per_s": round(offered, 1), "latency_jobs": len(lat), "latency_missing": missing,
                "p50_ms": r(percentile(lat, 0.50)), "p95_ms": r(percentile(lat, 0.95)),
                "p99_ms": r(percentile(lat, 0.99)), "max_ms": r(lat[-1] if lat else None),
                "produced_p50_ms": r(percentile(to_produced, 0.50)),
                "produced_p99_ms": r(percentile(to_produced, 0.99)),
                "result_hop_p50_ms": r(percentile(result_hop, 0.50)),
                "result_hop_p99_ms": r(percentile(result_hop, 0.99)),
                "latency_phase_peak_rss_mib": round(rss, 1) if rss is not None else None,
                "latency_cpu_us_per_job": round((worker1 - worker0) * 1e6 / measured, 1),
                "latency_machine_busy": round((sys1[0] - sys0[0]) / max(1, sys1[1] - sys0[1]), 2),
                "latency_driver_cpu_us_per_job": round((me1.user + me1.system - me0.user - me0.system) * 1e6 / measured, 1),
                "latency_pg_cpu_us_per_job": per_job(services0["postgres"], services1["postgres"], measured),
                "latency_kafka_cpu_us_per_job": per_job(services0["kafka"], services1["kafka"], measured),
                "latency_kafka_jit_cpu_us_per_job": per_job(jit0, jit1, measured)}
    finally:
        run.close()


def ceiling(env, connections, n, job="transfer"):
    """pgbench with the job's transaction: connections clients, n transactions in all."""
    if (job, connections) in env.ceilings:
        return env.ceilings[(job, connections)]
    if env.pgbench is None:
        log("pgbench not found: no ceiling")
        return None
    db = env.fresh_db("ceiling")
    try:
        script = PGBENCH_SCRIPT
        sample = (env.result_samples.get(job) or env.result_sample
                  or json.dumps({"specversion": "1.0", "pad": "x" * 400}))
        if job == "wait":
            script = PGBENCH_WAIT_SCRIPT
            with open(SQL_WAIT) as f:
                db.query(f.read())
            db.query(f"alter database {db.dbname} set bench.wait_s = '{env.args.wait_ms / 1000.0}'")
        per_client = max(1, math.ceil(n / connections))
        cmd = [env.pgbench, "-n", "-M", env.protocol, "-c", str(connections), "-j", str(min(connections, 2)),
               "-t", str(per_client), "-f", script, "-D", f"accounts={env.args.accounts}",
               "-D", f"result={sample}", db.conninfo]
        env.checkpoint()
        log(f"ceiling: pgbench -M {env.protocol} -c {connections} -j {min(connections, 2)} -t {per_client} "
            f"-f {os.path.relpath(script, ROOT)}")
        pg0, sys0 = env.services_cpu()["postgres"], system_cpu()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        pg1, sys1 = env.services_cpu()["postgres"], system_cpu()
        m = re.search(r"^tps = ([0-9.]+)", r.stdout, re.M)
        if r.returncode != 0 or m is None:
            raise BenchError("pgbench failed:\n" + r.stdout[-2000:] + r.stderr[-2000:])
        failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
        if failed and int(failed.group(1)):
            raise BenchError("pgbench: failed transactions:\n" + r.stdout[-2000:])
        tps = float(m.group(1))
        log(f"ceiling: {tps:.0f} tps; PostgreSQL {per_job(pg0, pg1, per_client * connections)} us/transaction, "
            f"machine busy {(sys1[0] - sys0[0]) / max(1, sys1[1] - sys0[1]):.2f}")
        env.ceilings[(job, connections)] = tps
        return tps
    finally:
        env.drop_db(db)


WARM_UP_ROUNDS = 6
WARM_UP_JIT_SHARE = 0.02


def warm_up(env, n=30000):
    """Not measured: pushes n messages through the broker and back, so that
    the JVM has compiled its hot paths before the first measured phase."""
    k = Kafka(env.brokers, prefix="bench")
    try:
        topic = k.create_topic("bench-warm", partitions=env.args.partitions)
        preload(env, topic, n, "warm")
        c = results_consumer(env.brokers, topic, env.args.partitions)
        got, deadline = 0, time.time() + 120
        while got < n and time.time() < deadline:
            got += len(c.consume(1000, 0.1))
        c.close()
        log(f"broker warm-up: {got} messages through")
    finally:
        k.close()


# ---- reporting ---------------------------------------------------------------

COLUMNS = [("mode", "mode", "{}"), ("jobs", "jobs", "{}"), ("ex x w", None, "{}"),
           ("jobs/s", "jobs_per_s", "{:.0f}"), ("ceiling", "ceiling_tps", "{:.0f}"),
           ("ratio", "ratio", "{:.2f}"), ("cpu us/job", "cpu_us_per_job", "{:.1f}"),
           ("pg us/job", "pg_cpu_us_per_job", "{:.0f}"), ("kafka us/job", "kafka_cpu_us_per_job", "{:.0f}"),
           ("busy", "machine_busy", "{:.2f}"), ("ex busy", "executor_utilisation", "{:.2f}"),
           ("rss MiB", "peak_rss_mib", "{:.1f}"), ("p50 ms", "p50_ms", "{:.1f}"),
           ("p95 ms", "p95_ms", "{:.1f}"), ("p99 ms", "p99_ms", "{:.1f}"), ("max ms", "max_ms", "{:.1f}"),
           ("bus p50", "bus_p50_ms", "{:.1f}"), ("bus p99", "bus_p99_ms", "{:.1f}")]


LB_COLUMNS = [("mode", "mode", "{}"), ("parts", "partitions", "{}"), ("ex x w", None, "{}"),
              ("batch", "max_batch", "{}"), ("jobs", "jobs", "{}"), ("jobs/s", "jobs_per_s", "{:.0f}"),
              ("steady", "jobs_per_s_first_to_last_result", "{:.0f}"), ("balanced", "jobs_per_s_balanced", "{:.0f}"),
              ("rebal s", "rebalance_s", "{:.1f}"), ("ideal", "ideal_jobs_per_s", "{:.0f}"),
              ("ratio", "ratio_ideal", "{:.2f}"), ("bal ratio", "ratio_ideal_balanced", "{:.2f}"),
              ("skew", "key_skew", "{:.2f}"), ("keyed ratio", "ratio_keyed", "{:.2f}"),
              ("ceiling", "ceiling_tps", "{:.0f}"), ("/ceiling", "ratio", "{:.2f}"),
              ("others busy", "others_busy", "{:.2f}"),
              ("cpu us/job", "cpu_us_per_job", "{:.1f}"), ("pg us/job", "pg_cpu_us_per_job", "{:.0f}"),
              ("kafka us/job", "kafka_cpu_us_per_job", "{:.0f}"), ("busy", "machine_busy", "{:.2f}"),
              ("ex busy", "executor_utilisation", "{:.2f}"),
              ("rss MiB each", "peak_rss_mib_each", lambda v: "/".join(f"{x:.1f}" for x in v)),
              ("pg conns", "pg_connections_max", "{}")]


def table(rows, columns=COLUMNS):
    cells = [[h for h, _, _ in columns]]
    for r in rows:
        line = []
        for h, key, fmt in columns:
            if key is None:
                v = f"{r['executors']}x{r['workers']}"
            else:
                v = r.get(key)
                v = "-" if v is None else fmt(v) if callable(fmt) else fmt.format(v)
            line.append(v)
        cells.append(line)
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    out = []
    for k, row in enumerate(cells):
        out.append("  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(row)))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def measure(env, mode, settings, n, executors, workers, latency=True, with_ceiling=True, watch_in_flight=False):
    args = env.args
    wait = settings.get("job") == "wait"
    row = {"mode": mode, "jobs": n, "executors": executors, "workers": workers,
           "max_batch": settings.get("max_batch", 1), "max_in_flight": settings.get("max_in_flight", 1000),
           "partitions": settings.get("partitions", args.partitions), "accounts": args.accounts,
           "job": settings.get("job", "transfer"),
           "jobs_per_s": None, "ceiling_tps": None, "ratio": None, "cpu_us_per_job": None,
           "peak_rss_mib": None, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    try:
        log(f"{mode}: throughput, {n} jobs, {executors} executors x {workers} worker(s), settings {settings}")
        if wait:
            # Each executor waits out its jobs one after the other (in a
            # group too: one statement after the other in one transaction).
            row["wait_ms"] = args.wait_ms
            row["ideal_jobs_per_s"] = round(executors * workers * 1000.0 / args.wait_ms, 1)
        row.update(throughput_phase(env, mode, settings, n, executors, workers, watch_in_flight))
        if wait:
            row["ratio_ideal"] = round(row["jobs_per_s"] / row["ideal_jobs_per_s"], 3)
            if row.get("jobs_per_s_balanced"):
                row["ratio_ideal_balanced"] = round(row["jobs_per_s_balanced"] / row["ideal_jobs_per_s"], 3)
            if row.get("key_skew"):
                row["ideal_keyed_jobs_per_s"] = round(row["ideal_jobs_per_s"] / row["key_skew"], 1)
                row["ratio_keyed"] = round(row["jobs_per_s"] / row["ideal_keyed_jobs_per_s"], 3)
            log(f"{mode}: ideal {row['ideal_jobs_per_s']:.0f} jobs/s ({executors} x {workers} / "
                f"{args.wait_ms} ms), ratio {row['ratio_ideal']:.2f}; key skew {row.get('key_skew')}; "
                f"PostgreSQL sessions at most {row['pg_connections_max']} "
                f"{row['pg_connections_by_application']}; peak RSS each {row['peak_rss_mib_each']} MiB")
        log(f"{mode}: {row['jobs_per_s']:.0f} jobs/s, {row['cpu_us_per_job']} us CPU/job, "
            f"peak RSS {row['peak_rss_mib']} MiB, statuses {row['statuses']}; PostgreSQL "
            f"{row['pg_cpu_us_per_job']} us/job, Kafka {row['kafka_cpu_us_per_job']} us/job, machine busy "
            f"{row['machine_busy']}, executors busy {row['executor_utilisation']}"
            + (f", most jobs in flight seen {row['max_in_flight_sampled']}" if watch_in_flight else ""))
        if latency and args.bus_baseline:
            bus = latency_phase(env, mode, settings, args.latency_rate or row["jobs_per_s"] / 2,
                                args.latency_seconds, executors, bus=True)
            row.update({"bus_p50_ms": bus["p50_ms"], "bus_p99_ms": bus["p99_ms"], "bus_max_ms": bus["max_ms"]})
            log(f"{mode}: the bus alone (jobs read back by the driver, no worker): p50 {bus['p50_ms']} ms, "
                f"p99 {bus['p99_ms']} ms, max {bus['max_ms']} ms at {bus['offered_per_s']} jobs/s offered")
        if latency and args.echo_baseline:
            echo = latency_phase(env, mode, settings, args.latency_rate or row["jobs_per_s"] / 2,
                                 args.latency_seconds, executors, echo=True)
            row.update({"echo_p50_ms": echo["p50_ms"], "echo_p99_ms": echo["p99_ms"],
                        "echo_cpu_us_per_job": echo["latency_cpu_us_per_job"],
                        "echo_result_hop_p50_ms": echo["result_hop_p50_ms"]})
            log(f"{mode}: librdkafka alone (kafka_echo copies each job to the results topic with the worker's "
                f"client settings): p50 {echo['p50_ms']} ms, p99 {echo['p99_ms']} ms, result hop p50 "
                f"{echo['result_hop_p50_ms']} ms, {echo['latency_cpu_us_per_job']} us CPU/job at "
                f"{echo['offered_per_s']} jobs/s offered")
        if latency:
            row.update(latency_phase(env, mode, settings, args.latency_rate or row["jobs_per_s"] / 2,
                                     args.latency_seconds, executors))
            log(f"{mode}: job time -> result produced p50 {row['produced_p50_ms']} / p99 "
                f"{row['produced_p99_ms']} ms, result produced -> received p50 {row['result_hop_p50_ms']} / "
                f"p99 {row['result_hop_p99_ms']} ms")
            log(f"{mode}: latency p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, max {row['max_ms']} ms at "
                f"{row['offered_per_s']} jobs/s offered; machine busy {row['latency_machine_busy']}; CPU per job: "
                f"the worker {row['latency_cpu_us_per_job']} us, this driver {row['latency_driver_cpu_us_per_job']} us, PostgreSQL {row['latency_pg_cpu_us_per_job']}"
                f" us, Kafka {row['latency_kafka_cpu_us_per_job']} us (JIT compiler "
                f"{row['latency_kafka_jit_cpu_us_per_job']} us)")
        if with_ceiling:
            # The latency-bound ceiling needs far fewer transactions to be
            # steady: about --lb-ceiling-seconds at the ideal rate.
            tx = n if not wait else max(executors * workers,
                                        min(n, int(row["ideal_jobs_per_s"] * args.lb_ceiling_seconds)))
            row["ceiling_tps"] = ceiling(env, executors * workers, tx, settings.get("job", "transfer"))
            if row["ceiling_tps"]:
                row["ceiling_tps"] = round(row["ceiling_tps"], 1)
                row["ratio"] = round(row["jobs_per_s"] / row["ceiling_tps"], 3)
                log(f"{mode}: ceiling {row['ceiling_tps']:.0f} tps, ratio {row['ratio']:.2f}")
    except BenchError as e:
        log(f"{mode}: FAILED: {e}")
        row["error"] = str(e).splitlines()[0] if str(e) else "failed"
    row.update({"throughput_definition": THROUGHPUT_DEFINITION,
                "latency_definition": LATENCY_DEFINITION if latency else None,
                "ideal_definition": "executors x processes / wait (one job per executor at a time)" if wait else None,
                "ceiling": f"pgbench -M {env.protocol}, tests/bench/{'wait' if wait else 'ledger'}_job.sql, "
                           "clients = executors x workers"
                if with_ceiling else None,
                "ceiling_protocol": env.protocol if with_ceiling else None,
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "machine": env.machine, "postgres": env.pg_version, "sluice": env.rev})
    print("BENCH " + json.dumps(row, separators=(", ", ": ")), flush=True)
    return row


def warm_up_worker(env, name, settings, executors):
    """The worker over --warm-up jobs with settings (not measured), again
    until the broker's JIT compiler is nearly idle or WARM_UP_ROUNDS."""
    # The broker's JIT compiler kept compiling through the first measured
    # mode after a fixed warm-up (4 s of CPU in a 47 s mode, 1.6 s in the
    # same mode run again), which made the first mode the slowest: the
    # worker runs until the compiler is nearly idle, or WARM_UP_ROUNDS.
    for rnd in range(1, WARM_UP_ROUNDS + 1):
        jit0, t0 = env.kafka_jit_seconds(), time.time()
        w = throughput_phase(env, "warm-up", settings, env.args.warm_up, executors, 1)
        jit1 = env.kafka_jit_seconds()
        share = (jit1 - jit0) / (time.time() - t0) if jit0 is not None and jit1 is not None else None
        log(f"worker warm-up {rnd} ({name} settings), not measured: {w['jobs']} jobs at "
            f"{w['jobs_per_s']:.0f} jobs/s, broker JIT compiler "
            + ("unknown" if share is None else f"{share * 100:.1f}% of a CPU"))
        if share is None or share < WARM_UP_JIT_SHARE:
            break


def int_list(text):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"bench: expected a comma list of integers, got {text!r}")


def latency_bound_runs(args):
    """(mode name, settings, jobs, executors, processes) of --latency-bound:
    per-job bench.wait jobs on one partition with 1, 4, 16, 64 executors
    (per-key parallelism: many keys, one partition); grouped the same at
    --lb-grouped-executors; then 1, 2, 4 processes in one group with
    --lb-process-executors each on --lb-process-partitions partitions.
    Each run gets ideal x --lb-seconds jobs, within --lb-min-jobs and
    --lb-max-jobs."""
    def jobs(executors, processes):
        ideal = executors * processes * 1000.0 / args.wait_ms
        return int(min(args.lb_max_jobs, max(args.lb_min_jobs, ideal * args.lb_seconds)))
    runs = []
    for e in int_list(args.lb_executors):
        runs.append((f"wait-e{e}", dict(KNOWN_MODES["per-job-wait"], partitions=1), jobs(e, 1), e, 1))
    for e in int_list(args.lb_grouped_executors):
        runs.append((f"wait-grouped-e{e}", dict(KNOWN_MODES["grouped-wait"], partitions=1), jobs(e, 1), e, 1))
    e = args.lb_process_executors
    for w in int_list(args.lb_processes):
        runs.append((f"wait-{w}p-e{e}", dict(KNOWN_MODES["per-job-wait"], partitions=args.lb_process_partitions),
                     jobs(e, w), e, w))
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100000, help="jobs per throughput run (default 100000)")
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--executors", type=int, default=4)
    ap.add_argument("--modes", default=None,
                    help="comma list: per-job, grouped, per-job-sql, grouped-sql (ledger.transfer as a SQL "
                         "function), per-job-pgbouncer, grouped-pgbouncer (through PgBouncer, transaction "
                         "pooling), per-job-wait, grouped-wait (bench.wait jobs), or "
                         "NAME:max_batch=N:max_in_flight=N:executors=N:workers=N:handler=c|sql:pgbouncer=1:"
                         "job=transfer|wait:partitions=N:producer=PROP=V:consumer=PROP=V (default "
                         "per-job,grouped,grouped-sql,grouped-pgbouncer; none with --latency-bound)")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--bus-baseline", action="store_true",
                    help="before each latency phase, offer the same jobs the same way to the driver's own "
                         "consumer, without a worker: the latency of the bus alone (bus_p50_ms, bus_p99_ms)")
    ap.add_argument("--echo-baseline", action="store_true",
                    help="before each latency phase, the same jobs through kafka_echo (librdkafka consuming "
                         "and producing with the worker's settings, nothing else): its latency and CPU per job "
                         "(echo_p50_ms, echo_p99_ms, echo_cpu_us_per_job)")
    ap.add_argument("--latency-rate", type=float, default=0,
                    help="jobs/s offered in the latency phase (default: half the measured throughput)")
    ap.add_argument("--warm-up", type=int, default=None,
                    help="messages pushed through the broker, then jobs run by the worker, before measuring "
                         "(default 30000, 5000 with --latency-bound; 0 for none)")
    ap.add_argument("--latency-warm-up", type=float, default=5.0,
                    help="seconds offered at the latency rate before measuring (default 5)")
    ap.add_argument("--driver-linger-ms", type=float, default=5,
                    help="linger.ms of the latency phase's job producer (default 5)")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-ceiling", action="store_true")
    ap.add_argument("--scaling", action="store_true",
                    help="also 1, 2, 4 executors and 2 worker processes, with the first mode's settings")
    ap.add_argument("--inflight-test", action="store_true",
                    help="also peak RSS with max_in_flight=10000 over --inflight-jobs preloaded jobs")
    ap.add_argument("--inflight-jobs", type=int, default=50000)
    ap.add_argument("--ceiling-protocol", choices=("auto", "simple", "extended", "prepared"), default="auto",
                    help="pgbench -M; auto: prepared if the worker prepares statements, else extended")
    ap.add_argument("--phase-timeout", type=float, default=0,
                    help="seconds to wait for all results of a throughput run before failing the mode "
                         "(default 60 + jobs/100)")
    lb = ap.add_argument_group("latency-bound scaling (issue 16)")
    lb.add_argument("--latency-bound", action="store_true",
                    help="bench.wait jobs (pg_sleep of --wait-ms on the server, tests/bench/sql_wait.sql), one "
                         "transaction each: jobs/s against executors on one partition with many keys, and against "
                         "worker processes in one group, beside the ideal executors x processes / wait, with "
                         "each run's peak RSS per process and PostgreSQL sessions")
    lb.add_argument("--wait-ms", type=float, default=5.0, help="bench.wait's pg_sleep (default 5 ms)")
    lb.add_argument("--wait-keys", type=int, default=10000,
                    help="distinct Kafka keys of bench.wait jobs (default 10000)")
    lb.add_argument("--lb-executors", default="1,4,16,64", help="executors of the one-partition runs")
    lb.add_argument("--lb-grouped-executors", default="16,64",
                    help="executors of one-partition runs with max_batch 32 ('' for none)")
    lb.add_argument("--lb-processes", default="1,2,4", help="worker processes of the one-group runs")
    lb.add_argument("--lb-process-executors", type=int, default=4, help="executors per process there")
    lb.add_argument("--lb-process-partitions", type=int, default=8, help="partitions there")
    lb.add_argument("--lb-seconds", type=float, default=10.0,
                    help="jobs per run: the ideal rate times this (default 10 s) ...")
    lb.add_argument("--lb-min-jobs", type=int, default=500, help="... but at least this many")
    lb.add_argument("--lb-max-jobs", type=int, default=10000, help="... and at most this many")
    lb.add_argument("--lb-ceiling-seconds", type=float, default=4.0,
                    help="pgbench's ceiling runs about this long at the ideal rate (default 4 s)")
    ap.add_argument("--tag", default="", help="suffix for database names and the work folder")
    ap.add_argument("--keep", action="store_true", help="keep the bench databases")
    args = ap.parse_args()
    if args.accounts < 2 or args.jobs < 1 or args.partitions < 1 or args.executors < 1:
        raise SystemExit("bench: --accounts must be >= 2 and --jobs, --partitions, --executors >= 1")
    if args.warm_up is None:
        args.warm_up = 5000 if args.latency_bound else 30000
    if args.wait_ms <= 0 or args.wait_keys < 1:
        raise SystemExit("bench: --wait-ms and --wait-keys must be > 0")
    if args.modes is None and not args.latency_bound:
        args.modes = "per-job,grouped,grouped-sql,grouped-pgbouncer"
    modes = parse_modes(args.modes) if args.modes else []
    for w in ("sluice-worker", "sluicectl"):
        if not (BIN / w).exists():
            raise SystemExit(f"bench: {BIN / w} is missing; run make")
    if args.echo_baseline and not KAFKA_ECHO.exists():
        raise SystemExit(f"bench: {KAFKA_ECHO} is missing; run make {os.path.relpath(KAFKA_ECHO, ROOT)}")

    env = Env(args)
    env.machine = machine()
    env.rev = git_rev()
    env.protocol = worker_protocol() if args.ceiling_protocol == "auto" else args.ceiling_protocol
    log(f"machine: {env.machine['nproc']} CPUs ({env.machine['cpu']}), PostgreSQL {env.pg_version}, "
        f"sluice {env.rev}, pgbench {env.pgbench} -M {env.protocol}")
    lb_runs = latency_bound_runs(args) if args.latency_bound else []
    if not modes and not lb_runs:
        raise SystemExit("bench: nothing to run (no --modes, and --latency-bound lists no runs)")
    if args.warm_up > 0:
        warm_up(env, args.warm_up)
        if modes:
            name, settings = modes[0]
            warm_up_worker(env, name, settings, args.executors)
        else:
            # Enough executors that the warm-up is not a minute of waiting.
            name, settings, _, executors, _ = max(lb_runs, key=lambda r: r[3] * r[4])
            warm_up_worker(env, name, settings, min(16, executors))
    rows = []
    for name, settings in modes:
        executors = settings.get("executors", args.executors)
        rows.append(measure(env, name, settings, args.jobs, executors, settings.get("workers", 1),
                            latency=not args.skip_latency, with_ceiling=not args.skip_ceiling))
    if args.scaling and modes:
        name, settings = modes[0]
        for executors, workers in ((1, 1), (2, 1), (4, 1), (args.executors, 2)):
            rows.append(measure(env, f"{name}-e{executors}w{workers}", settings, args.jobs, executors, workers,
                                latency=False, with_ceiling=not args.skip_ceiling))
    lb_rows = []
    for name, settings, n, executors, workers in lb_runs:
        lb_rows.append(measure(env, name, settings, n, executors, workers, latency=False,
                               with_ceiling=not args.skip_ceiling))
    if args.inflight_test and modes:
        name, settings = modes[0]
        s = dict(settings, max_in_flight=10000)
        rows.append(measure(env, "inflight-10k", s, args.inflight_jobs, args.executors, 1,
                            latency=False, with_ceiling=False, watch_in_flight=True))

    m = env.machine
    print()
    print(f"sluice bench {(rows or lb_rows)[0]['date']}, {m['nproc']} CPUs {m['cpu']}, {m['mem_mib']} MiB, "
          f"PostgreSQL {env.pg_version}, sluice {env.rev}")
    if rows:
        print(table(rows))
        print(f"jobs/s: {THROUGHPUT_DEFINITION}; ceiling: pgbench, same SQL transaction, same connections and "
              "transactions; latency (ms): " + LATENCY_DEFINITION + ", at half the measured throughput")
    if lb_rows:
        if rows:
            print()
        print(table(lb_rows, LB_COLUMNS))
        print(f"latency-bound: bench.wait jobs (pg_sleep {args.wait_ms:g} ms on the server) over {args.wait_keys} "
              f"keys; jobs/s: {THROUGHPUT_DEFINITION}; steady: jobs / (last - first result); balanced: jobs "
              "whose first result came after every process's last assignment / the time from then to the last "
              "result (rebal s: from the first assignment to then), bal ratio: balanced / ideal; ceiling: pgbench "
              "running tests/bench/wait_job.sql with as many clients; others busy: the machine's share used by "
              "processes other than the worker, PostgreSQL, Kafka and this driver; ideal: executors x processes / wait; skew: the busiest "
              "executor's jobs / the mean if each key kept one executor (a fixed hash, as before 2026-12-07; "
              "now a key keeps its executor only while it has jobs there), keyed ratio: jobs/s / (ideal / skew); "
              "pg conns: most sessions seen at once in the run's database (pg_stat_activity every 0.2 s)")
    return 1 if any("error" in r for r in rows + lb_rows) else 0


if __name__ == "__main__":
    sys.exit(main())
