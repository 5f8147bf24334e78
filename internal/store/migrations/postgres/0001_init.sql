-- 0001_init: the whole berth domain, for Postgres.
--
-- The same tables, columns, keys and indexes as migrations/sqlite/0001_init.sql,
-- with the same conventions, so that one set of queries serves both engines:
--   * times are BIGINT microseconds since the Unix epoch, UTC;
--   * booleans are INTEGER 0/1;
--   * JSON documents (tags, metadata, task configuration …) are TEXT;
--   * hashes are BYTEA (SQLite's BLOB);
--   * floating-point numbers are DOUBLE PRECISION (SQLite's REAL, 8 bytes);
--   * a log line's message is BYTEA: it may hold any bytes, NUL included,
--     which TEXT refuses;
--   * text is COLLATE "C", whatever the database's locale: it compares and
--     sorts byte by byte, and lower() folds ASCII letters only, exactly as
--     SQLite does, so lists and searches give the same rows in the same
--     order on both engines;
--   * a child that cannot outlive its parent has ON DELETE CASCADE.

CREATE TABLE users (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    -- email is the login email, lower-cased by the store. It is NULL for an
    -- account created by OIDC login, whose email is only a display attribute
    -- kept in user_identities; NULLs are distinct, so many such accounts fit.
    email         TEXT COLLATE "C" UNIQUE,
    name          TEXT COLLATE "C" NOT NULL DEFAULT '',
    password_hash TEXT COLLATE "C" NOT NULL DEFAULT '',
    role          TEXT COLLATE "C" NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    last_login_at BIGINT
);
-- ListUsers pages oldest first
CREATE INDEX users_created_at ON users (created_at, id);

-- user_identities links an OIDC subject to an account. email is what the
-- provider last said, shown for an account without a login email.
CREATE TABLE user_identities (
    issuer     TEXT COLLATE "C" NOT NULL,
    subject    TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
-- "the account's oldest identity"
CREATE INDEX user_identities_user_id ON user_identities (user_id, created_at);

CREATE TABLE sessions (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    user_id        TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    source_address TEXT COLLATE "C" NOT NULL DEFAULT '',
    user_agent     TEXT COLLATE "C" NOT NULL DEFAULT '',
    method         TEXT COLLATE "C" NOT NULL DEFAULT 'password', -- "password" or "oidc:<provider>"
    cookie_hash    BYTEA   UNIQUE -- SHA-256 of a browser session cookie; NULL for API sessions
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE refresh_tokens (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    token_hash BYTEA   NOT NULL UNIQUE, -- SHA-256 of the token
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_user_id ON refresh_tokens (user_id);

CREATE TABLE api_keys (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT COLLATE "C" NOT NULL DEFAULT '',
    prefix       TEXT COLLATE "C" NOT NULL UNIQUE, -- the visible start of the key, for lookup
    key_hash     BYTEA   NOT NULL,
    role         TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_user_id ON api_keys (user_id, created_at);

-- stream_tickets are short-lived, single-use tickets that open one stream
-- (SSE or WebSocket) for a browser that cannot send a header. session_id is
-- the session that asked for it, '' for an API key.
CREATE TABLE stream_tickets (
    ticket_hash BYTEA   NOT NULL PRIMARY KEY, -- SHA-256 of the ticket
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id  TEXT COLLATE "C" NOT NULL DEFAULT '',
    target      TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX stream_tickets_expires_at ON stream_tickets (expires_at);
CREATE INDEX stream_tickets_user_id ON stream_tickets (user_id);

-- workspaces: an owner cannot be deleted while they own workspaces.
CREATE TABLE workspaces (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    owner_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    name          TEXT COLLATE "C" NOT NULL,
    description   TEXT COLLATE "C" NOT NULL DEFAULT '',
    path          TEXT COLLATE "C" NOT NULL,
    status        TEXT COLLATE "C" NOT NULL,
    status_reason TEXT COLLATE "C" NOT NULL DEFAULT '',
    git_url       TEXT COLLATE "C" NOT NULL DEFAULT '',
    branch        TEXT COLLATE "C" NOT NULL DEFAULT '',
    tags          TEXT COLLATE "C" NOT NULL DEFAULT '[]', -- JSON array of strings
    metadata      TEXT COLLATE "C" NOT NULL DEFAULT '{}', -- JSON object of strings
    image         TEXT COLLATE "C" NOT NULL DEFAULT '',
    container_id  TEXT COLLATE "C" NOT NULL DEFAULT '',
    memory_mb     BIGINT  NOT NULL DEFAULT 0,
    cpus          DOUBLE PRECISION NOT NULL DEFAULT 0,
    pids          BIGINT  NOT NULL DEFAULT 0,
    disk_usage_mb BIGINT  NOT NULL DEFAULT 0,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    UNIQUE (owner_id, name)
);
CREATE INDEX workspaces_created_at ON workspaces (created_at, id);
-- ListWorkspaces sorted by name, which folds case
CREATE INDEX workspaces_name ON workspaces (lower(name), name, id);
CREATE INDEX workspaces_status ON workspaces (status);

CREATE TABLE workspace_members (
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
-- "the workspaces shared with me"
CREATE INDEX workspace_members_user_id ON workspace_members (user_id, workspace_id);

-- tasks: priority is an integer (higher runs first); JSON documents are TEXT.
-- created_by is kept NULL when the creator's account is deleted: the task
-- belongs to the workspace.
CREATE TABLE tasks (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    workspace_id     TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    created_by       TEXT COLLATE "C" REFERENCES users (id) ON DELETE SET NULL,
    type             TEXT COLLATE "C" NOT NULL,
    status           TEXT COLLATE "C" NOT NULL,
    priority         INTEGER NOT NULL,
    prompt           TEXT COLLATE "C" NOT NULL DEFAULT '',
    config           TEXT COLLATE "C",
    git              TEXT COLLATE "C",
    docker_build     TEXT COLLATE "C",
    tags             TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    metadata         TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    progress         TEXT COLLATE "C",
    result           TEXT COLLATE "C",
    error            TEXT COLLATE "C",
    session_id       TEXT COLLATE "C",
    continue_task_id TEXT COLLATE "C" REFERENCES tasks (id) ON DELETE SET NULL,
    cost_usd         DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_owner      TEXT COLLATE "C",
    lease_expires_at BIGINT,
    created_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    completed_at     BIGINT
);
-- the runner's queue: by priority, then age
CREATE INDEX tasks_queue ON tasks (status, priority DESC, created_at, id);
CREATE INDEX tasks_workspace ON tasks (workspace_id, created_at, id);
-- "how many tasks this workspace runs", for the per-workspace limit
CREATE INDEX tasks_workspace_status ON tasks (workspace_id, status);
-- log retention: "tasks completed before"
CREATE INDEX tasks_completed_at ON tasks (completed_at);
CREATE INDEX tasks_created_by ON tasks (created_by, created_at);
CREATE INDEX tasks_created_at ON tasks (created_at, id);
CREATE INDEX tasks_continue_task_id ON tasks (continue_task_id);

-- task_logs: seq is 1, 2, 3 … per task with no gaps.
CREATE TABLE task_logs (
    task_id TEXT COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    time    BIGINT NOT NULL,
    level   TEXT COLLATE "C" NOT NULL,
    source  TEXT COLLATE "C" NOT NULL,
    message BYTEA  NOT NULL, -- any bytes: see above
    fields  TEXT COLLATE "C", -- JSON object
    PRIMARY KEY (task_id, seq)
);

-- audit_events outlive the accounts and things they name: no foreign keys.
CREATE TABLE audit_events (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    time           BIGINT NOT NULL,
    action         TEXT COLLATE "C" NOT NULL,
    outcome        TEXT COLLATE "C" NOT NULL,
    actor_id       TEXT COLLATE "C" NOT NULL DEFAULT '',
    target_type    TEXT COLLATE "C" NOT NULL DEFAULT '',
    target_id      TEXT COLLATE "C" NOT NULL DEFAULT '',
    source_address TEXT COLLATE "C" NOT NULL DEFAULT '',
    request_id     TEXT COLLATE "C" NOT NULL DEFAULT '',
    details        TEXT COLLATE "C" -- JSON object
);
-- newest first, ties by id; and the same order within one actor, action or target
CREATE INDEX audit_events_time ON audit_events (time, id);
CREATE INDEX audit_events_actor ON audit_events (actor_id, time, id);
CREATE INDEX audit_events_action ON audit_events (action, time, id);
CREATE INDEX audit_events_target ON audit_events (target_id, time, id);
