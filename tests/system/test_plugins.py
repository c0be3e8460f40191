"""Plugins: C handlers built out of tree against an installed sluice and
loaded by sluice-worker (handler = "plugin:PATH.so:NAME").

sluice is installed the way a package build does it (`make install
DESTDIR=... PREFIX=/usr`, into a BUILD folder of this module's own, never
build/), and the plugins are compiled against that tree only: its
<sluice/handler.h> through its sluice.pc, found with PKG_CONFIG_PATH and
PKG_CONFIG_SYSROOT_DIR. A sysroot holds a package's dependencies too, so
the system's libpq and jansson headers are linked into it. The installed
sluice-worker then runs them:

- examples/orders/plugin end to end against the test services: orders
  succeed, the ones beyond the stock are rejected with out_of_stock, the
  tables hold each effect once, and a redelivered job changes nothing;
- a handler that sends COMMIT fails its job with code transaction_control;
- each way a plugin fails to load is a `file:line:` error and exit 2 from
  `sluice-worker -n`.

The test database gets its own orders.fulfil(job jsonb), written to the
contract the example's SQL follows (examples/orders/sql): a jsonb object
on success, SQLSTATE SL002 with DETAIL = the code to refuse.
"""
import json
import os
import pathlib
import shutil
import subprocess
import time

import pytest

from harness import ROOT, Worker, cloudevent, conf_text, read_results

PROBE_C = ROOT / "tests" / "plugins" / "probe.c"


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    assert out.returncode == 0, " ".join(map(str, cmd)) + "\n" + out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def destdir(tmp_path_factory):
    build = tmp_path_factory.mktemp("build")
    dest = tmp_path_factory.mktemp("destdir")
    _run(["make", "--no-print-directory", "-j2", "-C", str(ROOT), f"BUILD={build}", "install",
          f"DESTDIR={dest}", "PREFIX=/usr"])
    for pkg in ("libpq", "jansson"):
        inc = _run(["pkg-config", "--variable=includedir", pkg]).stdout.strip()
        target = dest / inc.lstrip("/")
        if inc and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(inc)
    return dest


@pytest.fixture(scope="module")
def pc_env(destdir):
    return dict(os.environ, PKG_CONFIG_PATH=str(destdir / "usr/lib/pkgconfig"),
                PKG_CONFIG_SYSROOT_DIR=str(destdir))


@pytest.fixture(scope="module")
def worker_bin(destdir):
    return destdir / "usr/sbin/sluice-worker"


@pytest.fixture(scope="module")
def plugins(tmp_path_factory, destdir, pc_env):
    """The example built with its own Makefile in a copy of its folder, and
    the probe in each of its builds."""
    d = tmp_path_factory.mktemp("plugins")
    shutil.copytree(ROOT / "examples/orders/plugin", d / "orders")
    _run(["make", "--no-print-directory", "-C", str(d / "orders")], env=pc_env)
    cflags = _run(["pkg-config", "--cflags", "sluice"], env=pc_env).stdout.split()
    assert f"-I{destdir}/usr/include" in cflags, cflags
    for case in ("GOOD", "WRONG_ABI", "NO_MAGIC", "FAILING_INIT"):
        _run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wmissing-prototypes", "-shared", "-fPIC",
              f"-D{case}", *cflags, "-o", str(d / f"probe_{case.lower()}.so"), str(PROBE_C)], env=pc_env)
    return d


def test_pc_file(destdir, pc_env):
    pc = (destdir / "usr/lib/pkgconfig/sluice.pc").read_text()
    assert "prefix=/usr\n" in pc and "includedir=${prefix}/include\n" in pc
    assert "Requires: libpq jansson\n" in pc and "@" not in pc
    version = _run(["pkg-config", "--modversion", "sluice"], env=pc_env).stdout.strip()
    assert version and version in (ROOT / "common/version.h").read_text()
    assert (destdir / "usr/include/sluice/handler.h").read_bytes() == (ROOT / "include/sluice/handler.h").read_bytes()


def _with_jobs(text, jobs):
    """conf_text's configuration with `jobs` (libconfig groups) added."""
    assert "jobs = (\n" in text
    return text.replace("jobs = (\n", "jobs = (\n" + "".join(f"  {j},\n" for j in jobs), 1)


