-- The event log: position is global, gap-free and in commit order (writers hold SQLite's
-- write lock from reading max(position) to commit).
CREATE TABLE events (
    position   INTEGER PRIMARY KEY,
    event_id   TEXT    NOT NULL UNIQUE,
    stream_id  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    event_type TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    metadata   TEXT    NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE TABLE streams (
    stream_id TEXT PRIMARY KEY,
    version   INTEGER NOT NULL
) WITHOUT ROWID;

-- Each read view's position in the log, updated in the same transaction as the view.
CREATE TABLE projections (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE task_view (
    task_id      TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL,
    tenant_id    TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    task_type    TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    progress     REAL    NOT NULL,
    strategy     TEXT    NOT NULL,
    params       TEXT    NOT NULL,
    dependencies TEXT    NOT NULL,
    cpu          REAL    NOT NULL,
    gpu          REAL    NOT NULL,
    memory_mb    INTEGER NOT NULL,
    submitted_at TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    result_ref   TEXT,
    error        TEXT
) WITHOUT ROWID;

CREATE INDEX task_view_by_owner ON task_view (tenant_id, user_id, seq DESC);
CREATE INDEX task_view_by_owner_status ON task_view (tenant_id, user_id, status, seq DESC);

INSERT INTO projections (name, position) VALUES ('task_view', 0);
