"""What operators see: sd_notify messages, the watchdog, SIGHUP, /metrics."""
import json
import re
import signal
import socket
import threading
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from harness import cloudevent, read_results


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, text)
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, text, start=0, timeout=60):
        """The index of the first message at or after start holding text.

        The reader thread appends what the worker sent a moment later, so
        a test waits for a message even when the worker has sent it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            i = self.index_of(text, start)
            if i >= 0:
                return i
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout}s: {self.messages[start:]}")

    def close(self):
        self._stop = True
        self._t.join(2)
        self.sock.close()

    def index_of(self, text, start=0):
        for i in range(start, len(self.messages)):
            if text in self.messages[i][1].split("\n"):
                return i
        return -1


def test_notify_sequence_and_reload(kafka, env, tmp_path):
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        w = env.worker(executors=2)
        w.env.update({"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "400000"})
        w.start()
        env.open_accounts(20)
        ready = ns.wait_for("READY=1")
        ns.wait_for("WATCHDOG=1")
        assert ns.index_of("WATCHDOG=1") > ready
        # A STATUS= line with the summary the issue asks for.
        deadline = time.time() + 15
        while time.time() < deadline and not any(
                re.search(r"STATUS=\d+ partitions, \d+ jobs/s, \d+ in flight, lag \d+", m) for _, m in ns.messages):
            time.sleep(0.2)
        assert any(re.search(r"STATUS=\d+ partitions, \d+ jobs/s", m) for _, m in ns.messages), ns.messages

        # SIGHUP with a changed log level and a change that needs a restart.
        conf = open(w.conf_path).read()
        open(w.conf_path, "w").write(conf.replace('level = "info"', 'level = "debug"')
                                     .replace("executors = 2;", "executors = 3;")
                                     + "\noutbox = { batch = 17; };\n")
        n = len(ns.messages)
        w.signal(signal.SIGHUP)
        w.wait_for_log("not applied until a restart: executors, outbox")
        reloading = ns.wait_for("RELOADING=1", n, timeout=10)
        assert ns.wait_for("READY=1", reloading, timeout=10) > reloading

        n = len(ns.messages)
        assert w.stop(60) == 0
        stopping = ns.wait_for("STOPPING=1", n, timeout=10)
        order = [m for _, m in ns.messages]
        assert order.index(next(m for m in order if "READY=1" in m.split("\n"))) < stopping
    finally:
        ns.close()


def test_watchdog_stops_when_an_executor_is_wedged(kafka, env, tmp_path):
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        w = env.worker(executors=2, shutdown_timeout=2.0, extra="")
        conf = open(w.conf_path).read().replace("limits: {", "limits: {\n  stall_timeout = 1.5;")
        open(w.conf_path, "w").write(conf)
        w.env.update({"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "300000",
                      "SLUICE_TEST_WEDGE_EXECUTOR": "0"})
        w.start()
        ns.wait_for("READY=1")
        ns.wait_for("WATCHDOG=1")
        env.open_accounts(30)  # some keys land on executor 0, which hangs
        # Every reason is logged: executor 0, then the partitions whose
        # jobs it holds. (The partition's clock starts when the job is
        # fetched, a moment before the executor starts it; under ASan the
        # watchdog's tick can fall in that moment, and name a partition only.)
        w.wait_for_log("not pinging the systemd watchdog: ", timeout=30)
        assert re.search(r"not pinging the systemd watchdog: (executor 0 has run one job for \d+ s; )?"
                         r"partition \S+ \[\d+\] has not moved", w.log()), w.log()[-3000:]
        time.sleep(0.5)
        cut = time.monotonic()
        time.sleep(2.0)
        late = [m for t, m in ns.messages if t > cut and "WATCHDOG=1" in m.split("\n")]
        assert late == [], "watchdog pings went on while an executor was wedged"
        t0 = time.time()
        assert w.stop(60) == 0
        assert time.time() - t0 < 20
        assert "abandoning" in w.log()
    finally:
        ns.close()


def scrape(port, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def samples(text):
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_match_the_run(kafka, env, tmp_path):
    w = env.worker(executors=2, http_listen="127.0.0.1:0").start()
    w.wait_for_log("http listening on")
    port = int(re.search(r"http listening on \S+ \(port (\d+)\)", w.log()).group(1))
    assert scrape(port, "/healthz")[0] == 200
    opens = env.open_accounts(50)
    transfers = env.transfers(300, seed=5)
    env.produce_jobs(transfers, lambda ev: ev["data"]["from"].encode())
    kafka.produce(env.jobs, b"{not json", key=b"k")
    kafka.produce(env.jobs, json.dumps(cloudevent("no.such.type", {})).encode(), key=b"k")
    # A scrape during the run parses too.
    status, ctype, text = scrape(port)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    samples(text)
    res = read_results(kafka, env.results, len(opens) + len(transfers) + 2, timeout=120)
    # The gauges come from a snapshot taken each second, and a job leaves
    # the in-flight count when its result is acknowledged, a moment after
    # the result can be read: wait for a snapshot with every job done.
    deadline = time.time() + 30
    while True:
        status, _, text = scrape(port)
        s = samples(text)
        lag = [v for k, v in s.items() if k[0] == "sluice_consumer_lag_messages"]
        if s.get(("sluice_jobs_in_flight", ())) == 0 and len(lag) == 6 and all(v == 0 for v in lag) \
                or time.time() > deadline:
            break
        time.sleep(0.2)

    def count(type_, status_):
        return s.get(("sluice_jobs_total", (("status", status_), ("type", type_))), 0)

    by = {}
    for copies in res.by_job.values():
        ev = copies[0][1]
        t = ev["type"][:-len(".result")] if ev["data"]["type"] in ("ledger.open", "ledger.transfer") else "unknown"
        by[(t, ev["data"]["status"])] = by.get((t, ev["data"]["status"]), 0) + 1
    for (t, st), n in by.items():
        assert count(t, st) == n, (t, st, n, count(t, st))
    assert s[("sluice_jobs_in_flight", ())] == 0
    assert s[("sluice_dead_letters_total", (("code", "invalid_json"), ("type", "unknown")))] == 1
    assert s[("sluice_dead_letters_total", (("code", "unknown_type"), ("type", "unknown")))] == 1
    assert s[("sluice_job_duration_seconds_count", (("type", "ledger.transfer"),))] == \
        count("ledger.transfer", "succeeded") + count("ledger.transfer", "rejected")
    lags = {k: v for k, v in s.items() if k[0] == "sluice_consumer_lag_messages"}
    assert len(lags) == 6 and all(v == 0 for v in lags.values()), lags
    assert any(k[0] == "sluice_build_info" for k in s)
    assert ("sluice_executor_utilisation_ratio", ()) in s
    assert scrape(port, "/readyz")[0] == 200
    assert w.stop(60) == 0
