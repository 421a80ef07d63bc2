-- The event log. Appenders lock the single event_log_head row before taking positions, so
-- positions are gap-free and committed in order: a reader never misses an event that
-- commits later with a lower position.
CREATE TABLE events (
    position   BIGINT  PRIMARY KEY,
    event_id   UUID    NOT NULL UNIQUE,
    stream_id  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    event_type TEXT    NOT NULL,
    data       JSONB   NOT NULL,
    metadata   JSONB   NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);

CREATE TABLE event_log_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position BIGINT  NOT NULL
);
INSERT INTO event_log_head (id, position) VALUES (1, 0);

CREATE TABLE streams (
    stream_id TEXT    PRIMARY KEY,
    version   INTEGER NOT NULL
);

CREATE TABLE projections (
    name     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO projections (name, position) VALUES ('task_view', 0);

CREATE TABLE task_view (
    task_id      TEXT PRIMARY KEY,
    seq          BIGINT  NOT NULL,
    tenant_id    TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    task_type    TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    progress     DOUBLE PRECISION NOT NULL,
    strategy     TEXT    NOT NULL,
    params       JSONB   NOT NULL,
    dependencies JSONB   NOT NULL,
    cpu          DOUBLE PRECISION NOT NULL,
    gpu          DOUBLE PRECISION NOT NULL,
    memory_mb    INTEGER NOT NULL,
    submitted_at TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    result_ref   TEXT,
    error        TEXT
);

CREATE INDEX task_view_by_owner ON task_view (tenant_id, user_id, seq DESC);
CREATE INDEX task_view_by_owner_status ON task_view (tenant_id, user_id, status, seq DESC);
