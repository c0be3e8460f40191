"""sluice's own SQL functions for handlers, called the way a handler would.

sluice.reject() and sluice.retry() (schemas/sql/0005_reject_retry.sql) speak
to the worker only through the SQLSTATE, message and detail they raise; those
are the contract checked here, with psycopg and no worker.
"""
import uuid

import psycopg
import pytest

from harness import migrate


@pytest.fixture
def db(pg):
    migrate(pg.conninfo)
    return pg


def raised(pg, sql, *args):
    """The error `sql` raises: (sqlstate, message, detail)."""
    with pytest.raises(psycopg.Error) as e:
        pg.query(sql, *args)
    return e.value.sqlstate, e.value.diag.message_primary, e.value.diag.message_detail


def test_reject(db):
    assert raised(db, "select sluice.reject('out_of_stock', 'only 3 left')") == (
        "SL002", "only 3 left", "out_of_stock")
    # Without a message, the code is the message too.
    assert raised(db, "select sluice.reject('out_of_stock')") == ("SL002", "out_of_stock", "out_of_stock")
    assert raised(db, "select sluice.reject(%s, %s)", "c", None) == ("SL002", "c", "c")
    # A handler that forgets the code fails (class 22), never succeeds with NULL.
    assert raised(db, "select sluice.reject(null)")[0] == "22004"
    assert raised(db, "select sluice.reject('', 'm')")[0] == "22004"


def test_retry(db):
    assert raised(db, "select sluice.retry('busy', interval '30 seconds')") == ("SL003", "busy", "30")
    assert raised(db, "select sluice.retry('busy', interval '1.5 seconds')") == ("SL003", "busy", "1.5")
    assert raised(db, "select sluice.retry('busy', interval '2 minutes')") == ("SL003", "busy", "120")
    assert raised(db, "select sluice.retry('busy')") == ("SL003", "busy", "")
    assert raised(db, "select sluice.retry('busy', null)") == ("SL003", "busy", "")
    assert raised(db, "select sluice.retry('busy', interval '-5 seconds')") == ("SL003", "busy", "0")
    assert raised(db, "select sluice.retry(null)") == ("SL003", "retry requested", "")


def test_handler_forms_and_rollback(db):
    """`return sluice.reject(...)` and `perform sluice.retry(...)` in plpgsql;
    what the handler wrote before the call rolls back with it."""
    db.query("create table t (n int)")
    db.query("""create function f(job jsonb) returns jsonb language plpgsql as $$
                begin
                    insert into t values (1);
                    if job->>'how' = 'reject' then
                        return sluice.reject('no', 'not today');
                    end if;
                    perform sluice.retry('later', interval '10 seconds');
                    return '{}';
                end $$""")
    assert raised(db, "select f('{\"how\": \"reject\"}')") == ("SL002", "not today", "no")
    assert raised(db, "select f('{}')") == ("SL003", "later", "10")
    assert db.scalar("select count(*) from t") == 0
    assert db.scalar("select pg_get_function_result('sluice.reject(text, text)'::regprocedure)") == "jsonb"
    assert db.scalar("select pg_get_function_result('sluice.retry(text, interval)'::regprocedure)") == "jsonb"


def test_a_handler_role_may_call_them_and_nothing_more(db):
    """A job type's `role` cannot read sluice's tables, yet can reject."""
    role = "h_" + uuid.uuid4().hex[:12]
    db.query(f"create role {role} nologin")
    try:
        with psycopg.connect(db.conninfo) as c:
            c.execute(f"set local role {role}")
            with pytest.raises(psycopg.Error) as e:
                c.execute("select sluice.reject('no')")
            assert e.value.sqlstate == "SL002"
            c.rollback()
            c.execute(f"set local role {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute("select count(*) from sluice.jobs")
    finally:
        db.query(f"drop role {role}")
