"""The ledger handlers (workers/ledger.c) against a real PostgreSQL.

Each job runs through tests/tools/ledger_probe, which wraps the handler in
the transaction the executor would: BEGIN, SAVEPOINT, handler, then COMMIT,
ROLLBACK TO SAVEPOINT + COMMIT (rejected) or ROLLBACK. No Kafka here.

The probe is $SLUICE_LEDGER_PROBE (set by `make system`), else
build/tests/ledger_probe; build it with `make build/tests/ledger_probe`.
"""
import json
import os
import pathlib
import random
import subprocess

import pytest

from harness import ROOT

SOURCE = "test/ledger"


@pytest.fixture(scope="session")
def probe():
    path = pathlib.Path(os.environ.get("SLUICE_LEDGER_PROBE") or ROOT / "build" / "tests" / "ledger_probe")
    if not path.exists():
        pytest.fail(f"{path} is missing; run 'make build/tests/ledger_probe' first")
    return str(path)


@pytest.fixture
def ledger(pg):
    """A fresh database with sluice's migrations applied, then the ledger's."""
    files = sorted((ROOT / "schemas" / "sql").glob("*.sql")) + sorted((ROOT / "schemas" / "ledger").glob("*.sql"))
    for f in files:
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg.conninfo, "-f", str(f)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{f.name}: {r.stderr}"
    return pg


