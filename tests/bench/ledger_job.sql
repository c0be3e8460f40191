-- tests/bench/ledger_job.sql -- the pgbench script for the ceiling in `make bench`.
--
-- One transaction per pgbench transaction, statement for statement what the
-- worker runs for one ledger.transfer job: common/job.c's begin, claim,
-- result store and commit around the handler SQL of workers/ledger.c. pgbench
-- waits for each statement (5 round trips); the worker pipelines its own
-- statements (3 round trips: [begin, claim], handler, [finish, commit]). bench.py runs it with the worker's protocol:
-- -M extended while the worker sends statements with PQexecParams (unnamed
-- statements, text parameters), -M prepared once it prepares them.
--
-- Variables from the driver (-D): accounts (count of accounts, named
-- acc-1..acc-N), result (a real result event, stored as the worker would).
-- The job id is random (63 bits) per transaction: like the worker's, every
-- claim inserts a new ledger row.
\set a random(1, :accounts)
\set b 1 + (:a + random(0, :accounts - 2)) % :accounts
\set amount random(1, 100)
\set r random(1, 9223372036854775806)
begin;
insert into sluice.jobs (source, id, type, status) values ('pgbench', :client_id::text || '-' || :r::text, 'ledger.transfer', 'running') on conflict (source, id) do update set attempts = sluice.jobs.attempts + 1, status = 'running' where sluice.jobs.status in ('running', 'failed') returning status;
select code, from_balance, to_balance from ledger.transfer('pgbench', :client_id::text || '-' || :r::text, 'acc-' || :a::text, 'acc-' || :b::text, :amount::bigint);
update sluice.jobs set status = 'succeeded', result = :result, finished_at = now() where source = 'pgbench' and id = :client_id::text || '-' || :r::text;
commit;
