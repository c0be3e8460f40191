-- Enqueue from PostgreSQL: the transactional outbox and delayed jobs
-- (recurring jobs: 0007_schedules.sql).
--
-- sluice.enqueue() inserts a row in the caller's own transaction; the relay
-- inside every sluice-worker (common/relay.c) produces committed rows to
-- Kafka as CloudEvents and deletes them once Kafka acknowledged them. A
-- rolled-back enqueue leaves no row, so it is never sent; a committed one
-- stays until it is acknowledged, and a resend after a relay crash carries
-- the same id, which the worker's ledger dedupes.
--
-- No gaps, and per-key order (the watermark). Each row records the xid of
-- the transaction that inserted it (pg_current_xact_id(), xid8, never wraps)
-- and a sequence number. The relay reads only rows with
--     xid < pg_snapshot_xmin(pg_current_snapshot())
-- in (xid, seq) order. xmin is the oldest transaction still running when the
-- relay's statement took its snapshot: every transaction with a smaller xid
-- has ended (committed or rolled back), and xids are handed out in
-- increasing order, so no transaction that ends later can have a smaller
-- xid. Hence the set of rows below the watermark is final: rows can leave it
-- (the relay deletes them) but none can join it later with a smaller
-- (xid, seq) than a row already read. A relay that reads a prefix of that set
-- in (xid, seq) order therefore never skips a row whose transaction
-- committed "late" (out of xid order): that row simply was not below the
-- watermark yet. And since the relay deletes only what Kafka acknowledged,
-- every row it reads was preceded (for its key: same shard, same partition)
-- by rows that are either acknowledged already or earlier in the same read.
-- So jobs of one key are first delivered in the order their transactions got
-- their xids, and a transaction's rows in the order they were inserted. An
-- xid is assigned at a transaction's first write, not at BEGIN; the watermark
-- covers every database of the cluster, so a long transaction anywhere holds
-- the relay back (sluicectl outbox names it).
--
-- Delayed rows (run_at in the future) wait in sluice.outbox_delayed and are
-- moved into sluice.outbox when due, by the relay's own transaction (so they
-- take that transaction's xid): they are exempt from per-key order.
--
-- Shards and leases. Rows are sharded by a hash of their key (of their id
-- when they have none), so one key stays in one shard. At most one relay
-- relays a shard at a time: it holds the shard's lease (holder, epoch,
-- expires_at) and renews it while relaying. Taking a lease raises its epoch;
-- every write a relay makes to the outbox (deleting delivered rows) goes
-- through sluice.outbox_ack(), which checks the epoch under a row lock on the
-- lease, so a relay that froze and lost its lease cannot delete anything
-- after another took over. The outbox has no position to move: rows are
-- deleted only after Kafka acknowledged them, so the worst a crashed or
-- fenced relay causes is a resend.
create table sluice.outbox_settings (
    only_row     boolean  primary key default true check (only_row),
    -- The number of shards; change it with sluice.outbox_set_shards() only.
    shards       integer  not null default 1 check (shards between 1 and 256)
);
insert into sluice.outbox_settings default values;

create sequence sluice.outbox_seq;

create table sluice.outbox (
    shard  integer     not null,
    xid    xid8        not null default pg_current_xact_id(),
    seq    bigint      not null default nextval('sluice.outbox_seq'),
    id     text        not null,
    source text,                   -- NULL: the relay's outbox.source
    type   text        not null,
    key    text,
    topic  text,                   -- NULL: the relaying worker's first kafka.topics
    data   jsonb       not null,
    time   timestamptz not null default now(),
    due    timestamptz not null default now(),  -- when it was to be sent, for the lag
    primary key (shard, xid, seq)
) with (
    -- Rows live for milliseconds: vacuum after a fixed number of deletes,
    -- not after a fraction of a table whose size swings.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);

create table sluice.outbox_delayed (
    seq    bigint      not null default nextval('sluice.outbox_seq'),
    id     text        not null,
    source text,
    type   text        not null,
    key    text,
    topic  text,
    data   jsonb       not null,
    time   timestamptz not null default now(),
    run_at timestamptz not null,
    primary key (seq)
);
create index outbox_delayed_run_at on sluice.outbox_delayed (run_at);
create index outbox_delayed_id on sluice.outbox_delayed (id);

create table sluice.outbox_leases (
    shard      integer     primary key,
    holder     text,
    epoch      bigint      not null default 0,
    expires_at timestamptz not null default '-infinity',
    -- The relay's progress, for sluicectl outbox.
    relayed    bigint      not null default 0,
    relayed_at timestamptz
);
insert into sluice.outbox_leases (shard) values (0);

