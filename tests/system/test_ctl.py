"""sluicectl migrate, enqueue and tail against the real server and broker.

Each test runs the built binary (build/sluicectl) from the repository root, so
the default folders (schemas/sql, schemas/jobs) are the real ones.
"""
import json
import os
import shutil
import subprocess
import uuid

import pytest

from harness import ROOT

SQL_DIR = ROOT / "schemas" / "sql"
MIGRATIONS = sorted(p.name for p in SQL_DIR.glob("*.sql"))


def ctl(bin_dir, *args, input=None, timeout=60, env=None):
    return subprocess.run([str(bin_dir / "sluicectl"), *args], input=input, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def is_cloudevent(ev):
    return (ev["specversion"] == "1.0" and ev["id"] and ev["source"] and ev["type"]
            and ev["time"].endswith("Z") and ev["datacontenttype"] == "application/json"
            and isinstance(ev["data"], dict))


# ---- migrate ---------------------------------------------------------------

def test_ctl_migrate_applies_all_to_a_fresh_database(bin_dir, pg):
    r = ctl(bin_dir, "migrate", "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stderr
    assert [f"applied {m}" for m in MIGRATIONS] == r.stdout.splitlines()[:-1]
    assert r.stdout.splitlines()[-1].startswith(f"{len(MIGRATIONS)} applied, 0 already applied")
    rows = pg.query("select version, name, length(checksum) from sluice.schema_migrations order by version")
    assert rows == [(m.split("_", 1)[0], m.split("_", 1)[1][:-4], 64) for m in MIGRATIONS]
    for table in ("sluice.jobs", "ledger.accounts", "ledger.transfers"):
        assert pg.scalar("select to_regclass(%s) is not null", table), table


def test_ctl_migrate_is_idempotent(bin_dir, pg):
    assert ctl(bin_dir, "migrate", "--conninfo", pg.conninfo).returncode == 0
    before = pg.query("select version, checksum, applied_at from sluice.schema_migrations order by 1")
    r = ctl(bin_dir, "migrate", "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stderr
    [summary] = r.stdout.splitlines()
    assert summary.startswith(f'0 applied, {len(MIGRATIONS)} already applied (database "{pg.dbname}" on ')
    assert "NOTICE" not in r.stderr
    assert pg.query("select version, checksum, applied_at from sluice.schema_migrations order by 1") == before
    r = ctl(bin_dir, "migrate", "--status", "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stderr
    assert all(line.startswith("applied") for line in r.stdout.splitlines()[:-1])


def test_ctl_migrate_concurrent_runs_both_succeed(bin_dir, pg):
    procs = [subprocess.Popen([str(bin_dir / "sluicectl"), "migrate", "--conninfo", pg.conninfo],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    applied = [line for out, _ in outs for line in out.splitlines() if line.startswith("applied ")]
    assert sorted(applied) == [f"applied {m}" for m in MIGRATIONS]
    assert pg.scalar("select count(*) from sluice.schema_migrations") == len(MIGRATIONS)


def test_ctl_migrate_refuses_a_changed_file(bin_dir, pg, tmp_path):
    for m in MIGRATIONS:
        shutil.copy(SQL_DIR / m, tmp_path / m)
    assert ctl(bin_dir, "migrate", "--dir", str(tmp_path), "--conninfo", pg.conninfo).returncode == 0
    with open(tmp_path / MIGRATIONS[-1], "a") as f:
        f.write("\n-- edited after it was applied\n")
    r = ctl(bin_dir, "migrate", "--dir", str(tmp_path), "--conninfo", pg.conninfo)
    assert r.returncode == 1
    assert f'migration "{MIGRATIONS[-1]}" was changed after it was applied' in r.stderr
    r = ctl(bin_dir, "migrate", "--status", "--dir", str(tmp_path), "--conninfo", pg.conninfo)
    assert r.returncode == 1
    assert f"changed  {MIGRATIONS[-1]}" in r.stdout


def test_ctl_migrate_error_names_the_file_and_rolls_it_back(bin_dir, pg, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("create table ok (id int);\n")
    (tmp_path / "0002_bad.sql").write_text("create table half (id int);\n\ncreate table bad (id nosuchtype);\n")
    r = ctl(bin_dir, "migrate", "--dir", str(tmp_path), "--conninfo", pg.conninfo)
    assert r.returncode == 1
    assert r.stderr.strip() == ('sluicectl migrate: could not apply "0002_bad.sql": '
                                'type "nosuchtype" does not exist (line 3)')
    assert pg.query("select version from sluice.schema_migrations") == [("0001",)]
    assert pg.scalar("select to_regclass('half') is null")


def test_ctl_migrate_never_prints_the_password(bin_dir, tmp_path):
    secret = "s3cr3t-" + uuid.uuid4().hex
    r = ctl(bin_dir, "migrate", "--conninfo", f"host=127.0.0.1 port=1 user=x password={secret} dbname=x")
    assert r.returncode == 2
    assert "could not connect" in r.stderr and "password=***" in r.stderr
    assert secret not in r.stderr + r.stdout
    r = ctl(bin_dir, "migrate", env={"SLUICE_PG_CONNINFO": f"postgresql://x:{secret}@127.0.0.1:1/x"})
    assert r.returncode == 2
    assert secret not in r.stderr + r.stdout


def test_ctl_migrate_redacts_every_conninfo_form(bin_dir):
    secret = "s3cr3t-" + uuid.uuid4().hex
    for conninfo in (f"postgresql://x@127.0.0.1:1/x?password={secret}",
                     f"host=127.0.0.1\tport=1\npassword={secret}",
                     f"host=127.0.0.1 port=1 sslpassword={secret}",
                     f"host=127.0.0.1 port=1 password={secret[:8]} {secret[8:]}"):
        r = ctl(bin_dir, "migrate", env={"SLUICE_PG_CONNINFO": conninfo})
        assert r.returncode == 2, r.stderr
        assert "could not connect" in r.stderr
        assert secret[:8] not in r.stderr + r.stdout and secret[8:] not in r.stderr + r.stdout


def test_ctl_migrate_conninfo_file(bin_dir, tmp_path):
    secret = "s3cr3t-" + uuid.uuid4().hex
    f = tmp_path / "conninfo"
    f.write_text(f"host=127.0.0.1 port=1 user=x password={secret} dbname=x\n")
    f.chmod(0o644)
    r = ctl(bin_dir, "migrate", "--conninfo-file", str(f))
    assert r.returncode == 2
    assert "could not connect" in r.stderr and "password=***" in r.stderr
    assert str(f) in r.stderr and "holds a secret" in r.stderr and "readable by others" in r.stderr
    assert secret not in r.stderr + r.stdout
    f.chmod(0o600)
    r = ctl(bin_dir, "migrate", "--conninfo-file", str(f))
    assert r.returncode == 2 and "readable" not in r.stderr
    r = ctl(bin_dir, "migrate", "--conninfo", f"host=127.0.0.1 port=1 password={secret}")
    assert "visible to other users" in r.stderr and secret not in r.stderr
    r = ctl(bin_dir, "migrate", "--conninfo-file", str(tmp_path / "missing"))
    assert r.returncode == 2 and "could not open conninfo file" in r.stderr
    assert "--conninfo-file FILE" in ctl(bin_dir, "migrate", "--help").stdout


# ---- enqueue ---------------------------------------------------------------

def test_ctl_enqueue_data(bin_dir, kafka):
    topic = kafka.create_topic("jobs")
    r = ctl(bin_dir, "enqueue", "--topic", topic, "--type", "ledger.open", "--key", "acct-1",
            "--id", "job-1", "--source", "test", "--data", '{"account": "acct-1", "balance": 5}',
            "--no-validate")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert r.stderr.strip() == f"enqueued 1 jobs to {topic}"
    [m] = kafka.consume(topic, count=1)
    ev = json.loads(m.value())
    assert is_cloudevent(ev)
    assert (ev["id"], ev["source"], ev["type"]) == ("job-1", "test", "ledger.open")
    assert ev["data"] == {"account": "acct-1", "balance": 5}
    assert m.key() == b"acct-1"
    assert list(ev) == ["specversion", "id", "source", "type", "time", "datacontenttype", "data"]


def test_ctl_enqueue_stdin_lines(bin_dir, kafka):
    topic = kafka.create_topic("jobs", partitions=3)
    lines = []
    for i in range(2000):
        if i % 2:
            lines.append(json.dumps({"amount": i}))
        else:
            lines.append(json.dumps({"type": "ledger.transfer", "key": f"k{i % 7}", "data": {"amount": i}}))
    r = ctl(bin_dir, "enqueue", "--topic", topic, "--type", "ledger.open", "--key", "default-key",
            "--no-validate", "--verbose", input="\n".join(lines) + "\n\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"enqueued 2000 jobs to {topic}"
    reports = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(reports) == 2000
    assert all(set(x) == {"id", "type", "key", "topic", "partition", "offset"} for x in reports)

    got = kafka.consume(topic, count=2000, timeout=60)
    assert len(got) == 2000
    events = {}
    for m in got:
        ev = json.loads(m.value())
        assert is_cloudevent(ev)
        events[ev["id"]] = (ev, m)
    assert len(events) == 2000, "ids are not unique"
    by_amount = {ev["data"]["amount"]: (ev, m) for ev, m in events.values()}
    assert sorted(by_amount) == list(range(2000))
    for amount, (ev, m) in by_amount.items():
        if amount % 2:
            assert ev["type"] == "ledger.open" and m.key() == b"default-key"
        else:
            assert ev["type"] == "ledger.transfer" and m.key() == f"k{amount % 7}".encode()
    where = {(x["partition"], x["offset"]): x["id"] for x in reports}
    assert all(where[(m.partition(), m.offset())] == json.loads(m.value())["id"] for m in got)


def test_ctl_enqueue_bad_line_stops_there(bin_dir, kafka):
    topic = kafka.create_topic("jobs")
    lines = [json.dumps({"n": i}) for i in range(4)] + ['{"n": 4'] + [json.dumps({"n": 5})]
    r = ctl(bin_dir, "enqueue", "--topic", topic, "--type", "t", "--no-validate",
            input="\n".join(lines) + "\n")
    assert r.returncode == 2
    assert "sluicectl enqueue: stdin:5: invalid JSON" in r.stderr
    assert f"enqueued 4 jobs to {topic}" in r.stderr
    assert kafka.end_offsets(topic) == {0: 4}

    r = ctl(bin_dir, "enqueue", "--topic", topic, "--no-validate", input='{"data": {}}\n')
    assert r.returncode == 2
    assert "stdin:1: no job type" in r.stderr
    r = ctl(bin_dir, "enqueue", "--topic", topic, "--type", "t", "--no-validate", input="[1]\n")
    assert r.returncode == 2
    assert "stdin:1: expected a JSON object" in r.stderr
    assert kafka.end_offsets(topic) == {0: 4}


def test_ctl_enqueue_missing_topic_or_schema_is_a_setup_error(bin_dir, kafka, tmp_path):
    r = ctl(bin_dir, "enqueue", "--topic", "no-such-topic-" + uuid.uuid4().hex, "--type", "t",
            "--data", "{}", "--no-validate")
    assert r.returncode == 2
    assert "does not exist" in r.stderr
    topic = kafka.create_topic("jobs")
    r = ctl(bin_dir, "enqueue", "--topic", topic, "--type", "no.such.type", "--data", "{}",
            "--schema-dir", str(tmp_path))
    assert r.returncode == 2
    assert 'no schema for job type "no.such.type"' in r.stderr
    assert kafka.end_offsets(topic) == {0: 0}


def _validate_available(bin_dir):
    r = ctl(bin_dir, "validate", "--help")
    return not (r.returncode == 2 and "not available" in r.stderr)


def test_ctl_enqueue_validates_data_against_the_schema(bin_dir, kafka, tmp_path):
    if not _validate_available(bin_dir):
        pytest.skip("JSON Schema validation is not in this build yet")
    (tmp_path / "t.amount.json").write_text(json.dumps({
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "required": ["amount"], "properties": {"amount": {"type": "integer", "minimum": 1}}}))
    topic = kafka.create_topic("jobs")
    args = ("enqueue", "--topic", topic, "--type", "t.amount", "--schema-dir", str(tmp_path))
    r = ctl(bin_dir, *args, "--data", '{"amount": 3}')
    assert r.returncode == 0, r.stderr
    r = ctl(bin_dir, *args, "--data", '{"amount": 0}')
    assert r.returncode == 2
    assert "amount" in r.stderr
    r = ctl(bin_dir, *args, input='{"amount": 1}\n{"amount": "x"}\n')
    assert r.returncode == 2
    assert "stdin:2:" in r.stderr
    assert kafka.end_offsets(topic) == {0: 2}


def test_ctl_validate_bounds_the_instance_size(bin_dir, tmp_path):
    (tmp_path / "s.json").write_text("{}")
    r = ctl(bin_dir, "validate", "--schema", str(tmp_path / "s.json"), "/dev/zero", timeout=20)
    assert r.returncode == 2
    assert r.stderr.strip() == ('sluicectl validate: instance "/dev/zero" is larger than 16777216 bytes '
                                '(see --max-bytes)')
    r = ctl(bin_dir, "validate", "--schema", str(tmp_path / "s.json"), "--max-bytes", "6", input="[1,2]\n")
    assert r.returncode == 0, r.stderr
    r = ctl(bin_dir, "validate", "--schema", str(tmp_path / "s.json"), "--max-bytes", "5", input="[1,2]\n")
    assert r.returncode == 2 and "larger than 5 bytes" in r.stderr
    assert "--max-bytes N" in ctl(bin_dir, "validate", "--help").stdout


# ---- tail ------------------------------------------------------------------

def test_ctl_tail_prints_results_byte_for_byte(bin_dir, kafka):
    topic = kafka.create_topic("job-results", partitions=2)
    sent = []
    for i in range(5):
        v = json.dumps({"specversion": "1.0", "id": f"r{i}", "data": {"status": "succeeded", "n": "é"}},
                       separators=(",", ":"), ensure_ascii=False).encode()
        kafka.produce(topic, v, key=f"k{i}".encode(), flush=False)
        sent.append(v)
    kafka.flush()
    r = subprocess.run([str(bin_dir / "sluicectl"), "tail", "--topic", topic, "--from-beginning",
                        "--count", "5", "--timeout", "30"], capture_output=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split(b"\n")[:-1]) == sorted(sent)
    assert r.stdout.endswith(b"\n")

    r = ctl(bin_dir, "tail", "--topic", topic, "--from-beginning", "--count", "6", "--timeout", "2")
    assert r.returncode == 1
    assert len(r.stdout.splitlines()) == 5


def test_ctl_tail_dlq_formats_headers(bin_dir, kafka):
    topic = kafka.create_topic("jobs.dlq")
    kafka.produce(topic, b"not json \xff", key=b"acct-9", headers=[
        ("sluice-error-code", b"invalid_json"), ("sluice-source-topic", b"jobs"),
        ("sluice-source-offset", b"17"), ("raw", b"\xfe\x00")])
    kafka.produce(topic, b'{"a":1}')
    r = ctl(bin_dir, "tail", "--dlq", "--topic", topic, "--from-beginning", "--count", "2", "--timeout", "30")
    assert r.returncode == 0, r.stderr
    first, second = [json.loads(line) for line in r.stdout.splitlines()]
    assert first == {
        "topic": topic, "partition": 0, "offset": 0, "key": "acct-9",
        "value_base64": "bm90IGpzb24g/w==",
        "headers": {"sluice-error-code": "invalid_json", "sluice-source-topic": "jobs",
                    "sluice-source-offset": "17"},
        "headers_base64": {"raw": "/gA="}}
    assert second == {"topic": topic, "partition": 0, "offset": 1, "key": None, "value": '{"a":1}',
                      "headers": {}}


def test_ctl_tail_reads_what_enqueue_wrote(bin_dir, kafka):
    topic = kafka.create_topic("jobs")
    r = ctl(bin_dir, "enqueue", "--topic", topic, "--type", "t", "--no-validate",
            input="".join(json.dumps({"i": i}) + "\n" for i in range(10)))
    assert r.returncode == 0, r.stderr
    r = ctl(bin_dir, "tail", "--topic", topic, "--from-beginning", "--count", "10", "--timeout", "30")
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(line)["data"]["i"] for line in r.stdout.splitlines()) == list(range(10))
