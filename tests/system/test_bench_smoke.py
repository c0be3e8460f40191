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
                        "--latency-seconds", "2", "--modes", "per-job", "--tag", tag, "--warm-up", "200"],
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
    assert b["machine"]["nproc"] >= 1 and b["machine"]["cpu"]
    # The table is printed too.
    assert "jobs/s" in r.stdout and "ceiling" in r.stdout
