CREATE TABLE snapshots (
    stream_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    state TEXT NOT NULL
);