def _check(worker_bin, tmp_path, handler):
    """Runs `sluice-worker -n` on a configuration naming `handler`; returns
    (exit status, stderr, the configuration's path, the job's line)."""
    conf = tmp_path / "check.conf"
    text = _with_jobs(conf_text("localhost:9092", "dbname=none", ["jobs"], "results", "dlq", "g"),
                      [f'{{ type = "probe"; handler = {json.dumps(handler)}; }}'])
    conf.write_text(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if handler in l)
    out = subprocess.run([str(worker_bin), "-n", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    return out.returncode, out.stderr, conf, line


def test_check_loads_a_good_plugin(worker_bin, plugins, tmp_path):
    rc, err, conf, _ = _check(worker_bin, tmp_path, f"plugin:{plugins}/probe_good.so:probe_echo")
    assert (rc, err) == (0, "")
    # Relative to the configuration's folder, like schema paths.
    shutil.copy(plugins / "probe_good.so", tmp_path / "probe_good.so")
    rc, err, conf, _ = _check(worker_bin, tmp_path, "plugin:probe_good.so:probe_echo")
    assert (rc, err) == (0, "")


@pytest.mark.parametrize("spec,words", [
    ("plugin:{d}/missing.so:probe_echo",
     'could not load plugin "{d}/missing.so": {d}/missing.so: cannot open shared object file'),
    ("plugin:{d}/probe_good.so:probe_nope",
     'plugin "{d}/probe_good.so" has no handler "probe_nope": {d}/probe_good.so: undefined symbol: probe_nope'),
    ("plugin:{d}/probe_wrong_abi.so:probe_echo",
     'plugin "{d}/probe_wrong_abi.so" was built for sluice handler ABI version 999, but this sluice-worker '
     'has ABI version 1: rebuild it'),
    ("plugin:{d}/probe_failing_init.so:probe_echo",
     'could not start plugin "{d}/probe_failing_init.so": sluice_plugin_init failed: PROBE_SETTING is not set'),
    ("plugin:{d}/probe_no_magic.so:probe_echo",
     '"{d}/probe_no_magic.so" is not a sluice plugin: it has no sluice_plugin_magic'),
    ("plugin:{d}/probe_good.so", 'is not "plugin:PATH.so:NAME"'),
], ids=["missing-file", "missing-symbol", "abi-mismatch", "failing-init", "no-magic", "no-name"])
def test_load_errors(worker_bin, plugins, tmp_path, spec, words):
    spec = spec.format(d=plugins)
    rc, err, conf, line = _check(worker_bin, tmp_path, spec)
    assert rc == 2, err
    assert err.startswith(f'sluice-worker: {conf}:{line}: handler of job type "probe": '), err
    assert words.format(d=plugins) in err, err
    assert err.count("\n") == 1, err


ORDERS_SQL = """
create schema orders;
create table orders.stock (item text primary key, quantity integer not null check (quantity >= 0));
create table orders.shipments (
  job_source text not null, job_id text not null, order_id text not null, item text not null,
  quantity integer not null, primary key (job_source, job_id));
create function orders.fulfil(job jsonb) returns jsonb language plpgsql as $$
declare
  d jsonb := job -> 'data';
  left_over integer;
begin
  update orders.stock set quantity = quantity - (d ->> 'quantity')::integer
   where item = d ->> 'item' and quantity >= (d ->> 'quantity')::integer
   returning quantity into left_over;
  if not found then
    raise exception 'item "%" has fewer than % in stock', d ->> 'item', d ->> 'quantity'
      using errcode = 'SL002', detail = 'out_of_stock';
  end if;
  insert into orders.shipments values (job ->> 'source', job ->> 'id', d ->> 'order', d ->> 'item',
                                       (d ->> 'quantity')::integer);
  return jsonb_build_object('order', d ->> 'order', 'item', d ->> 'item', 'left', left_over,
                            'attempt', job -> 'attempt', 'key', job -> 'key');
end $$;
"""


class InstalledWorker(Worker):
    """harness.Worker, running the installed sluice-worker."""

    def __init__(self, binary, *args, **kw):
        super().__init__(*args, **kw)
        self.binary = str(binary)

    def start(self):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-c", self.conf_path], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=self.env)
        return self


def test_orders_end_to_end(env, worker_bin, plugins):
    """Six orders of 3 widgets against a stock of 10, all with one key (so
    in order): three ship, three are refused; then the first is delivered
    again and changes nothing. In the same worker, probe handlers show the
    job's attributes and what happens to a handler that sends COMMIT."""
    env.pg.query(ORDERS_SQL)
    env.pg.query("insert into orders.stock values ('widget', 10)")
    conf = env.tmp / "orders.conf"
    conf.write_text(_with_jobs(
        conf_text(env.kafka.brokers, env.pg.conninfo, [env.jobs], env.results, env.dlq, env.group,
                  max_batch=8, retry={"max_attempts": 3, "initial_backoff": 0.05, "max_backoff": 0.2}),
        ['{ type = "orders.fulfil"; handler = "plugin:%s/orders/orders.so:orders_fulfil"; }' % plugins,
         '{ type = "probe.echo"; handler = "plugin:%s/probe_good.so:probe_echo"; }' % plugins,
         '{ type = "probe.commit"; handler = "plugin:%s/probe_good.so:probe_commit"; }' % plugins]))
    w = InstalledWorker(worker_bin, conf, env.tmp / "orders.log")
    env.workers.append(w)
    w.start()

    orders = [cloudevent("orders.fulfil", {"order": f"o{i}", "item": "widget", "quantity": 3},
                         job_id=f"order-{i}", source="shop") for i in range(6)]
    echo = cloudevent("probe.echo", {"note": "hi", "n": 1}, job_id="echo-1")
    echo["subject"] = "subj"
    commit = cloudevent("probe.commit", {}, job_id="commit-1")
    env.produce_jobs(orders + [echo, commit], lambda ev: b"widget" if ev["type"] == "orders.fulfil" else b"k")
    res = read_results(env.kafka, env.results, len(orders) + 2, timeout=120)
    assert len(res.by_job) == len(orders) + 2, w.log()[-3000:]
    res.assert_copies_identical()

    data = {i: res.first(f"order-{i}")["data"] for i in range(6)}
    for i in range(3):
        assert data[i]["status"] == "succeeded", data[i]
        assert data[i]["output"] == {"order": f"o{i}", "item": "widget", "left": 10 - 3 * (i + 1),
                                     "attempt": 1, "key": "widget"}
    for i in range(3, 6):
        assert data[i]["status"] == "rejected", data[i]
        assert data[i]["error"]["code"] == "out_of_stock"
        assert data[i]["error"]["message"] == 'item "widget" has fewer than 3 in stock'
    assert env.pg.scalar("select quantity from orders.stock where item = 'widget'") == 1
    assert env.pg.query("select job_source, job_id, order_id from orders.shipments order by job_id") == [
        ("shop", f"order-{i}", f"o{i}") for i in range(3)]

    out = res.first("echo-1")["data"]
    assert out["status"] == "succeeded", out
    assert out["output"] == {"id": "echo-1", "source": "tests", "type": "probe.echo", "subject": "subj",
                             "time": echo["time"], "key": "k", "attempt": 1, "note": "hi",
                             "data": {"note": "hi", "n": 1}}

    failed = res.first("commit-1")["data"]
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "transaction_control"
    assert failed["error"]["message"].startswith('refused to run "  /* the worker\'s, not ours */'), failed
    assert "the worker owns the job's transaction" in failed["error"]["message"]
    letters = env.kafka.consume(env.dlq, count=1, timeout=60)
    assert len(letters) == 1

    # Delivered again: the stored result goes out again, the tables stay.
    env.produce_jobs([orders[0]], lambda ev: b"widget")
    deadline = time.time() + 60
    while True:
        again = read_results(env.kafka, env.results, len(orders) + 2, timeout=30)
        if len(again.by_job["order-0"]) >= 2 or time.time() > deadline:
            break
    assert len(again.by_job["order-0"]) == 2, w.log()[-3000:]
    again.assert_copies_identical()
    assert env.pg.scalar("select count(*) from orders.shipments") == 3
    assert env.pg.scalar("select quantity from orders.stock where item = 'widget'") == 1
    assert env.pg.scalar("select count(*) from sluice.jobs where source = 'shop'") == 6
    assert w.stop() == 0
