-- The double-entry ledger: accounts and one row per applied transfer.
--
-- A transfer row is identified by the job that applied it, so the primary key
-- itself refuses a second application of the same job.
create schema if not exists ledger;

create table ledger.accounts (
    id      text   primary key,
    balance bigint not null check (balance >= 0)
);

create table ledger.transfers (
    job_source   text        not null,
    job_id       text        not null,
    from_account text        not null references ledger.accounts (id),
    to_account   text        not null references ledger.accounts (id),
    amount       bigint      not null check (amount > 0),
    applied_at   timestamptz not null default now(),
    primary key (job_source, job_id),
    check (from_account <> to_account)
);
