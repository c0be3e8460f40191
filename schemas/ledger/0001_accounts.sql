-- The double-entry ledger: accounts and one row per applied transfer.
--
-- A transfer row is identified by the job that applied it, so the primary key
-- itself refuses a second application of the same job.
--
-- The ledger is the demo's business logic, not sluice's: its migrations are
-- their own set ("ledger", this folder), applied after sluice's own. Until
-- the sets were split they were sluice's 0002 and 0003, so a database
-- migrated then has these objects already and rows (sluice, 0002) and
-- (sluice, 0003) that no file of sluice's matches any more (sluice never
-- reuses those versions). Hence "if not exists" here and "or replace" in
-- 0002: applying the set there records it and changes nothing.
create schema if not exists ledger;

create table if not exists ledger.accounts (
    id      text   primary key,
    balance bigint not null check (balance >= 0)
);

create table if not exists ledger.transfers (
    job_source   text        not null,
    job_id       text        not null,
    from_account text        not null references ledger.accounts (id),
    to_account   text        not null references ledger.accounts (id),
    amount       bigint      not null check (amount > 0),
    applied_at   timestamptz not null default now(),
    primary key (job_source, job_id),
    check (from_account <> to_account)
);
