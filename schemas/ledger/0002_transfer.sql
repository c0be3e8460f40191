-- ledger.transfer(): a whole transfer in one statement, so that the
-- ledger.transfer handler (workers/ledger.c) costs the job one round trip to
-- the server instead of three (lock, move, record).
--
-- Locks both accounts in id order (every transfer takes its two locks in the
-- same global order, so two transfers between the same accounts queue instead
-- of deadlocking), then either refuses or moves the amount and records the
-- transfer under the job's identity (the primary key of ledger.transfers
-- refuses a second application of the same job).
--
-- Returns one row: `code` is null when the transfer was applied, else
-- 'unknown_account' or 'insufficient_funds' and nothing was written;
-- from_balance and to_balance are the balances after the transfer, or as
-- found when refused (null for a missing account). A destination pushed past
-- the bigint range raises 22003. The caller checks from <> to and amount > 0.
-- "or replace": see 0001_accounts.sql.
create or replace function ledger.transfer(p_source text, p_job_id text, p_from text, p_to text, p_amount bigint,
                                out code text, out from_balance bigint, out to_balance bigint)
language plpgsql
as $$
begin
    perform 1 from ledger.accounts where id = any (array[p_from, p_to]) order by id for update;
    select a.balance into from_balance from ledger.accounts a where a.id = p_from;
    select a.balance into to_balance from ledger.accounts a where a.id = p_to;
    if from_balance is null or to_balance is null then
        code := 'unknown_account';
        return;
    end if;
    if from_balance < p_amount then
        code := 'insufficient_funds';
        return;
    end if;
    update ledger.accounts a set balance = a.balance - p_amount where a.id = p_from
        returning a.balance into from_balance;
    update ledger.accounts a set balance = a.balance + p_amount where a.id = p_to
        returning a.balance into to_balance;
    insert into ledger.transfers (job_source, job_id, from_account, to_account, amount)
        values (p_source, p_job_id, p_from, p_to, p_amount);
end
$$;
