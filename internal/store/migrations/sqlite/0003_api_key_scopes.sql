-- manage_keys: the key may create, list and revoke its account's keys (1);
-- keys without it (every key made before this migration) cannot.
-- parent_id: the key that created this one, NULL for a key created by a
-- signed-in session. Revoking a key revokes the keys it created, and a key
-- stops working while any key above it is revoked.
ALTER TABLE api_keys ADD COLUMN manage_keys INTEGER NOT NULL DEFAULT 0 CHECK (manage_keys IN (0, 1));
ALTER TABLE api_keys ADD COLUMN parent_id TEXT REFERENCES api_keys (id) ON DELETE CASCADE;
CREATE INDEX api_keys_parent_id ON api_keys (parent_id);

-- api_key_id: the API key that asked for a stream ticket, '' for a session.
-- A ticket acts as that key (its role, and only while it works), never as
-- its whole account.
ALTER TABLE stream_tickets ADD COLUMN api_key_id TEXT NOT NULL DEFAULT '';
