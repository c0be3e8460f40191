-- sluice.job_final(): how the worker learns, inside a pipeline, that a job it
-- just ran is final already.
--
-- The worker writes a job's ledger row once, when the job ends, with its
-- result; the same statement is followed by COMMIT without waiting for it
-- (libpq pipeline mode). If the row is final already (a redelivered job that
-- an earlier delivery, or another worker, finished), that write must fail, so
-- that the COMMIT behind it is skipped and the job's effects roll back: the
-- write calls this function in that case, and it raises SQLSTATE SL001. The
-- worker then publishes the stored result instead.
create function sluice.job_final(p_source text, p_id text, p_status text) returns boolean
language plpgsql
volatile
as $$
begin
    raise exception 'job "%" from "%" is % already', p_id, p_source, p_status using errcode = 'SL001';
end
$$;
