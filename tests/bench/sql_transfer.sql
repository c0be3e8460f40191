-- ledger.transfer as a SQL-function handler (handler = "sql:app.transfer"):
-- the same work as the built-in C handler (workers/ledger.c), through the
-- same ledger.transfer() function, so `make bench` compares the two and the
-- system tests run the crash invariants with a SQL handler.
create schema if not exists app;
create or replace function app.transfer(job jsonb) returns jsonb language plpgsql as $$
declare
  d jsonb := job->'data';
  r record;
begin
  if d->>'from' = d->>'to' then
    return sluice.reject('same_account', 'a transfer needs two accounts');
  end if;
  select * into r from ledger.transfer(job->>'source', job->>'id', d->>'from', d->>'to', (d->>'amount')::bigint);
  if r.code is not null then
    return sluice.reject(r.code, 'transfer refused: ' || r.code);
  end if;
  return jsonb_build_object('from_balance', r.from_balance, 'to_balance', r.to_balance);
end $$;
