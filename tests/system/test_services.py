"""The harness itself: the broker and the server the worker tests rely on."""
import os
import subprocess

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
