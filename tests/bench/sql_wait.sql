-- bench.wait as a SQL-function handler (handler = "sql:bench.wait"): a job
-- that waits on the server and does nothing else, for the latency-bound runs
-- of `tests/bench/run --latency-bound`. Its time is PostgreSQL's pg_sleep,
-- not CPU: what the worker can do then is bounded by how many jobs it keeps
-- waiting at once (executors x processes / wait), not by the machine, until
-- the per-job overhead (round trips, the ledger write, the commit) fills the
-- CPUs. The wait is the database setting bench.wait_s (the bench sets it with
-- ALTER DATABASE), 0.005 s when unset.
create schema if not exists bench;
create or replace function bench.wait(job jsonb) returns jsonb language plpgsql as $$
declare
  s float8 := coalesce(nullif(current_setting('bench.wait_s', true), '')::float8, 0.005);
begin
  perform pg_sleep(s);
  return jsonb_build_object('waited_s', s);
end $$;
