-- sluice.enqueue() refuses what the relay could never send or the worker
-- never run, in the enqueuing transaction rather than later in a log or a
-- dead letter:
--
-- - a topic that cannot be a Kafka topic's name: Kafka names a topic with 1
--   to 249 of A-Z a-z 0-9 . _ - (and neither "." nor ".."); a row for any
--   other name stayed in the outbox;
-- - a type, id or source above 1024 bytes, which the worker refuses in a
--   job (invalid_attribute: the ledger's key must stay well under
--   PostgreSQL's limit for an index entry), so the job was dead-lettered.
--
-- Everything else is as in 0006_outbox.sql; CREATE OR REPLACE keeps the
-- function's grants.
create or replace function sluice.enqueue(type text, data jsonb, key text default null, id text default null,
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
    if octet_length(type) > 1024 or octet_length(v_id) > 1024 or octet_length(source) > 1024 then
        raise exception 'sluice.enqueue(): type, id and source must be at most 1024 bytes, not %',
            greatest(octet_length(type), octet_length(v_id), octet_length(source))
            using errcode = 'invalid_parameter_value';
    end if;
    if topic !~ '^[A-Za-z0-9._-]{1,249}$' or topic in ('.', '..') then
        raise exception 'sluice.enqueue(): topic "%" is not a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)',
            topic using errcode = 'invalid_parameter_value';
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
