"""sluicectl migrate, enqueue and tail against the real server and broker.

Each test runs the built binary (build/sluicectl) from the repository root, so
the default folders (schemas/sql, schemas/jobs) are the real ones.
"""
import hashlib
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
    assert [f"applied sluice/{m}" for m in MIGRATIONS] == r.stdout.splitlines()[:-1]
    assert r.stdout.splitlines()[-1].startswith(f"{len(MIGRATIONS)} applied, 0 already applied (set sluice; ")
    rows = pg.query("select set, version, name, length(checksum) from sluice.schema_migrations "
                    "order by version")
    assert rows == [("sluice", m.split("_", 1)[0], m.split("_", 1)[1][:-4], 64) for m in MIGRATIONS]
    assert pg.scalar("select to_regclass('sluice.jobs') is not null")


def test_ctl_migrate_is_idempotent(bin_dir, pg):
    assert ctl(bin_dir, "migrate", "--conninfo", pg.conninfo).returncode == 0
    before = pg.query("select set, version, checksum, applied_at from sluice.schema_migrations order by 1, 2")
    r = ctl(bin_dir, "migrate", "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stderr
    [summary] = r.stdout.splitlines()
    assert summary.startswith(f'0 applied, {len(MIGRATIONS)} already applied (set sluice; '
                              f'database "{pg.dbname}" on ')
    assert "NOTICE" not in r.stderr
    assert pg.query("select set, version, checksum, applied_at from sluice.schema_migrations "
                    "order by 1, 2") == before
    r = ctl(bin_dir, "migrate", "--status", "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stderr
    assert all(line.startswith("applied  sluice/") for line in r.stdout.splitlines()[:-1])


def test_ctl_migrate_concurrent_runs_both_succeed(bin_dir, pg):
    procs = [subprocess.Popen([str(bin_dir / "sluicectl"), "migrate", "--conninfo", pg.conninfo],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    applied = [line for out, _ in outs for line in out.splitlines() if line.startswith("applied ")]
    assert sorted(applied) == [f"applied sluice/{m}" for m in MIGRATIONS]
    assert pg.scalar("select count(*) from sluice.schema_migrations") == len(MIGRATIONS)


def test_ctl_migrate_refuses_a_changed_file(bin_dir, pg, tmp_path):
    for m in MIGRATIONS:
        shutil.copy(SQL_DIR / m, tmp_path / m)
    args = ("--dir", str(tmp_path), "--set", "copy", "--conninfo", pg.conninfo)
    assert ctl(bin_dir, "migrate", *args).returncode == 0
    with open(tmp_path / MIGRATIONS[-1], "a") as f:
        f.write("\n-- edited after it was applied\n")
    r = ctl(bin_dir, "migrate", *args)
    assert r.returncode == 1
    assert f'migration "copy/{MIGRATIONS[-1]}" was changed after it was applied' in r.stderr
    r = ctl(bin_dir, "migrate", "--status", *args)
    assert r.returncode == 1
    assert f"changed  copy/{MIGRATIONS[-1]}" in r.stdout


def test_ctl_migrate_error_names_the_file_and_rolls_it_back(bin_dir, pg, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("create table ok (id int);\n")
    (tmp_path / "0002_bad.sql").write_text("create table half (id int);\n\ncreate table bad (id nosuchtype);\n")
    r = ctl(bin_dir, "migrate", "--dir", str(tmp_path), "--set", "t", "--conninfo", pg.conninfo)
    assert r.returncode == 1
    assert r.stderr.strip() == ('sluicectl migrate: could not apply "t/0002_bad.sql": '
                                'type "nosuchtype" does not exist (line 3)')
    assert r.stdout.splitlines()[-1] == "1 applied, 0 already applied, stopped at t/0002_bad.sql"
    assert pg.query("select set, version from sluice.schema_migrations") == [("t", "0001")]
    assert pg.scalar("select to_regclass('half') is null")


def app_folder(tmp_path, name="app"):
    """A user's migrations folder tmp_path/NAME/sql with a 0001 of its own."""
    d = tmp_path / name / "sql"
    d.mkdir(parents=True)
    (d / "0001_x.sql").write_text(f"create schema {name};\ncreate table {name}.x (id int);\n")
    return d


def test_ctl_migrate_keeps_each_folders_versions_apart(bin_dir, pg, tmp_path):
    """A user's 0001_x.sql beside sluice's own 0001: two sets, two histories."""
    app = app_folder(tmp_path)
    r = ctl(bin_dir, "migrate", "--dir", "schemas/sql", "--dir", str(app), "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:-1] == [f"applied sluice/{m}" for m in MIGRATIONS] + ["applied app/0001_x.sql"]
    assert r.stdout.splitlines()[-1].startswith(f"{len(MIGRATIONS) + 1} applied, 0 already applied "
                                                "(sets sluice, app; ")
    assert pg.query("select set, version, name from sluice.schema_migrations where version = '0001' "
                    "order by 1") == [("app", "0001", "x"), ("sluice", "0001", "job_ledger")]
    assert pg.scalar("select to_regclass('app.x') is not null")
    # Again, in any order and with the set named explicitly: nothing to do.
    r = ctl(bin_dir, "migrate", "--dir", str(app), "--set", "app", "--dir", str(SQL_DIR),
            "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"0 applied, {len(MIGRATIONS) + 1} already applied (sets app, sluice; ")
    r = ctl(bin_dir, "migrate", "--status", "--dir", str(app), "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("applied  app/0001_x.sql (")
    # A second application, as its own set, runs the same files again.
    other = app_folder(tmp_path, "other")
    r = ctl(bin_dir, "migrate", "--dir", str(other), "--conninfo", pg.conninfo)
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "applied other/0001_x.sql", r.stderr


def test_ctl_migrate_checks_checksums_per_set(bin_dir, pg, tmp_path):
    app = app_folder(tmp_path)
    assert ctl(bin_dir, "migrate", "--dir", str(app), "--conninfo", pg.conninfo).returncode == 0
    # The same version in another set with other bytes is no change to either.
    r = ctl(bin_dir, "migrate", "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stderr
    with open(app / "0001_x.sql", "a") as f:
        f.write("-- edited after it was applied\n")
    r = ctl(bin_dir, "migrate", "--dir", str(SQL_DIR), "--dir", str(app), "--conninfo", pg.conninfo)
    assert r.returncode == 1
    assert 'migration "app/0001_x.sql" was changed after it was applied' in r.stderr
    assert r.stdout.splitlines()[-1] == f"0 applied, {len(MIGRATIONS)} already applied, stopped at app/0001_x.sql"
    r = ctl(bin_dir, "migrate", "--status", "--dir", str(SQL_DIR), "--dir", str(app), "--conninfo", pg.conninfo)
    assert r.returncode == 1
    assert "changed  app/0001_x.sql" in r.stdout and "changed  sluice/" not in r.stdout
    # Under sluice's name, the user's 0001 meets sluice's own.
    r = ctl(bin_dir, "migrate", "--dir", str(app), "--set", "sluice", "--conninfo", pg.conninfo)
    assert r.returncode == 1 and 'migration "sluice/0001_x.sql" was changed' in r.stderr


def test_ctl_migrate_upgrades_an_old_table(bin_dir, pg):
    """A database migrated by a sluicectl before sets: one history, keyed by
    version alone. Its rows become sluice's own; nothing is applied twice."""
    pg.query("create schema sluice")
    pg.query("create table sluice.schema_migrations (version text primary key, name text not null, "
             "checksum text not null, applied_at timestamptz not null default now())")
    for m in MIGRATIONS[:-1]:
        pg.query((SQL_DIR / m).read_text())
        pg.query("insert into sluice.schema_migrations (version, name, checksum) values (%s, %s, %s)",
                 m.split("_", 1)[0], m.split("_", 1)[1][:-4],
                 hashlib.sha256((SQL_DIR / m).read_bytes()).hexdigest())
    before = pg.query("select version, checksum, applied_at from sluice.schema_migrations order by 1")
    # --status reads the old table as it is and writes nothing.
    r = ctl(bin_dir, "migrate", "--status", "--conninfo", pg.conninfo)
    assert r.returncode == 1, r.stderr
    assert [line.split(" (")[0] for line in r.stdout.splitlines()[:-1]] == (
        [f"applied  sluice/{m}" for m in MIGRATIONS[:-1]] + [f"pending  sluice/{MIGRATIONS[-1]}"])
    assert pg.scalar("select count(*) from information_schema.columns "
                     "where table_schema = 'sluice' and table_name = 'schema_migrations'") == 4
    # Two runs at once: one upgrades the table, the other finds it done.
    procs = [subprocess.Popen([str(bin_dir / "sluicectl"), "migrate", "--conninfo", pg.conninfo],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    applied = [line for out, _ in outs for line in out.splitlines() if line.startswith("applied ")]
    assert applied == [f"applied sluice/{MIGRATIONS[-1]}"]
    assert pg.query("select version, checksum, applied_at from sluice.schema_migrations "
                    "where set = 'sluice' and version < %s order by 1", MIGRATIONS[-1][:4]) == before
    assert pg.query("select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
                    "and a.attnum = any (i.indkey) where i.indrelid = 'sluice.schema_migrations'::regclass "
                    "and i.indisprimary order by a.attname") == [("set",), ("version",)]
    assert pg.scalar("select column_default from information_schema.columns where table_schema = 'sluice' "
                     "and table_name = 'schema_migrations' and column_name = 'set'") is None
    r = ctl(bin_dir, "migrate", "--conninfo", pg.conninfo)
    assert r.returncode == 0 and r.stdout.startswith(f"0 applied, {len(MIGRATIONS)} already applied"), r.stderr


LEDGER_DIR = ROOT / "schemas" / "ledger"


def test_ctl_migrate_sluice_set_creates_only_sluice_objects(bin_dir, pg):
    """sluice's own set makes schema sluice and nothing else; the ledger demo
    is a set of its own."""
    before = pg.query("select nspname from pg_namespace order by 1")
    assert ctl(bin_dir, "migrate", "--conninfo", pg.conninfo).returncode == 0
    assert set(pg.query("select nspname from pg_namespace order by 1")) - set(before) == {("sluice",)}
    r = ctl(bin_dir, "migrate", "--dir", str(SQL_DIR), "--dir", str(LEDGER_DIR), "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stderr
    ledger = sorted(p.name for p in LEDGER_DIR.glob("*.sql"))
    assert ledger[0].startswith("0001_")
    assert r.stdout.splitlines()[:-1] == [f"applied ledger/{m}" for m in ledger]
    for table in ("ledger.accounts", "ledger.transfers"):
        assert pg.scalar("select to_regclass(%s) is not null", table), table


def test_ctl_migrate_ledger_set_on_a_database_that_had_it_as_sluices(bin_dir, pg):
    """A database migrated before the ledger moved out: its objects and rows
    (sluice, 0002..0003) are there, with data. Applying the ledger's set
    records it and changes nothing; the ledger keeps working."""
    pg.query("create schema sluice")
    pg.query("create table sluice.schema_migrations (version text primary key, name text not null, "
             "checksum text not null, applied_at timestamptz not null default now())")
    # What sluicectl applied then: sluice's 0001, the ledger's two files as
    # 0002 and 0003 (the same objects), sluice's 0004.
    old = [SQL_DIR / MIGRATIONS[0], *sorted(LEDGER_DIR.glob("*.sql")), SQL_DIR / MIGRATIONS[1]]
    assert [p.name[:4] for p in old] == ["0001", "0001", "0002", "0004"]
    for i, (path, name) in enumerate(zip(old, ["job_ledger", "ledger", "ledger_transfer", "job_final"])):
        pg.query(path.read_text())
        pg.query("insert into sluice.schema_migrations (version, name, checksum) values (%s, %s, %s)",
                 f"{i + 1:04d}", name, hashlib.sha256(path.read_bytes()).hexdigest())
    pg.query("insert into ledger.accounts values ('a', 100), ('b', 0)")
    pg.query("select * from ledger.transfer('old', 'j1', 'a', 'b', 30)")
    r = ctl(bin_dir, "migrate", "--dir", "schemas/sql", "--dir", "schemas/ledger", "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stderr
    new = [m for m in MIGRATIONS if m[:4] > "0004"]
    assert r.stdout.splitlines()[:-1] == ([f"applied sluice/{m}" for m in new]
                                          + [f"applied ledger/{p.name}" for p in old[1:3]])
    assert pg.query("select id, balance from ledger.accounts order by 1") == [("a", 70), ("b", 30)]
    assert pg.query("select code, from_balance, to_balance from ledger.transfer('new', 'j2', 'b', 'a', 5)") == [
        (None, 25, 75)]
    assert pg.scalar("select count(*) from ledger.transfers") == 2
    # The rows the ledger left behind in sluice's set stay, and harm nothing.
    assert pg.query("select set, version, name from sluice.schema_migrations where set = 'ledger' "
                    "or name like 'ledger%' order by 1, 2") == [("ledger", "0001", "accounts"), ("ledger", "0002", "transfer"),
                                         ("sluice", "0002", "ledger"), ("sluice", "0003", "ledger_transfer")]
    r = ctl(bin_dir, "migrate", "--status", "--dir", "schemas/sql", "--dir", "schemas/ledger",
            "--conninfo", pg.conninfo)
    assert r.returncode == 0, r.stdout


def test_ctl_migrate_set_errors(bin_dir, pg, tmp_path):
    app = app_folder(tmp_path)
    r = ctl(bin_dir, "migrate", "--set", "x", "--dir", str(app), "--conninfo", pg.conninfo)
    assert r.returncode == 2
    assert r.stderr.strip() == ("sluicectl migrate: --set names the set of the --dir before it; "
                                "give --dir DIR first")
    r = ctl(bin_dir, "migrate", "--dir", str(app), "--set", "a b", "--conninfo", pg.conninfo)
    assert r.returncode == 2 and 'invalid set name "a b"' in r.stderr
    r = ctl(bin_dir, "migrate", "--dir", str(app), "--set", "a", "--set", "b", "--conninfo", pg.conninfo)
    assert r.returncode == 2 and f'--dir "{app}" is given two --set' in r.stderr
    r = ctl(bin_dir, "migrate", "--dir", str(app), "--dir", str(app) + "/", "--conninfo", pg.conninfo)
    assert r.returncode == 2
    assert f'folders "{app}" and "{app}/" are both the migration set "app"' in r.stderr
    odd = tmp_path / "my migrations"
    shutil.copytree(app, odd)
    r = ctl(bin_dir, "migrate", "--dir", str(odd), "--conninfo", pg.conninfo)
    assert r.returncode == 2
    assert f'cannot name a migration set after folder "{odd}"; name it with --set NAME' in r.stderr
    # A bad folder anywhere on the line stops the call before anything is applied.
    r = ctl(bin_dir, "migrate", "--dir", str(SQL_DIR), "--dir", str(tmp_path / "missing"),
            "--conninfo", pg.conninfo)
    assert r.returncode == 2 and "could not open migrations folder" in r.stderr
    assert pg.scalar("select to_regclass('sluice.schema_migrations') is null")


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
