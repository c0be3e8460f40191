-- tests/bench/ledger_job.sql -- the pgbench script for the ceiling in `make bench`.
--
-- One transaction per pgbench transaction, statement for statement what the
-- worker runs for one ledger.transfer job: common/job.c's begin, ledger
-- write and commit around the handler SQL of workers/ledger.c. pgbench waits
-- for each statement (4 round trips); the worker pipelines its own statements
-- with the handler's (2 round trips: [begin, handler], [record, commit]). bench.py runs it with the worker's protocol:
-- -M extended while the worker sends statements with PQexecParams (unnamed
-- statements, text parameters), -M prepared once it prepares them.
--
-- Variables from the driver (-D): accounts (count of accounts, named
-- acc-1..acc-N), result (a real result event, stored as the worker would).
-- The job id is random (63 bits) per transaction: like the worker's, every
-- job inserts a new ledger row.
\set a random(1, :accounts)
\set b 1 + (:a + random(0, :accounts - 2)) % :accounts
\set amount random(1, 100)
\set r random(1, 9223372036854775806)
begin;
select code, from_balance, to_balance from ledger.transfer('pgbench', :client_id::text || '-' || :r::text, 'acc-' || :a::text, 'acc-' || :b::text, :amount::bigint);
insert into sluice.jobs (source, id, type, status, result, attempts, finished_at) values ('pgbench', :client_id::text || '-' || :r::text, 'ledger.transfer', 'succeeded', :result, 1::integer, now()) on conflict (source, id) do update set status = excluded.status, result = excluded.result, finished_at = now(), attempts = sluice.jobs.attempts + excluded.attempts where case when sluice.jobs.status in ('running', 'failed') then true else sluice.job_final(sluice.jobs.source, sluice.jobs.id, sluice.jobs.status) end;
commit;
