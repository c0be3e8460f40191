"""Fixtures shared by the system tests: the real broker, the real server, and
the built binaries.

Every test gets empty state: topics carry a unique suffix and each test gets a
database of its own, created from scratch and dropped afterwards. The services
themselves come from `tests/services up` (see tests/run-system), which exports
SLUICE_KAFKA_BROKERS and SLUICE_PG_CONNINFO.

Sanitizer reports fail the test that caused them (binaries built with
SANITIZE=address,undefined; others print none). Exit statuses alone would
miss some: a test that SIGKILLs its worker never sees one, and many read
a log for one line. So, after each test:
- AddressSanitizer and LeakSanitizer reports are read from files: every
  process gets log_path in ASAN_OPTIONS (set here, at import, before the
  test modules copy os.environ), which also catches processes whose stderr
  a test captured or discarded;
- UndefinedBehaviorSanitizer reports are read from the *.log files under
  pytest's temporary folder (the workers' logs): with gcc, UBSan linked
  beside ASan ignores log_path and writes to stderr. Elsewhere a UBSan
  report is noticed by its exit status: -fno-sanitize-recover=all makes
  the process exit 1 at the first one.
"""
import os
import pathlib
import shutil
import tempfile
import uuid

import psycopg
import pytest

from harness import BIN, Kafka, Pg

# ASan writes its reports to <SANITIZER_DIR>/report.<pid>. The caller's
# options are kept; ours come after them, so log_path is ours.
SANITIZER_DIR = pathlib.Path(tempfile.mkdtemp(prefix="sluice-sanitizer-"))
os.environ["ASAN_OPTIONS"] = ":".join(
    [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o]
    + [f"log_path={SANITIZER_DIR / 'report'}"])
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
_seen = {}  # path -> bytes of it already read
_log_root = None  # pytest's temporary folder, once a test has run


def _new_sanitizer_reports():
    """The sanitizer reports written since the last call, as text: whole
    report files, and the new lines of *.log files under pytest's
    temporary folder that carry a sanitizer marker (with the lines after
    them: the stack)."""
    out = []
    paths = sorted(SANITIZER_DIR.iterdir())
    if _log_root is not None:
        paths += sorted(_log_root.rglob("*.log"))
    for p in paths:
        try:
            with open(p, "rb") as f:
                f.seek(_seen.get(p, 0))
                text = f.read().decode(errors="replace")
                _seen[p] = f.tell()
        except OSError:
            continue
        if not text:
            continue
        if p.parent == SANITIZER_DIR:
            out.append(f"--- {p}\n{text}")
            continue
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if any(m in line for m in SANITIZER_MARKERS):
                out.append(f"--- {p}\n" + "\n".join(lines[i:i + 40]))
                break
    return out


@pytest.fixture(autouse=True)
def no_sanitizer_reports(tmp_path_factory):
    """Fails the test when a process it started (or a module fixture
    before it) wrote a sanitizer report. Autouse, so it is set up first
    and torn down last: after the workers of `env` are stopped."""
    global _log_root
    _log_root = tmp_path_factory.getbasetemp()
    yield
    reports = _new_sanitizer_reports()
    if reports:
        pytest.fail("sanitizer reports:\n" + "\n".join(reports)[-20000:], pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    """Reports written after the last test (a module fixture's teardown)
    fail the run too."""
    reports = _new_sanitizer_reports()
    if reports:
        print("\nsanitizer reports after the last test:\n" + "\n".join(reports)[-20000:])
        session.exitstatus = 1
    shutil.rmtree(SANITIZER_DIR, ignore_errors=True)


def _require_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set; run the system tests through tests/run-system")
    return value


@pytest.fixture(scope="session")
def brokers():
    return _require_env("SLUICE_KAFKA_BROKERS")


@pytest.fixture(scope="session")
def admin_conninfo():
    return _require_env("SLUICE_PG_CONNINFO")


@pytest.fixture
def kafka(brokers, request):
    k = Kafka(brokers, prefix=request.node.name)
    yield k
    k.close()


@pytest.fixture
def pg(admin_conninfo):
    dbname = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(admin_conninfo, autocommit=True) as c:
        c.execute(f"create database {dbname}")
    db = Pg(admin_conninfo, dbname)
    yield db
    db.close()
    with psycopg.connect(admin_conninfo, autocommit=True) as c:
        c.execute(f"drop database if exists {dbname} with (force)")


@pytest.fixture(scope="session")
def bin_dir():
    d = BIN
    for b in ("sluice-worker", "sluicectl"):
        if not (d / b).exists():
            pytest.fail(f"{d / b} is missing; run 'make' first")
    return d


@pytest.fixture
def env(kafka, pg, tmp_path):
    """Topics, a migrated database and worker processes for one test
    (test_worker.Env); workers still running at the end are killed."""
    from test_worker import Env
    e = Env(kafka, pg, tmp_path)
    yield e
    e.kill_all()
