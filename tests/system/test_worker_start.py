"""How the worker starts: configuration checks, schema loading, logs, secrets."""
import json
import os
import subprocess
import time

from harness import BIN, ROOT, conf_text


# The file alone decides here: no SLUICE_* overrides from the test services.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}


def worker(*args, timeout=30):
    return subprocess.run([str(BIN / "sluice-worker"), *args], capture_output=True, text=True,
                          timeout=timeout, env=CLEAN_ENV)


def write_conf(tmp_path, **kw):
    p = tmp_path / "w.conf"
    p.write_text(conf_text("127.0.0.1:1", "host=127.0.0.1 port=1 dbname=x", ["jobs"], "res", "dlq", "g", **kw))
    return p


def test_check_only_accepts_the_sample_and_a_generated_file(tmp_path):
    r = worker("-n", "-c", str(ROOT / "worker.conf"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(": ok")
    r = worker("-n", "-c", str(write_conf(tmp_path)))
    assert r.returncode == 0, r.stderr


def test_broken_schema_refuses_to_start_with_its_path(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "object", "properties": {"amount": {"minimum": "ten"}}}')
    conf = write_conf(tmp_path)
    conf.write_text(conf.read_text().replace(str(ROOT / "schemas/jobs/ledger.transfer.json"), str(bad)))
    for args in (["-n", "-c", str(conf)], ["-c", str(conf)]):
        r = worker(*args)
        assert r.returncode == 2
        assert str(bad) in r.stderr and "ledger.transfer" in r.stderr, r.stderr
        assert "minimum" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_unknown_handler_and_bad_listen_address(tmp_path):
    conf = write_conf(tmp_path)
    conf.write_text(conf.read_text().replace('handler = "ledger.open"', 'handler = "ledger.opne"'))
    r = worker("-n", "-c", str(conf))
    assert r.returncode == 2 and 'unknown handler "ledger.opne"' in r.stderr
    assert f"{conf}:" in r.stderr
    conf = write_conf(tmp_path, http_listen="nowhere:http")
    r = worker("-n", "-c", str(conf))
    assert r.returncode == 2 and "http.listen" in r.stderr


def test_json_logs_never_show_the_password_and_sigterm_stops_a_waiting_worker(tmp_path):
    """PostgreSQL is unreachable: the worker retries, logging the conninfo
    without its password, in JSON, and a SIGTERM still stops it at once."""
    conf = write_conf(tmp_path)
    conf.write_text(conf.read_text().replace('level = "info"; }', 'level = "info"; format = "json"; }')
                    .replace("dbname=x", "dbname=x password=hunter2"))
    log = tmp_path / "worker.log"
    with open(log, "wb") as f:
        p = subprocess.Popen([str(BIN / "sluice-worker"), "-c", str(conf)], stderr=f, env=CLEAN_ENV)
    # Its first attempt, however slowly the worker starts (ASan).
    deadline = time.time() + 30
    while "could not connect to postgresql" not in log.read_text(errors="replace") and time.time() < deadline:
        time.sleep(0.1)
    p.terminate()
    p.wait(timeout=30)
    err = log.read_text(errors="replace")
    assert p.returncode == 0
    assert "hunter2" not in err
    lines = [json.loads(line) for line in err.strip().splitlines()]
    retry = [line for line in lines if "could not connect to postgresql" in line["msg"]]
    assert retry and "password=***" in retry[0]["msg"]
    assert all({"ts", "level", "prog", "msg"} <= set(line) for line in lines)
