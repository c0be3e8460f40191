-- The job ledger: one row per job identity (CloudEvents source + id).
--
-- A job's row is inserted (claimed) in the same transaction as the job's
-- effects and its finished result event, so either all three are committed or
-- none is. `result` holds the result event exactly as it was published, as
-- text (not jsonb, which would reorder keys), so a redelivered job publishes
-- the same bytes again. `succeeded` and `rejected` are final; a `failed` row
-- does not block a later replay.
create schema if not exists sluice;

create table sluice.jobs (
    source      text        not null,
    id          text        not null,
    type        text        not null,
    status      text        not null check (status in ('running', 'succeeded', 'rejected', 'failed')),
    attempts    integer     not null default 1,
    result      text,
    created_at  timestamptz not null default now(),
    finished_at timestamptz,
    primary key (source, id)
);

create index jobs_status_finished on sluice.jobs (status, finished_at);
