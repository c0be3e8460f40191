"""The harness itself: the broker and the server the worker tests rely on."""
import os
import subprocess

import pytest

from harness import ROOT


def test_kafka_round_trip(kafka):
    topic = kafka.create_topic("roundtrip", partitions=3)
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(30)}
    for k, v in sent.items():
        kafka.produce(topic, v, key=k, headers=[("h", b"1")], flush=False)
    kafka.flush()
    got = kafka.consume(topic, count=len(sent), timeout=30)
    assert {m.key(): m.value() for m in got} == sent
    assert all(m.headers() == [("h", b"1")] for m in got)
    assert sorted({m.partition() for m in got}) == [0, 1, 2]


def test_topics_start_empty(kafka):
    topic = kafka.create_topic("empty")
    assert kafka.end_offsets(topic) == {0: 0}


def test_postgres_round_trip(pg):
    pg.query("create table t (id int primary key, v text not null)")
    pg.query("insert into t values (%s, %s)", 1, "one")
    assert pg.query("select id, v from t") == [(1, "one")]


def test_each_test_gets_its_own_database(pg):
    assert pg.scalar("select count(*) from pg_tables where schemaname = 'public'") == 0
    assert pg.dbname.startswith("t_")


def test_kcat_reaches_broker(brokers):
    out = subprocess.run(["kcat", "-b", brokers, "-L", "-m", "5"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "1 brokers" in out.stdout


def test_services_up_twice_in_parallel_and_down_cleans_up():
    """Two more environments beside the one the suite runs on: separate ports,
    separate folders; `down` leaves neither processes nor folders."""
    script = str(ROOT / "tests" / "services")
    procs = [subprocess.Popen([script, "up"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    envs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err
            env = dict(line[len("export "):].split("=", 1) for line in out.splitlines()
                       if line.startswith("export "))
            envs.append({k: v.strip("'") for k, v in env.items()})
        a, b = envs
        assert a["SLUICE_SERVICES_DIR"] != b["SLUICE_SERVICES_DIR"]
        assert a["SLUICE_KAFKA_BROKERS"] != b["SLUICE_KAFKA_BROKERS"]
        assert a["PGPORT"] != b["PGPORT"]
        for env in envs:
            r = subprocess.run(["psql", "-tAc", "select 42"], capture_output=True, text=True, timeout=30,
                               env={**os.environ, **env})
            assert r.stdout.strip() == "42", r.stderr
            r = subprocess.run(["kcat", "-b", env["SLUICE_KAFKA_BROKERS"], "-L"], capture_output=True,
                               text=True, timeout=30)
            assert r.returncode == 0, r.stderr
    finally:
        for env in envs:
            subprocess.run([script, "down", env["SLUICE_SERVICES_DIR"]], timeout=120)
    for env in envs:
        d = env["SLUICE_SERVICES_DIR"]
        assert not os.path.exists(d)
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert d not in ps, f"a process of {d} is still running"


def test_port_in_use_gives_one_clear_line():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = subprocess.run([str(ROOT / "tests" / "services"), "up"], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "SLUICE_PG_PORT": str(port)})
    finally:
        s.close()
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"port {port} on 127.0.0.1 is in use" in lines[0]
    assert r.stdout == ""


def test_missing_kafka_gives_one_clear_line(tmp_path):
    r = subprocess.run([str(ROOT / "tests" / "services"), "up"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "SLUICE_CACHE": str(tmp_path)})
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "run 'make deps'" in lines[0] and "Kafka" in lines[0]


# ---- fault verbs: stop, start, restart, topics -----------------------------

SERVICES = str(ROOT / "tests" / "services")


def services(*args, timeout=120, check=True):
    r = subprocess.run([SERVICES, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"tests/services {' '.join(args)}: {r.stderr}"
    return r


@pytest.fixture(scope="module")
def own_services():
    """An environment of its own (the suite's must not go down under other
    tests); yields its exported variables."""
    r = services("up", timeout=180)
    env = {k: v.strip("'") for k, v in (line[len("export "):].split("=", 1) for line in r.stdout.splitlines()
                                          if line.startswith("export "))}
    try:
        yield env
    finally:
        services("down", env["SLUICE_SERVICES_DIR"])


def psql(env, sql):
    return subprocess.run(["psql", "-X", "-tAc", sql], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **env})


def test_pg_stop_immediate_and_start_keep_port_and_data(own_services):
    env, d = own_services, own_services["SLUICE_SERVICES_DIR"]
    assert psql(env, "create table kept (v int); insert into kept values (7)").returncode == 0
    services("stop", "pg", "--immediate", d)
    r = psql(env, "select 1")
    assert r.returncode != 0, "PostgreSQL still answers after stop"
    assert not os.path.exists(os.path.join(d, "pg", "data", "postmaster.pid"))
    services("start", "pg", d)
    assert psql(env, "select v from kept").stdout.strip() == "7"
    # Idempotent, and a fast restart (the default) works too.
    services("start", "pg", d)
    services("restart", "pg", d)
    assert psql(env, "select v from kept").stdout.strip() == "7"


def test_kafka_kill_and_start_keep_messages(own_services):
    from confluent_kafka import Producer
    env, d = own_services, own_services["SLUICE_SERVICES_DIR"]
    brokers = env["SLUICE_KAFKA_BROKERS"]
    services("topics", d, "kept:2")
    p = Producer({"bootstrap.servers": brokers, "acks": "all", "enable.idempotence": True})
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(50)}
    for k, v in sent.items():
        p.produce("kept", v, key=k)
    assert p.flush(30) == 0
    pid = int(open(os.path.join(d, "kafka", "pid")).read())
    services("stop", "kafka", "--kill", d)
    assert not os.path.exists(f"/proc/{pid}"), "the broker still runs after stop --kill"
    assert subprocess.run(["kcat", "-b", brokers, "-L", "-m", "2"], capture_output=True,
                          timeout=30).returncode != 0
    services("start", "kafka", d)
    services("start", "kafka", d)  # idempotent
    from harness import Kafka
    got = Kafka(brokers).consume("kept", count=len(sent), timeout=60)
    assert {m.key(): m.value() for m in got} == sent
    # A clean stop (SIGTERM) and start through restart.
    services("restart", "kafka", d)
    assert subprocess.run(["kcat", "-b", brokers, "-L"], capture_output=True, timeout=30).returncode == 0


def test_topics_created_with_their_partitions_and_leaders(own_services):
    from confluent_kafka.admin import AdminClient
    env, d = own_services, own_services["SLUICE_SERVICES_DIR"]
    services("topics", d, "jobs.a:6", "results.a:3", "dlq.a:1")
    md = AdminClient({"bootstrap.servers": env["SLUICE_KAFKA_BROKERS"]}).list_topics(timeout=10)
    for name, n in (("jobs.a", 6), ("results.a", 3), ("dlq.a", 1)):
        parts = md.topics[name].partitions
        assert len(parts) == n
        assert all(p.leader >= 0 for p in parts.values())
    # Existing topics are left alone; the folder may come from the environment.
    r = subprocess.run([SERVICES, "topics", "jobs.a:6"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SLUICE_SERVICES_DIR": d})
    assert r.returncode == 0, r.stderr
    # Another partition count for an existing topic is an error, not ignored.
    r = services("topics", d, "jobs.a:2", check=False)
    assert r.returncode != 0 and "jobs.a" in r.stderr and "6 partitions" in r.stderr


@pytest.mark.parametrize("spec", ["jobs", "jobs:", "jobs:0", "jobs:-1", "jobs:x", ":3", "a/b:1", "a b:2"])
def test_topics_bad_spec_gives_one_clear_line(spec):
    r = services("topics", "/tmp/sluice-services.none", spec, check=False)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "bad topic spec" in lines[0] and "NAME:PARTITIONS" in lines[0]


def test_fault_verbs_refuse_bad_arguments(own_services):
    d = own_services["SLUICE_SERVICES_DIR"]
    for args in (["stop", "redis", d], ["stop", "pg", "--kill", d], ["start", "kafka", "--kill", d],
                 ["stop", "pg", "/tmp/elsewhere"]):
        r = services(*args, check=False)
        assert r.returncode != 0 and r.stderr.startswith("services: "), (args, r.stderr)
