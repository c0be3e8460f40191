"""sluicectl console (issue 17): the pages in headless Chromium against the
real broker and server, a worker that ran good and poison jobs, a replay
from the page, and the console answering while a source is down.

The browser is Debian's chromium driven through Selenium with Debian's
chromedriver, named explicitly so that Selenium Manager never downloads
anything. Screenshots of each page go to $SLUICE_CONSOLE_SHOTS, by default
build/console-shots/ (untracked, so a test run leaves the tree clean);
SLUICE_CONSOLE_SHOTS=docs/console refreshes the ones the README shows. Everything is bounded: the console and Chromium are stopped in
finally blocks, and each wait has a deadline.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from harness import BIN, ROOT, Worker, cloudevent, conf_text, migrate, read_results

SHOTS = ROOT / os.environ.get("SLUICE_CONSOLE_SHOTS", "build/console-shots")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HOSTILE_ID = "<script>alert('pwned')</script>\x1b[31m\"&'<img src=x onerror=alert(2)>"
SERVICES = str(ROOT / "tests" / "services")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Console:
    """One `sluicectl console` process on an ephemeral loopback port."""

    def __init__(self, conf, log_path, args=(), env=None):
        self.log_path = log_path
        e = {k: v for k, v in os.environ.items()
             if k not in ("SLUICE_KAFKA_BROKERS", "SLUICE_PG_CONNINFO", "SLUICE_CONSOLE_TOKEN")}
        e.update(env or {})
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([str(BIN / "sluicectl"), "console", "-c", str(conf),
                                      "--listen", "127.0.0.1:0", *args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=e)
        deadline = time.time() + 20
        while time.time() < deadline:
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.log())
            if m:
                self.url = m.group(1)
                return
            assert self.proc.poll() is None, self.log()
            time.sleep(0.05)
        raise AssertionError("console did not start:\n" + self.log())

    def log(self):
        return open(self.log_path, errors="replace").read()

    def get(self, path, timeout=15, headers=None):
        """(status, body, seconds) of a GET."""
        t0 = time.time()
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode(), time.time() - t0
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), time.time() - t0

    def post(self, path, fields, headers=None):
        data = urllib.parse.urlencode(fields).encode()
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(5)
        else:
            rc = self.proc.returncode
        self._log.close()
        return rc


class ConsoleEnv:
    """Topics, a migrated database, a worker configuration with its HTTP
    listener, and workers of it."""

    def __init__(self, kafka, pg, tmp_path):
        self.kafka, self.pg, self.tmp = kafka, pg, tmp_path
        self.jobs = kafka.create_topic("jobs", partitions=3)
        self.results = kafka.create_topic("results", partitions=1)
        self.dlq = kafka.create_topic("dlq", partitions=1)
        self.group = "g-" + os.urandom(4).hex()
        self.http = f"127.0.0.1:{free_port()}"
        self.n = 0
        migrate(pg.conninfo)

    def conf(self, transfers=True):
        text = conf_text(self.kafka.brokers, self.pg.conninfo, [self.jobs], self.results, self.dlq,
                         self.group, executors=2, http_listen=self.http)
        if not transfers:
            text, n = re.subn(r',\s*\{ type = "ledger\.transfer";[^\n]*\}', "", text)
            assert n == 1
        self.n += 1
        path = self.tmp / f"worker{self.n}.conf"
        path.write_text(text)
        return path

    def worker(self, transfers=True):
        conf = self.conf(transfers)
        return Worker(conf, self.tmp / f"worker{self.n}.log").start(), conf

    def produce(self, items):
        for value, key in items:
            self.kafka.produce(self.jobs, value, key=key, flush=False)
        self.kafka.flush()


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1300,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    # The explicit driver path keeps Selenium Manager from looking for one.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def shot(driver, name):
    """Saves the whole page (not only the window) as SHOTS/NAME."""
    import base64
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    png = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 3000), "scale": 1}})
    (SHOTS / name).write_bytes(base64.b64decode(png["data"]))


def no_alert(driver):
    from selenium.common.exceptions import NoAlertPresentException
    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def text_of(driver, css):
    """The text of the element `css` selects; a missing one fails with the page's text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        # A page that a form's POST loads may still be loading (ASan).
        return WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.CSS_SELECTOR, css))).text
    except TimeoutException:
        body = driver.find_elements(By.CSS_SELECTOR, "body")
        raise AssertionError(f"no {css} in {driver.current_url}:\n" + (body[0].text if body else driver.page_source))


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason="chromium and chromium-driver are not installed (make deps)")
def test_console_pages_in_chromium(kafka, pg, tmp_path):
    from selenium.webdriver.common.by import By
    env = ConsoleEnv(kafka, pg, tmp_path)
    opens = [cloudevent("ledger.open", {"account": f"acc-{i:02d}", "balance": 100}) for i in range(12)]
    transfers = [cloudevent("ledger.transfer", {"from": f"acc-{i:02d}", "to": f"acc-{i + 1:02d}", "amount": 10})
                 for i in range(3)]
    hostile = cloudevent("ledger.nope", {"x": "</pre><script>alert(3)</script>"}, job_id=HOSTILE_ID)
    tids = {ev["id"] for ev in transfers}

    # A worker that does not know transfers: they and the rest of the poison
    # become dead letters; the opens succeed.
    w, _ = env.worker(transfers=False)
    env.produce([(json.dumps(ev).encode(), ev["data"]["account"].encode()) for ev in opens])
    env.produce([(json.dumps(ev).encode(), ev["data"]["from"].encode()) for ev in transfers]
                + [(json.dumps(hostile).encode(), b"k\x1b[2Jey"), (b"not json {", b"garbage")])
    res = read_results(kafka, env.results, len(opens) + len(transfers) + 2, timeout=60)
    assert res.status_counts() == {"succeeded": 12, "failed": 5}, w.log()[-3000:]
    assert w.stop(60) == 0, w.log()[-3000:]
    # The fixed worker: it runs the transfers once they are replayed.
    w, conf = env.worker(transfers=True)
    console = Console(conf, tmp_path / "console.log")
    driver = None
    try:
        driver = browser()
        driver.set_page_load_timeout(20)

        # Fleet: the worker sampled and ready, lag per partition, the
        # ledger's figures as PostgreSQL counts them, the charts.
        deadline = time.time() + 20
        while True:
            driver.get(console.url + "/")
            table = text_of(driver, "#workers")
            if "ready" in table and "not ready" not in table or time.time() > deadline:
                break
            time.sleep(1)
        assert "ready" in table and "not ready" not in table, table + w.log()[-2000:]
        assert env.http in table
        assert text_of(driver, "#src-pg") == "PostgreSQL: up" and text_of(driver, "#src-kafka") == "Kafka: up"
        # Messages that fail before their transaction (not JSON, unknown
        # type) leave no ledger row: the ledger has the 12 opens.
        counts = dict(pg.query("select status, count(*) from sluice.jobs group by status"))
        assert counts == {"succeeded": 12}
        for st in ("succeeded", "rejected", "failed", "running"):
            assert text_of(driver, f"#ledger-{st}").split()[0] == str(counts.get(st, 0))
        lag_rows = driver.find_elements(By.CSS_SELECTOR, "#lag tr")[1:]
        assert len(lag_rows) == 3 and all(env.jobs in r.text for r in lag_rows)
        bars = driver.find_elements(By.CSS_SELECTOR, "#chart-throughput rect")
        assert bars, "no bar in the throughput chart"
        assert driver.find_elements(By.CSS_SELECTOR, "#chart-failures rect")
        assert text_of(driver, "#dead-letters").split() == "5 dead letters (5 not replayed)".split()
        shot(driver, "fleet.png")

        # Dead letters: counts by type and code, the hostile id inert.
        driver.get(console.url + "/dlq")
        assert text_of(driver, "#dlq-total") == "5 dead letters."
        groups = text_of(driver, "#dlq-groups")
        assert "ledger.transfer unknown_type 3 3" in groups and "invalid_json 1 1" in groups, groups
        assert no_alert(driver)
        # One script element (the console's own), no injected image.
        assert driver.execute_script("return document.scripts.length") == 1
        assert driver.execute_script("return document.images.length") == 0
        body = text_of(driver, "body")
        assert "<script>alert('pwned')</script>\\x1B[31m\"&'<img src=x onerror=alert(2)>" in body
        assert "k\\x1B[2Jey" in body
        shot(driver, "dlq.png")
        hostile_row = [r for r in driver.find_elements(By.CSS_SELECTOR, "#letters tr.letter")
                       if "pwned" in r.text][0]
        hostile_row.find_element(By.CSS_SELECTOR, "a").click()
        value = text_of(driver, "#letter-value")
        assert "</pre><script>alert(3)</script>" in value and "pwned" in value
        assert no_alert(driver) and driver.execute_script("return document.scripts.length") == 1

        # A replay without the CSRF token, or from another origin, is refused.
        m = re.search(r'name="csrf" value="([0-9a-f]{32})"', driver.page_source)
        assert m
        status, _ = console.post("/dlq/replay", {"p": "0", "o": "0", "confirm": "yes"})
        assert status == 403
        status, _ = console.post("/dlq/replay", {"p": "0", "o": "0", "confirm": "yes", "csrf": "0" * 32})
        assert status == 403
        status, _ = console.post("/dlq/replay", {"p": "0", "o": "0", "confirm": "yes", "csrf": m.group(1)},
                                 headers={"Origin": "http://evil.example"})
        assert status == 403
        status, _, _ = console.get("/", headers={"Host": "evil.example:80"})
        assert status == 421

        # Replay the transfers from the page: a confirmation, then the outcome.
        driver.get(console.url + "/dlq?type=ledger.transfer&code=unknown_type")
        assert text_of(driver, "#dlq-shown") == "3 selected."
        driver.find_element(By.CSS_SELECTOR, "#replay-selected button").click()
        assert "Replay 3 dead letters" in text_of(driver, "#replay-question")
        driver.find_element(By.CSS_SELECTOR, "#replay-confirm button").click()
        driver.switch_to.alert.accept()  # the script's second confirmation
        deadline = time.time() + 30
        while not driver.find_elements(By.CSS_SELECTOR, "#replay-outcome") and time.time() < deadline:
            time.sleep(0.2)
        assert text_of(driver, "#replay-outcome") == "3 replayed, 0 failed, 0 skipped (3 selected)."
        assert set(text_of(driver, "#replayed-ids").split()) == tids

        # Each replayed job's result reaches the results topic, and its page
        # tells its story: ledger row, stored result, identical copies.
        def finished(res):
            return {j for j, c in res.by_job.items()
                    if j in tids and any(ev["data"]["status"] != "failed" for _, ev in c)}
        deadline = time.time() + 60
        while len(finished(res := read_results(kafka, env.results, 17, timeout=10))) < 3 \
                and time.time() < deadline:
            time.sleep(0.5)
        assert finished(res) == tids, w.log()[-3000:]
        job = sorted(tids)[0]
        deadline = time.time() + 20
        while True:
            driver.get(console.url + "/job?id=" + job + "&source=tests")
            if "all identical" in text_of(driver, "#copies-summary") or time.time() > deadline:
                break
            time.sleep(0.5)
        story = text_of(driver, "main")
        status = pg.scalar("select status from sluice.jobs where id = %s", job)
        assert status in ("succeeded", "rejected") and f"status {status}" in story
        stored = pg.scalar("select result from sluice.jobs where id = %s", job)
        assert text_of(driver, "pre.result") == stored
        assert "all identical to it" in text_of(driver, "#copies-summary")
        assert "another outcome" in text_of(driver, "#copies")  # the failed result before the replay
        assert "unknown_type" in text_of(driver, "#job-letters")  # its dead letter, now marked replayed
        shot(driver, "job.png")

        # Outbox and schedules.
        pg.query("select sluice.schedule('nightly-report', '0 3 * * *', 'ledger.open', "
                 "'{\"account\": \"acc-nightly\", \"balance\": 1}'::jsonb)")
        driver.get(console.url + "/outbox")
        assert text_of(driver, "#outbox-depth").split()[0] == str(pg.scalar("select count(*) from sluice.outbox"))
        sched = text_of(driver, "#schedules")
        assert "nightly-report" in sched and "0 3 * * *" in sched
        shot(driver, "outbox.png")

        # Pages read without the script: plain HTML with the figures in it.
        status, html, _ = console.get("/")
        assert status == 200 and 'id="ledger-succeeded"><b>' in html and "<svg" in html
    finally:
        if driver is not None:
            driver.quit()
        rc = console.stop()
        w.stop(60)
    assert rc == 0, console.log()


