-- Recurring jobs: sluice.schedule(name, cron, type, data, key, tz).
--
-- A schedule row holds its next slot. The relay of any worker calls
-- sluice.schedule_fire() each round: in ONE transaction it locks the due
-- schedule rows it can (FOR UPDATE SKIP LOCKED), enqueues each one's job with
-- an id derived from (name, slot), and moves the next slot on. The job and
-- the move commit together or not at all, and a locked row is skipped by the
-- others, so each slot fires once across the whole fleet, across kills and
-- restarts, with no leader that could go stale. A resend of the same slot's
-- job (a relay crash) carries the same id, which the ledger dedupes.
--
-- Catch-up: after downtime only the most recent missed slot fires, once.
--
-- Time: schedules fire by sluice.clock(), which is now() plus
-- sluice.outbox_settings.clock_offset (0). Tests move the offset forward to
-- cross slots without waiting; nothing else should set it.
alter table sluice.outbox_settings add column clock_offset interval not null default '0';

create table sluice.schedules (
    name       text        primary key,
    cron       text        not null,
    tz         text        not null,
    type       text        not null,
    data       jsonb       not null,
    key        text,
    next_at    timestamptz not null,   -- the next slot to fire
    last_slot  timestamptz,            -- the slot fired last
    fires      bigint      not null default 0,
    last_error text,                   -- why its last attempt to fire failed, NULL: it did not
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index schedules_next_at on sluice.schedules (next_at);

-- The clock schedules fire by: now(), plus the test-only offset.
create function sluice.clock() returns timestamptz
language sql stable as $$
    select now() + (select clock_offset from sluice.outbox_settings)
$$;

-- One value of a cron field: a number or (months, days of the week) a name.
create function sluice.cron_value(tok text, lo integer, hi integer, names text[], base integer,
                                  expr text, what text) returns integer
language plpgsql immutable as $$
declare
    v integer;
begin
    if tok ~ '^[0-9]{1,4}$' then
        v := tok::integer;
    elsif names is not null and array_position(names, tok) is not null then
        v := array_position(names, tok) - 1 + base;
    else
        raise exception 'invalid cron expression "%": % field: "%" is not a number%', expr, what, tok,
            case when names is null then '' else ' or a name' end
            using errcode = 'invalid_parameter_value';
    end if;
    if v < lo or v > hi then
        raise exception 'invalid cron expression "%": % field: % is out of range %-%', expr, what, v, lo, hi
            using errcode = 'invalid_parameter_value';
    end if;
    return v;
end
$$;

-- The values a cron field allows, sorted: numbers, names, `*`, ranges a-b,
-- lists a,b and steps */n, a-b/n, a/n (a to the end, by n).
create function sluice.cron_field(field text, lo integer, hi integer, names text[], base integer,
                                  expr text, what text) returns integer[]
language plpgsql immutable as $$
declare
    item text;
    rng text;
    parts text[];
    step integer;
    a integer;
    b integer;
    v integer;
    out integer[] := '{}';
begin
    foreach item in array string_to_array(lower(field), ',') loop
        step := 1;
        rng := item;
        if item like '%/%' then
            parts := string_to_array(item, '/');
            if array_length(parts, 1) <> 2 or parts[2] !~ '^[0-9]{1,4}$' or parts[2]::integer = 0 then
                raise exception 'invalid cron expression "%": % field: bad step in "%"', expr, what, item
                    using errcode = 'invalid_parameter_value';
            end if;
            step := parts[2]::integer;
            rng := parts[1];
        end if;
        if rng = '*' then
            a := lo;
            b := hi;
        elsif rng ~ '^[a-z0-9]+-[a-z0-9]+$' then
            a := sluice.cron_value(split_part(rng, '-', 1), lo, hi, names, base, expr, what);
            b := sluice.cron_value(split_part(rng, '-', 2), lo, hi, names, base, expr, what);
            if a > b then
                raise exception 'invalid cron expression "%": % field: range "%" runs backwards', expr, what, rng
                    using errcode = 'invalid_parameter_value';
            end if;
        elsif rng ~ '^[a-z0-9]+$' then
            a := sluice.cron_value(rng, lo, hi, names, base, expr, what);
            b := case when item like '%/%' then hi else a end;
        else
            raise exception 'invalid cron expression "%": % field: cannot read "%"', expr, what, item
                using errcode = 'invalid_parameter_value';
        end if;
        v := a;
        while v <= b loop
            out := out || v;
            v := v + step;
        end loop;
    end loop;
    return array(select distinct x from unnest(out) x order by x);
end
$$;

-- The first slot of `cron` (5 fields: minute hour day-of-month month
-- day-of-week, read in time zone tz) strictly after `after`. When both
-- day-of-month and day-of-week are restricted, a day matching either fires
-- (as in Vixie cron). A local time that a DST change skips fires at the
-- instant PostgreSQL maps it to; one it repeats fires once. Errors (22023)
-- for bad syntax, a bad time zone, or an expression that never fires.
create function sluice.cron_next(cron text, tz text, after timestamptz) returns timestamptz
language plpgsql stable as $$
declare
    f text[];
    mins integer[];
    hours integer[];
    doms integer[];
    mons integer[];
    dows integer[];
    any_day boolean;
    lt timestamp;
    d date;
    h integer;
    m integer;
    i integer;
    day_ok boolean;
    cand timestamptz;
    tz_ok boolean := true;
begin
    if cron is null then
        raise exception 'invalid cron expression: NULL' using errcode = 'invalid_parameter_value';
    end if;
    f := regexp_split_to_array(btrim(cron), '\s+');
    if array_length(f, 1) is distinct from 5 then
        raise exception 'invalid cron expression "%": expected 5 fields (minute hour day-of-month month day-of-week), got %',
            cron, coalesce(array_length(f, 1), 0) using errcode = 'invalid_parameter_value';
    end if;
    begin
        perform now() at time zone tz;
    exception when others then
        tz_ok := false;
    end;
    if tz is null or not tz_ok then
        raise exception 'invalid time zone "%" for cron expression "%"', coalesce(tz, 'NULL'), cron
            using errcode = 'invalid_parameter_value';
    end if;
    mins := sluice.cron_field(f[1], 0, 59, null, 0, cron, 'minute');
    hours := sluice.cron_field(f[2], 0, 23, null, 0, cron, 'hour');
    doms := sluice.cron_field(f[3], 1, 31, null, 0, cron, 'day-of-month');
    mons := sluice.cron_field(f[4], 1, 12, array['jan','feb','mar','apr','may','jun','jul','aug','sep','oct','nov','dec'],
                              1, cron, 'month');
    dows := sluice.cron_field(f[5], 0, 7, array['sun','mon','tue','wed','thu','fri','sat'], 0, cron, 'day-of-week');
    if 7 = any(dows) then
        dows := array(select distinct x % 7 from unnest(dows) x order by 1);
    end if;
    any_day := f[3] like '*%' or f[5] like '*%';

    lt := date_trunc('minute', after at time zone tz) + interval '1 minute';
    d := lt::date;
    -- Eight years and a day: a 29 February on a Monday comes back within them.
    for i in 0 .. 366 * 8 loop
        if extract(month from d)::integer = any(mons) then
            if any_day then
                day_ok := extract(day from d)::integer = any(doms) and extract(dow from d)::integer = any(dows);
            else
                day_ok := extract(day from d)::integer = any(doms) or extract(dow from d)::integer = any(dows);
            end if;
            if day_ok then
                foreach h in array hours loop
                    continue when d = lt::date and h < extract(hour from lt)::integer;
                    foreach m in array mins loop
                        continue when d = lt::date and h = extract(hour from lt)::integer
                                      and m < extract(minute from lt)::integer;
                        cand := (d + make_time(h, m, 0)) at time zone tz;
                        if cand > after then
                            return cand;
                        end if;
                    end loop;
                end loop;
            end if;
        end if;
        d := d + 1;
    end loop;
    raise exception 'invalid cron expression "%": it never fires', cron using errcode = 'invalid_parameter_value';
end
$$;

-- sluice.schedule(): creates or replaces a recurring job. Its next slot is
-- the first after sluice.clock(); replacing a schedule with the same cron and
-- time zone keeps its next slot (a deploy that re-declares its schedules
-- neither skips nor repeats one). Returns the next slot.
create function sluice.schedule(name text, cron text, type text, data jsonb, key text default null,
                                tz text default 'UTC') returns timestamptz
language plpgsql
volatile
as $$
#variable_conflict use_variable
declare
    v_next timestamptz;
begin
    if name is null or btrim(name) = '' then
        raise exception 'sluice.schedule(): name must not be empty' using errcode = 'invalid_parameter_value';
    end if;
    if type is null or btrim(type) = '' then
        raise exception 'sluice.schedule(): type must not be empty' using errcode = 'invalid_parameter_value';
    end if;
    if data is null or jsonb_typeof(data) <> 'object' then
        raise exception 'sluice.schedule(): data must be a JSON object, not %',
            coalesce(jsonb_typeof(data), 'NULL') using errcode = 'invalid_parameter_value';
    end if;
    v_next := sluice.cron_next(cron, tz, sluice.clock());
    insert into sluice.schedules as s (name, cron, tz, type, data, key, next_at)
    values (name, btrim(cron), tz, type, data, key, v_next)
    on conflict on constraint schedules_pkey do update
        set cron = excluded.cron, tz = excluded.tz, type = excluded.type, data = excluded.data,
            key = excluded.key, updated_at = now(),
            next_at = case when s.cron = excluded.cron and s.tz = excluded.tz then s.next_at
                           else excluded.next_at end
    returning s.next_at into v_next;
    return v_next;
end
$$;

-- sluice.unschedule(): removes a recurring job; true when there was one.
create function sluice.unschedule(name text) returns boolean
language plpgsql
volatile
as $$
#variable_conflict use_variable
declare
    n integer;
begin
    delete from sluice.schedules s where s.name = name;
    get diagnostics n = row_count;
    return n > 0;
end
$$;

-- The job id of a schedule's slot: the same for every worker, every time.
create function sluice.schedule_job_id(name text, slot timestamptz) returns text
language sql immutable as $$
    select 'schedule:' || name || '@' || to_char(slot at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

-- Fires the due schedules (up to p_limit of them) in the caller's one
-- transaction: each one's row is locked (FOR UPDATE SKIP LOCKED, so relays
-- of several workers share the work and never fire a row twice), its slot's
-- job is enqueued with the id of sluice.schedule_job_id(), and its next slot
-- moves past sluice.clock(). The job and the move commit together, or
-- neither: a slot fires once across the fleet, whatever crashes. Catch-up
-- after downtime: only the most recent missed slot fires, once; the others
-- are skipped. A schedule that fails to fire keeps its error in last_error
-- and is tried again a minute later. Returns the number of schedules fired.
create function sluice.schedule_fire(p_limit integer default 100) returns integer
language plpgsql
volatile
as $$
declare
    r record;
    v_now timestamptz := sluice.clock();
    slot timestamptz;
    nxt timestamptz;
    far timestamptz;
    n integer := 0;
begin
    for r in select * from sluice.schedules where next_at <= v_now order by next_at limit p_limit
             for update skip locked loop
        -- One schedule that cannot fire (a row edited by hand into a bad
        -- cron, a time zone gone from the server) must not hold the others:
        -- its error is kept in last_error and it is tried again a minute
        -- later. The subtransaction rolls its own enqueue back.
        begin
            slot := r.next_at;
            -- Long downtime: start the walk a day back rather than at the
            -- first missed slot, so that it stays short.
            if slot < v_now - interval '1 day' then
                far := sluice.cron_next(r.cron, r.tz, v_now - interval '1 day');
                if far <= v_now then
                    slot := far;
                end if;
            end if;
            loop
                nxt := sluice.cron_next(r.cron, r.tz, slot);
                exit when nxt > v_now;
                slot := nxt;
            end loop;
            perform sluice.enqueue(r.type, r.data, r.key, sluice.schedule_job_id(r.name, slot));
            update sluice.schedules set next_at = nxt, last_slot = slot, fires = fires + 1, last_error = null
            where name = r.name;
            n := n + 1;
        exception when others then
            update sluice.schedules set next_at = v_now + interval '1 minute', last_error = sqlerrm
            where name = r.name;
        end;
    end loop;
    return n;
end
$$;