class Runner:
    def __init__(self, probe, pg):
        self.probe = probe
        self.pg = pg
        self.n = 0

    def __call__(self, handler, data, job_id=None):
        self.n += 1
        job_id = job_id or f"job-{self.n}"
        text = data if isinstance(data, str) else json.dumps(data)
        r = subprocess.run([self.probe, self.pg.conninfo, handler, SOURCE, job_id, text],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 1, r.stdout
        return json.loads(lines[0])

    def open(self, account, balance):
        res = self("ledger.open", {"account": account, "balance": balance})
        assert res["outcome"] == "succeeded", res
        return res

    def balances(self):
        return dict(self.pg.query("select id, balance from ledger.accounts"))


@pytest.fixture
def run(probe, ledger):
    return Runner(probe, ledger)


def test_open_accounts(run):
    res = run("ledger.open", {"account": "alice", "balance": 100})
    assert res == {"outcome": "succeeded", "output": {"account": "alice", "balance": 100},
                   "error_code": None, "error_message": None}
    run.open("bob", 0)
    assert run.balances() == {"alice": 100, "bob": 0}


def test_open_existing_account_is_rejected(run):
    run.open("alice", 100)
    res = run("ledger.open", {"account": "alice", "balance": 5})
    assert res["outcome"] == "rejected"
    assert res["output"] is None
    assert res["error_code"] == "account_exists"
    assert '"alice"' in res["error_message"]
    assert run.balances() == {"alice": 100}


def test_transfer(run):
    run.open("alice", 100)
    run.open("bob", 10)
    res = run("ledger.transfer", {"from": "alice", "to": "bob", "amount": 30}, job_id="t-1")
    assert res["outcome"] == "succeeded", res
    assert res["output"] == {"from": {"account": "alice", "balance": 70},
                             "to": {"account": "bob", "balance": 40}, "amount": 30}
    assert run.balances() == {"alice": 70, "bob": 40}
    assert run.pg.query("select job_source, job_id, from_account, to_account, amount from ledger.transfers") == [
        (SOURCE, "t-1", "alice", "bob", 30)]
    # The whole balance may go, in the other direction too.
    res = run("ledger.transfer", {"from": "bob", "to": "alice", "amount": 40})
    assert res["outcome"] == "succeeded", res
    assert run.balances() == {"alice": 110, "bob": 0}


def test_insufficient_funds_changes_nothing(run):
    run.open("alice", 50)
    run.open("bob", 0)
    res = run("ledger.transfer", {"from": "alice", "to": "bob", "amount": 51})
    assert res["outcome"] == "rejected"
    assert res["error_code"] == "insufficient_funds"
    assert "50" in res["error_message"] and "51" in res["error_message"]
    assert run.balances() == {"alice": 50, "bob": 0}
    assert run.pg.scalar("select count(*) from ledger.transfers") == 0


def test_unknown_account(run):
    run.open("alice", 50)
    res = run("ledger.transfer", {"from": "alice", "to": "carol", "amount": 1})
    assert (res["outcome"], res["error_code"]) == ("rejected", "unknown_account")
    assert '"carol"' in res["error_message"] and '"alice"' not in res["error_message"]
    res = run("ledger.transfer", {"from": "dave", "to": "alice", "amount": 1})
    assert (res["outcome"], res["error_code"]) == ("rejected", "unknown_account")
    assert '"dave"' in res["error_message"]
    res = run("ledger.transfer", {"from": "dave", "to": "carol", "amount": 1})
    assert (res["outcome"], res["error_code"]) == ("rejected", "unknown_account")
    assert '"dave"' in res["error_message"] and '"carol"' in res["error_message"]
    assert run.balances() == {"alice": 50}
    assert run.pg.scalar("select count(*) from ledger.transfers") == 0


def test_same_account(run):
    run.open("alice", 50)
    res = run("ledger.transfer", {"from": "alice", "to": "alice", "amount": 1})
    assert (res["outcome"], res["error_code"]) == ("rejected", "same_account")
    assert run.balances() == {"alice": 50}


@pytest.mark.parametrize("handler,data", [
    ("ledger.transfer", {"from": "alice", "to": "bob", "amount": "5"}),
    ("ledger.transfer", {"from": "alice", "to": "bob", "amount": 5.5}),
    ("ledger.transfer", {"from": "alice", "to": "bob", "amount": 1e300}),
    ("ledger.transfer", {"from": "alice", "to": "bob", "amount": 0}),
    ("ledger.transfer", {"from": "alice", "to": "bob", "amount": -5}),
    ("ledger.transfer", {"from": "alice", "to": 7, "amount": 5}),
    ("ledger.transfer", {"from": "alice", "amount": 5}),
    ("ledger.transfer", {"from": "", "to": "bob", "amount": 5}),
    ("ledger.transfer", '{"from": "al\\u0000ice", "to": "bob", "amount": 5}'),
    ("ledger.transfer", [1, 2]),
    ("ledger.open", {"account": "carol", "balance": "5"}),
    ("ledger.open", {"account": "carol", "balance": -1}),
    ("ledger.open", {"account": "carol", "balance": 0.5}),
    ("ledger.open", {"account": None, "balance": 1}),
    ("ledger.open", "null"),
])
def test_bad_data_fails(run, handler, data):
    run.open("alice", 50)
    run.open("bob", 0)
    res = run(handler, data)
    assert (res["outcome"], res["error_code"]) == ("failed", "invalid_data"), res
    assert res["output"] is None
    assert run.balances() == {"alice": 50, "bob": 0}


def test_integral_reals_are_integers(run):
    """JSON Schema draft-07 counts 5.0 as an integer, so the job schemas let
    it through; the handlers take it as 5 rather than failing the job."""
    res = run("ledger.open", '{"account": "alice", "balance": 100.0}')
    assert res["outcome"] == "succeeded", res
    assert res["output"] == {"account": "alice", "balance": 100}
    run.open("bob", 0)
    res = run("ledger.transfer", '{"from": "alice", "to": "bob", "amount": 3e1}')
    assert res["outcome"] == "succeeded", res
    assert res["output"]["amount"] == 30
    assert run.balances() == {"alice": 70, "bob": 30}


def test_balance_overflow_fails(run):
    big = 2**63 - 1
    run.open("alice", 10)
    run.open("bob", big)
    res = run("ledger.transfer", {"from": "alice", "to": "bob", "amount": 1})
    assert (res["outcome"], res["error_code"]) == ("failed", "db_error"), res
    assert "22003" in res["error_message"]
    assert run.balances() == {"alice": 10, "bob": big}


def test_concurrent_transfers_do_not_deadlock(run, probe, tmp_path):
    """8 connections, 200 random transfers each, among 10 accounts in both
    directions at once: row locks in id order mean no 40P01, and the money
    is conserved."""
    accounts = [f"acct-{i:02d}" for i in range(10)]
    for a in accounts:
        run.open(a, 1000)
    total = sum(run.balances().values())

    rng = random.Random(20240501)
    procs = []
    for p in range(8):
        lines = []
        for _ in range(200):
            a, b = rng.sample(accounts, 2)
            lines.append(json.dumps({"from": a, "to": b, "amount": rng.randint(1, 300)}))
        jobs = tmp_path / f"storm-{p}.jsonl"
        jobs.write_text("\n".join(lines) + "\n")
        # Each process has all its jobs from the start, so the eight run at once.
        with jobs.open() as stdin:
            procs.append(subprocess.Popen([probe, run.pg.conninfo, "ledger.transfer", SOURCE, f"storm-{p}", "-"],
                                          stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results += [json.loads(line) for line in out.splitlines()]

    assert len(results) == 8 * 200
    outcomes = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    bad = [r for r in results if r["outcome"] not in ("succeeded", "rejected")]
    assert not bad, bad[:5]
    assert all(r["error_code"] == "insufficient_funds" for r in results if r["outcome"] == "rejected")
    assert outcomes.get("succeeded", 0) > 0
    balances = run.balances()
    assert sum(balances.values()) == total
    assert all(v >= 0 for v in balances.values())
    assert run.pg.scalar("select count(*) from ledger.transfers") == outcomes["succeeded"]
    assert run.pg.scalar("select count(*) from ledger.transfers where job_id like 'storm-%'") == outcomes["succeeded"]
