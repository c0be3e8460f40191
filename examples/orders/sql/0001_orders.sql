-- The orders example: stock per item, one shipment per fulfilled job, and
-- the job type's handler as a SQL function (handler = "sql:orders.fulfil").
--
-- This folder is the migration set "orders", apart from sluice's own:
--   sluicectl migrate --dir SLUICE_SQL --dir examples/orders/sql
-- Its objects live in schema orders; sluice's own tables are not touched.
create schema orders;

create table orders.items (
    id    text    primary key,
    stock integer not null check (stock >= 0)
);

-- A shipment is identified by the job that made it: sluice's ledger already
-- runs a job's effects once, and the unique key says so in the data too.
create table orders.shipments (
    id         bigint      generated always as identity primary key,
    job_source text        not null,
    job_id     text        not null,
    item       text        not null references orders.items (id),
    qty        integer     not null check (qty >= 1),
    shipped_at timestamptz not null default now(),
    unique (job_source, job_id)
);

-- orders.fulfil(job): the handler of job type orders.fulfil. `job` is the
-- whole job ({"id", "source", "type", "subject", "time", "data", "key",
-- "attempt"}); job->'data' has passed jobs/orders.fulfil.json already.
--
-- Locks the item's row, so that two jobs for one item queue instead of both
-- reading the same stock, then ships or refuses. A refusal raises through
-- sluice.reject(): the job ends `rejected`, nothing it wrote is kept, and no
-- dead letter is written. The returned object is the result's `output`.
create function orders.fulfil(job jsonb) returns jsonb
language plpgsql
as $$
declare
    v_item  text    := job->'data'->>'item';
    v_qty   integer := (job->'data'->>'qty')::integer;
    v_stock integer;
    v_id    bigint;
begin
    select i.stock into v_stock from orders.items i where i.id = v_item for update;
    if not found then
        return sluice.reject('unknown_item', format('no item %s', v_item));
    end if;
    if v_stock < v_qty then
        return sluice.reject('out_of_stock', format('only %s left', v_stock));
    end if;
    update orders.items i set stock = i.stock - v_qty where i.id = v_item
        returning i.stock into v_stock;
    insert into orders.shipments (job_source, job_id, item, qty)
        values (job->>'source', job->>'id', v_item, v_qty)
        returning id into v_id;
    return jsonb_build_object('shipment', v_id, 'left', v_stock);
end
$$;