def services(*args):
    r = subprocess.run([SERVICES, *args], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"tests/services {' '.join(args)}: {r.stderr}{r.stdout}"


PAGES = ("/", "/dlq", "/outbox", "/job?id=nope")


def test_console_answers_under_load_and_outages(kafka, pg, tmp_path):
    """Every page answers within a few seconds while the worker runs flat
    out, then with PostgreSQL stopped and with Kafka stopped, and says
    which source is down."""
    env = ConsoleEnv(kafka, pg, tmp_path)
    w, conf = env.worker()
    console = Console(conf, tmp_path / "console.log")
    pg_down = kafka_down = False
    try:
        # Full load: more jobs than the worker can finish while we ask.
        n = 4000
        p = kafka.producer
        for i in range(n):
            ev = cloudevent("ledger.open", {"account": f"load-{i}", "balance": 1})
            p.produce(env.jobs, json.dumps(ev).encode(), key=ev["data"]["account"].encode())
        kafka.flush()
        busy = 0
        for path in PAGES:
            status, body, took = console.get(path)
            assert status == 200 and took < 5, (path, status, took)
            assert "PostgreSQL: up" in body or path == "/dlq"
            busy += pg.scalar("select count(*) from sluice.jobs") < n
        assert busy > 0, "the worker finished before the console was asked anything"

        services("stop", "pg", "--immediate")
        pg_down = True
        for path in PAGES:
            status, body, took = console.get(path)
            assert status == 200 and took < 8, (path, status, took)
            if path != "/dlq":
                assert "PostgreSQL is down" in body, (path, body[:2000])
            if path != "/outbox":
                assert "Kafka: up" in body, (path, body[:2000])
        services("start", "pg")
        pg_down = False
        pg.reconnect()

        services("stop", "kafka", "--kill")
        kafka_down = True
        for path in PAGES:
            status, body, took = console.get(path)
            assert status == 200 and took < 8, (path, status, took)
            if path != "/outbox":
                assert "Kafka is down" in body, (path, body[:2000])
            if path != "/dlq":
                assert "PostgreSQL: up" in body, (path, body[:2000])
        services("start", "kafka")
        kafka_down = False
        status, body, _ = console.get("/")
        assert status == 200 and "Kafka: up" in body
    finally:
        if pg_down:
            services("start", "pg")
            pg.reconnect()
        if kafka_down:
            services("start", "kafka")
        rc = console.stop()
        w.kill()
    assert rc == 0, console.log()


def test_console_beyond_loopback_needs_a_token(kafka, pg, tmp_path):
    """No token, no listening beyond loopback; with one, every request
    needs it. On loopback, a foreign Host is turned away (DNS rebinding)."""
    env = ConsoleEnv(kafka, pg, tmp_path)
    conf = env.conf()
    r = subprocess.run([str(BIN / "sluicectl"), "console", "-c", str(conf), "--listen", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=30,
                       env={k: v for k, v in os.environ.items() if k != "SLUICE_CONSOLE_TOKEN"})
    assert r.returncode == 2 and "without a token" in r.stderr, r.stderr
    token = "t0ken-" + os.urandom(8).hex()
    log = open(tmp_path / "console.log", "wb")
    proc = subprocess.Popen([str(BIN / "sluicectl"), "console", "-c", str(conf), "--listen", "0.0.0.0:0"],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "SLUICE_CONSOLE_TOKEN": token})
    try:
        deadline = time.time() + 20
        port = None
        while port is None and time.time() < deadline:
            m = re.search(r"listening on http://0\.0\.0\.0:(\d+)", (tmp_path / "console.log").read_text())
            port = m and m.group(1)
            time.sleep(0.05)
        assert port, (tmp_path / "console.log").read_text()
        url = f"http://127.0.0.1:{port}/job"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=10)
        assert e.value.code == 401 and "Basic" in e.value.headers["WWW-Authenticate"]
        import base64
        for auth in ("Basic " + base64.b64encode(f"ops:{token}".encode()).decode(), "Bearer " + token):
            with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": auth}),
                                        timeout=10) as ok:
                assert ok.status == 200
                assert ok.headers["Content-Security-Policy"].startswith("default-src 'none'")
        bad = "Basic " + base64.b64encode(b"ops:wrong-token-123456").decode()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": bad}), timeout=10)
        assert e.value.code == 401
        assert token not in (tmp_path / "console.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        log.close()
