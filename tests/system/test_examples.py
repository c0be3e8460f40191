"""The examples' SQL halves against a real PostgreSQL, without a worker.

examples/orders/ ships its own migrations (the set "orders"), a job schema
and a SQL-function handler, orders.fulfil(job jsonb). Here: the folder
migrates as its own set beside sluice's, and the function ships, refuses
and locks as its README says, called with psycopg the way the worker calls
it (the whole job as one jsonb argument).
"""
import json
import os
import subprocess
import threading

import psycopg
import pytest

from harness import BIN, ROOT, cloudevent, read_results

ORDERS = ROOT / "examples" / "orders"


def sluicectl(*args, input=None):
    return subprocess.run([str(BIN / "sluicectl"), *args], input=input, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


@pytest.fixture
def shop(pg):
    """sluice's set, then the example's folder under its default name."""
    r = sluicectl("migrate", "--conninfo", pg.conninfo, "--dir", "schemas/sql", "--dir", "examples/orders/sql")
    assert r.returncode == 0, r.stderr
    assert "applied orders/0001_orders.sql" in r.stdout.splitlines()
    pg.query("insert into orders.items values ('widget', 5), ('gadget', 0)")
    return pg


def job(data, job_id="j1", attempt=1):
    return json.dumps({"id": job_id, "source": "tests", "type": "orders.fulfil", "subject": None,
                       "time": "2026-01-01T00:00:00Z", "data": data, "key": data.get("item"),
                       "attempt": attempt})


def fulfil(pg, data, job_id="j1"):
    return pg.scalar("select orders.fulfil(%s::jsonb)", job(data, job_id))


def refusal(pg, data, job_id="j1"):
    with pytest.raises(psycopg.Error) as e:
        fulfil(pg, data, job_id)
    return e.value.sqlstate, e.value.diag.message_primary, e.value.diag.message_detail


def test_orders_migrates_as_its_own_set(shop):
    assert shop.query("select set, version, name from sluice.schema_migrations where set = 'orders'") == [
        ("orders", "0001", "orders")]
    # Its 0001 is not sluice's 0001, and a second run finds both applied.
    assert shop.scalar("select count(*) from sluice.schema_migrations where version = '0001'") == 2
    r = sluicectl("migrate", "--status", "--conninfo", shop.conninfo, "--dir", "examples/orders/sql")
    assert r.returncode == 0 and r.stdout.startswith("applied  orders/0001_orders.sql ("), r.stdout
    # Nothing of the example's lives in sluice's schema.
    assert shop.scalar("select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                       "where n.nspname = 'sluice' and c.relname like '%%item%%'") == 0


def test_fulfil_ships_and_says_what_is_left(shop):
    assert fulfil(shop, {"item": "widget", "qty": 2}) == {"shipment": 1, "left": 3}
    assert fulfil(shop, {"item": "widget", "qty": 3}, "j2") == {"shipment": 2, "left": 0}
    assert shop.scalar("select stock from orders.items where id = 'widget'") == 0
    assert shop.query("select job_source, job_id, item, qty from orders.shipments order by id") == [
        ("tests", "j1", "widget", 2), ("tests", "j2", "widget", 3)]


def test_fulfil_refuses_and_changes_nothing(shop):
    assert refusal(shop, {"item": "widget", "qty": 6}) == ("SL002", "only 5 left", "out_of_stock")
    assert refusal(shop, {"item": "gadget", "qty": 1}) == ("SL002", "only 0 left", "out_of_stock")
    assert refusal(shop, {"item": "gizmo", "qty": 1}) == ("SL002", "no item gizmo", "unknown_item")
    assert shop.scalar("select stock from orders.items where id = 'widget'") == 5
    assert shop.scalar("select count(*) from orders.shipments") == 0


def test_fulfil_one_job_one_shipment(shop):
    """The same job twice (sluice's ledger prevents it; the data says so too)."""
    fulfil(shop, {"item": "widget", "qty": 1})
    assert refusal(shop, {"item": "widget", "qty": 1})[0] == "23505"


def test_fulfil_locks_the_item(shop):
    """Two jobs for the last units: the second waits for the first, then
    finds the stock gone, instead of both shipping."""
    with psycopg.connect(shop.conninfo) as first:
        first.execute("select orders.fulfil(%s::jsonb)", (job({"item": "widget", "qty": 4}, "a"),))
        outcome = {}

        def second():
            with psycopg.connect(shop.conninfo, autocommit=True) as c:
                try:
                    c.execute("select orders.fulfil(%s::jsonb)", (job({"item": "widget", "qty": 4}, "b"),))
                    outcome["ok"] = True
                except psycopg.Error as e:
                    outcome["error"] = (e.sqlstate, e.diag.message_primary)

        t = threading.Thread(target=second)
        t.start()
        t.join(1.0)
        assert t.is_alive(), "the second job did not wait for the item's lock"
        first.commit()
        t.join(30)
    assert outcome == {"error": ("SL002", "only 1 left")}


def test_fulfil_schema():
    schema = str(ORDERS / "jobs" / "orders.fulfil.json")
    for data, ok in (({"item": "widget", "qty": 1}, True), ({"item": "widget", "qty": 0}, False),
                     ({"item": "widget", "qty": 1.5}, False), ({"item": "widget"}, False),
                     ({"item": "", "qty": 1}, False), ({"item": "widget", "qty": 1, "rush": True}, False)):
        r = sluicectl("validate", "--schema", schema, input=json.dumps(data))
        assert (r.returncode == 0) == ok, (data, r.stderr)


def test_worker_conf_checks(shop):
    """`sluice-worker -n` passes the sample, its function in place, and
    names the function when it is not."""
    env = {**os.environ, "SLUICE_PG_CONNINFO": shop.conninfo}
    r = subprocess.run([str(BIN / "sluice-worker"), "-n", "-c", str(ORDERS / "worker.conf")],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    shop.query("drop function orders.fulfil(jsonb)")
    r = subprocess.run([str(BIN / "sluice-worker"), "-n", "-c", str(ORDERS / "worker.conf")],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "worker.conf:" in r.stderr and "orders.fulfil(jsonb) does not exist" in r.stderr


def test_orders_end_to_end(shop, kafka):
    """The example as its README runs it: the sample config, the SQL
    function as the handler, orders shipped and refused."""
    topics = {}
    for name, parts in (("orders.jobs", 3), ("orders.results", 1), ("orders.jobs.dlq", 1)):
        topics[name] = kafka.create_topic(name=name, partitions=parts)
    env = {**os.environ, "SLUICE_PG_CONNINFO": shop.conninfo, "SLUICE_KAFKA_BROKERS": kafka.brokers}
    w = subprocess.Popen([str(BIN / "sluice-worker"), "-c", str(ORDERS / "worker.conf")], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        jobs = [cloudevent("orders.fulfil", {"item": "widget", "qty": 2}),
                cloudevent("orders.fulfil", {"item": "widget", "qty": 2}),
                cloudevent("orders.fulfil", {"item": "widget", "qty": 2}),
                cloudevent("orders.fulfil", {"item": "gadget", "qty": 1})]
        for ev in jobs:
            kafka.produce("orders.jobs", json.dumps(ev).encode(), key=ev["data"]["item"].encode(), flush=False)
        kafka.flush()
        res = read_results(kafka, "orders.results", len(jobs), timeout=60)
    finally:
        w.terminate()
        err = w.communicate(timeout=60)[1]
    assert w.returncode == 0, err[-3000:]
    got = [res.first(ev["id"])["data"] for ev in jobs]
    assert [g["status"] for g in got] == ["succeeded", "succeeded", "rejected", "rejected"], got
    assert got[1]["output"]["left"] == 1
    assert got[2]["error"]["code"] == "out_of_stock" and got[3]["error"]["code"] == "out_of_stock"
    assert shop.scalar("select stock from orders.items where id = 'widget'") == 1
    assert shop.scalar("select count(*) from orders.shipments") == 2
