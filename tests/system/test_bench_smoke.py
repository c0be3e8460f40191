"""The benchmark driver (tests/bench/bench.py) runs end to end on tiny numbers
against the test services and prints a well-formed BENCH line. No figure is
judged for speed here: only that every key is present and sane."""
import json
import os
import subprocess
import sys
import uuid

from harness import ROOT

KEYS = ("mode", "jobs", "jobs_per_s", "ceiling_tps", "ratio", "cpu_us_per_job", "peak_rss_mib",
        "p50_ms", "p95_ms", "p99_ms", "max_ms", "executors", "workers", "date", "machine")


def test_bench_smoke(brokers, admin_conninfo, bin_dir, tmp_path):
    env = dict(os.environ, SLUICE_KAFKA_BROKERS=brokers, SLUICE_PG_CONNINFO=admin_conninfo)
    env.setdefault("SLUICE_SERVICES_DIR", str(tmp_path))
    tag = "smoke_" + uuid.uuid4().hex[:8]
    r = subprocess.run([sys.executable, "-u", str(ROOT / "tests/bench/bench.py"), "--jobs", "500",
                        "--latency-seconds", "2", "--modes", "per-job", "--tag", tag, "--warm-up", "200",
                        "--bus-baseline", "--echo-baseline"],
                       capture_output=True, text=True, timeout=600, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    lines = [line for line in r.stdout.splitlines() if line.startswith("BENCH {")]
    assert len(lines) == 1, out[-4000:]
    b = json.loads(lines[0][len("BENCH "):])

    for k in KEYS:
        assert k in b, f"BENCH line lacks {k}: {b}"
    assert "error" not in b, b
    assert b["mode"] == "per-job"
    assert b["jobs"] == 500 and b["executors"] == 4 and b["workers"] == 1
    assert b["distinct_jobs"] == 500 and sum(b["statuses"].values()) == b["results"] >= 500
    assert b["statuses"].get("succeeded", 0) > 0
    assert b["exit_codes"] == [0]
    assert b["jobs_per_s"] > 0 and b["ceiling_tps"] > 0
    assert abs(b["ratio"] - b["jobs_per_s"] / b["ceiling_tps"]) < 0.01
    assert b["cpu_us_per_job"] > 0
    assert 1 < b["peak_rss_mib"] < 4096
    # Where the time went: the services' CPU, the machine, the executors.
    assert b["pg_cpu_us_per_job"] > 0 and b["kafka_cpu_us_per_job"] >= 0
    assert 0 < b["machine_busy"] <= 1
    # Sampled every 0.2 s while jobs are in flight: a run this short may see none.
    assert "executor_utilisation" in b
    assert b["executor_utilisation"] is None or 0 <= b["executor_utilisation"] <= 1
    assert "broker warm-up: 200 messages through" in out
    assert 0 <= b["p50_ms"] <= b["p95_ms"] <= b["p99_ms"] <= b["max_ms"]
    assert b["latency_jobs"] > 0 and b["latency_missing"] == 0
    # The baselines: the bus alone, and librdkafka alone (kafka_echo) with its CPU.
    assert 0 <= b["bus_p50_ms"] <= b["bus_p99_ms"]
    assert 0 <= b["echo_p50_ms"] <= b["echo_p99_ms"] and b["echo_cpu_us_per_job"] > 0
    assert "librdkafka alone (kafka_echo" in out
    assert b["machine"]["nproc"] >= 1 and b["machine"]["cpu"]
    # The table is printed too.
    assert "jobs/s" in r.stdout and "ceiling" in r.stdout


def test_bench_smoke_latency_bound(brokers, admin_conninfo, bin_dir, tmp_path):
    """--latency-bound on tiny numbers: bench.wait jobs (sql_wait.sql) through
    one process on one partition and two processes in one group;
    each BENCH line has the ideal, pgbench's ceiling, per-process RSS and
    the PostgreSQL sessions. Not judged for speed."""
    env = dict(os.environ, SLUICE_KAFKA_BROKERS=brokers, SLUICE_PG_CONNINFO=admin_conninfo)
    env.setdefault("SLUICE_SERVICES_DIR", str(tmp_path))
    tag = "smoke_lb_" + uuid.uuid4().hex[:8]
    r = subprocess.run([sys.executable, "-u", str(ROOT / "tests/bench/bench.py"), "--latency-bound",
                        "--lb-executors", "2", "--lb-grouped-executors", "", "--lb-processes", "2",
                        "--lb-process-executors", "2", "--lb-process-partitions", "2", "--lb-max-jobs", "200",
                        "--lb-min-jobs", "200", "--wait-ms", "2", "--warm-up", "0", "--tag", tag],
                       capture_output=True, text=True, timeout=600, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    rows = [json.loads(line[len("BENCH "):]) for line in r.stdout.splitlines() if line.startswith("BENCH {")]
    assert [b["mode"] for b in rows] == ["wait-e2", "wait-2p-e2"], out[-4000:]
    for b in rows:
        assert "error" not in b, b
        assert b["job"] == "wait" and b["wait_ms"] == 2
        assert b["jobs"] == 200 and b["distinct_jobs"] == 200
        # bench.wait ran: every job succeeded with its output.
        assert b["statuses"] == {"succeeded": b["results"]}, b
        assert b["ideal_jobs_per_s"] == b["executors"] * b["workers"] * 1000 / 2
        assert b["jobs_per_s"] > 0 and abs(b["ratio_ideal"] - b["jobs_per_s"] / b["ideal_jobs_per_s"]) < 0.01
        assert len(b["peak_rss_mib_each"]) == b["workers"] and all(1 < x < 4096 for x in b["peak_rss_mib_each"])
        assert b["exit_codes"] == [0] * b["workers"]
        # Sampled every 0.2 s: at least one executor's session was seen, and
        # never more than the processes' executors and relays.
        assert 1 <= b["pg_connections_max"] <= b["workers"] * (b["executors"] + 1), b
        # pgbench running the same transaction (tests/bench/wait_job.sql).
        assert b["ceiling_tps"] > 0 and abs(b["ratio"] - b["jobs_per_s"] / b["ceiling_tps"]) < 0.01
        assert "wait_job.sql" in b["ceiling"]
    one, two = rows
    assert one["partitions"] == 1 and one["max_batch"] == 1
    assert two["partitions"] == 2 and two["workers"] == 2 and two["key_skew"] is None
    assert one["key_skew"] >= 1 and one["ratio_keyed"] > 0
    assert "bench.wait jobs (pg_sleep 2 ms" in r.stdout and "rss MiB each" in r.stdout