-- The shard of a row with this key (and id, for a row without a key).
create function sluice.outbox_shard(p_key text, p_id text) returns integer
language sql stable as $$
    select ((hashtext(coalesce(p_key, p_id))::bigint + 2147483648) % s.shards)::integer
    from sluice.outbox_settings s
$$;

-- sluice.enqueue(): a job, sent to Kafka if and when the calling transaction
-- commits. Returns the job's id (a new UUID when id is NULL). Errors (SQLSTATE
-- 22023, invalid_parameter_value): an empty or NULL type, data that is not a
-- JSON object (NULL included: every job type takes an object), an empty id,
-- source or topic. A NULL or empty key is no key. run_at in the future
-- delays the job; at or before the transaction's start it is sent at once.
--
-- SECURITY DEFINER with a fixed search_path, so that any role (a SQL
-- handler's role too) can enqueue without privileges on sluice's tables; the
-- function is executable by PUBLIC, like the other sluice functions a handler
-- calls. Revoke it from PUBLIC and grant it to chosen roles to narrow that.
create function sluice.enqueue(type text, data jsonb, key text default null, id text default null,
                               source text default null, run_at timestamptz default null,
                               topic text default null) returns text
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    v_id text := coalesce(id, gen_random_uuid()::text);
begin
    if type is null or btrim(type) = '' then
        raise exception 'sluice.enqueue(): type must not be empty' using errcode = 'invalid_parameter_value';
    end if;
    if data is null or jsonb_typeof(data) <> 'object' then
        raise exception 'sluice.enqueue(): data must be a JSON object, not %',
            coalesce(jsonb_typeof(data), 'NULL') using errcode = 'invalid_parameter_value';
    end if;
    if v_id = '' then
        raise exception 'sluice.enqueue(): id must not be empty (NULL makes a new one)'
            using errcode = 'invalid_parameter_value';
    end if;
    if source = '' then
        raise exception 'sluice.enqueue(): source must not be empty (NULL takes the default)'
            using errcode = 'invalid_parameter_value';
    end if;
    if topic = '' then
        raise exception 'sluice.enqueue(): topic must not be empty (NULL takes the default)'
            using errcode = 'invalid_parameter_value';
    end if;
    if run_at is not null and run_at > now() then
        insert into sluice.outbox_delayed (id, source, type, key, topic, data, run_at)
        values (v_id, source, type, key, topic, data, run_at);
    else
        insert into sluice.outbox (shard, id, source, type, key, topic, data)
        values (sluice.outbox_shard(key, v_id), v_id, source, type, key, topic, data);
    end if;
    return v_id;
end
$$;

-- sluice.cancel(): removes a delayed job that has not been sent (its run_at
-- has not come, or the relay has not taken it yet). Returns true when it
-- removed one. A job that is due or was enqueued without a delay is being
-- sent or was sent: false. Row locks decide a race with the relay: the
-- relay skips a row that cancel() holds, cancel() waits for one the relay
-- holds and then finds it gone.
create function sluice.cancel(id text) returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
    n integer;
begin
    delete from sluice.outbox_delayed d where d.id = id;
    get diagnostics n = row_count;
    return n > 0;
end
$$;

-- ---- the relay's statements ------------------------------------------

-- Moves due delayed jobs (up to p_limit) into the outbox, in run_at order,
-- in the caller's transaction. Returns how many.
create function sluice.outbox_move_due(p_limit integer) returns integer
language plpgsql
volatile
as $$
declare
    n integer;
begin
    with due as (
        delete from sluice.outbox_delayed d
        where d.seq = any (array(select seq from sluice.outbox_delayed where run_at <= now()
                                 order by run_at, seq limit p_limit for update skip locked))
        returning d.*)
    insert into sluice.outbox (shard, id, source, type, key, topic, data, time, due)
    select sluice.outbox_shard(key, id), id, source, type, key, topic, data, time, run_at
    from due order by run_at, seq;
    get diagnostics n = row_count;
    return n;
end
$$;

-- Takes shard's lease for holder when it is free, expired or the holder's
-- own (a relay that reconnected), raising its epoch. Returns the new epoch, or NULL when another holds it.
create function sluice.outbox_acquire(p_shard integer, p_holder text, p_ttl interval) returns bigint
language sql
volatile
as $$
    update sluice.outbox_leases
    set holder = p_holder, epoch = epoch + 1, expires_at = clock_timestamp() + p_ttl
    where shard = p_shard and (holder is null or holder = p_holder or expires_at < clock_timestamp())
    returning epoch
$$;

-- Extends a lease still at p_epoch. Returns the epoch, or NULL when it was
-- taken over (the caller stops relaying the shard).
create function sluice.outbox_renew(p_shard integer, p_epoch bigint, p_ttl interval) returns bigint
language sql
volatile
as $$
    update sluice.outbox_leases set expires_at = clock_timestamp() + p_ttl
    where shard = p_shard and epoch = p_epoch
    returning epoch
$$;

-- Gives a lease up at a clean stop, so another relay takes it at once.
create function sluice.outbox_release(p_shard integer, p_epoch bigint) returns void
language sql
volatile
as $$
    update sluice.outbox_leases set holder = null, expires_at = '-infinity'
    where shard = p_shard and epoch = p_epoch
$$;

-- The next rows of a shard to relay: below the watermark, in (xid, seq)
-- order (see the top of this file for why that is gap-free and keeps per-key
-- order). data comes as text, time as RFC 3339 UTC.
create function sluice.outbox_fetch(p_shard integer, p_limit integer)
returns table (xid xid8, seq bigint, id text, source text, type text, key text, topic text, data text,
               "time" text)
language sql
stable
as $$
    select o.xid, o.seq, o.id, o.source, o.type, o.key, o.topic, o.data::text,
           to_char(o.time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    from sluice.outbox o
    where o.shard = p_shard and o.xid < pg_snapshot_xmin(pg_current_snapshot())
    order by o.xid, o.seq
    limit p_limit
$$;

-- Deletes delivered rows of a shard, fenced: only while the lease is still
-- at p_epoch. The lease row is locked (FOR SHARE) until the caller's
-- transaction ends, so a takeover (which updates it) waits for this delete
-- and a stale epoch raises SQLSTATE SL004 and deletes nothing. Returns the
-- number of rows deleted.
create function sluice.outbox_ack(p_shard integer, p_epoch bigint, p_xids xid8[], p_seqs bigint[])
returns integer
language plpgsql
volatile
as $$
declare
    n integer;
begin
    perform 1 from sluice.outbox_leases where shard = p_shard and epoch = p_epoch for share;
    if not found then
        raise exception 'outbox shard % is no longer leased at epoch %', p_shard, p_epoch
            using errcode = 'SL004';
    end if;
    delete from sluice.outbox o
    using unnest(p_xids, p_seqs) as a(xid, seq)
    where o.shard = p_shard and o.xid = a.xid and o.seq = a.seq;
    get diagnostics n = row_count;
    update sluice.outbox_leases set relayed = relayed + n, relayed_at = clock_timestamp()
    where shard = p_shard;
    return n;
end
$$;

-- Changes the number of shards. Only while the outbox is empty (rows keep
-- the shard they were given, and per-key order holds within a shard);
-- leases of shards that go away are dropped, new ones start free.
create function sluice.outbox_set_shards(p_shards integer) returns void
language plpgsql
volatile
as $$
begin
    if p_shards is null or p_shards < 1 or p_shards > 256 then
        raise exception 'outbox shards must be between 1 and 256, not %', p_shards
            using errcode = 'invalid_parameter_value';
    end if;
    lock table sluice.outbox in exclusive mode;
    if exists (select 1 from sluice.outbox) then
        raise exception 'cannot change the number of outbox shards while the outbox holds rows'
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    update sluice.outbox_settings set shards = p_shards;
    delete from sluice.outbox_leases where shard >= p_shards;
    insert into sluice.outbox_leases (shard) select g from generate_series(0, p_shards - 1) g
    on conflict do nothing;
end
$$;

-- A producer or a handler's role needs only these two; the relay's
-- functions use the tables with the privileges of whoever runs the worker.
grant execute on function sluice.enqueue(text, jsonb, text, text, text, timestamptz, text) to public;
grant execute on function sluice.cancel(text) to public;
revoke execute on function sluice.outbox_acquire(integer, text, interval) from public;
revoke execute on function sluice.outbox_renew(integer, bigint, interval) from public;
revoke execute on function sluice.outbox_release(integer, bigint) from public;
revoke execute on function sluice.outbox_ack(integer, bigint, xid8[], bigint[]) from public;
revoke execute on function sluice.outbox_set_shards(integer) from public;
