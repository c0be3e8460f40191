-- tests/bench/wait_job.sql -- the pgbench script for the ceiling of the
-- latency-bound runs (`tests/bench/run --latency-bound`).
--
-- One transaction per pgbench transaction, statement for statement what the
-- worker runs for one bench.wait job with max_batch 1: begin, the handler
-- (tests/bench/sql_wait.sql: pg_sleep of the database's bench.wait_s), the
-- ledger write, commit. pgbench waits for each statement (4 round trips); the
-- worker pipelines its own with the handler's (about one round trip per job).
-- So this is what the server and the machine give the same work with the same
-- connections at that moment: the wait, plus the round trips, the ledger write
-- and the WAL flush of each commit, plus the scheduling delay of a busy machine.
--
-- Variables from the driver (-D): result (a real result event, stored as the
-- worker would). The job id is random (63 bits) per transaction: like the
-- worker's, every job inserts a new ledger row.
\set r random(1, 9223372036854775806)
begin;
select bench.wait(jsonb_build_object('id', :client_id::text || '-' || :r::text, 'data', '{}'::jsonb));
insert into sluice.jobs (source, id, type, status, result, attempts, finished_at) values ('pgbench', :client_id::text || '-' || :r::text, 'bench.wait', 'succeeded', :result, 1::integer, now()) on conflict (source, id) do update set status = excluded.status, result = excluded.result, finished_at = now(), attempts = sluice.jobs.attempts + excluded.attempts where case when sluice.jobs.status in ('running', 'failed') then true else sluice.job_final(sluice.jobs.source, sluice.jobs.id, sluice.jobs.status) end;
commit;
