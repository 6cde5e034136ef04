-- Webhook notifications waiting to be delivered, delivered, or given up on: written before the
-- batch that caused them is acknowledged, so a crash loses none, and keyed by (project, kind,
-- user) so each user causes at most one notification of each kind however often the events
-- that cause it arrive.
CREATE TABLE webhook_outbox (
    id              TEXT    PRIMARY KEY,  -- the `webhook-id` header: the same on every retry
    project         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,     -- value_reached | user_stalled
    user            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,     -- the JSON body, as signed and sent
    created_at      INTEGER NOT NULL,     -- collector clock, Unix ms
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    failed_at       INTEGER,              -- given up after the last attempt
    last_error      TEXT,
    UNIQUE (project, kind, user)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
