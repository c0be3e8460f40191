"""Fixtures shared by the system tests: the real broker, the real server, and
the built binaries.

Every test gets empty state: topics carry a unique suffix and each test gets a
database of its own, created from scratch and dropped afterwards. The services
themselves come from `tests/services up` (see tests/run-system), which exports
SLUICE_KAFKA_BROKERS and SLUICE_PG_CONNINFO.
"""
import os
import uuid

import psycopg
import pytest

from harness import BIN, Kafka, Pg


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
