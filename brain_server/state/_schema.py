"""The SQLite schema of `brain.db`, as numbered migrations applied in order (`PRAGMA user_version`).

Never edit a shipped migration: append a new one. A database newer than this code is refused.
The brain's log and the audit events are append-only, enforced by triggers; compensating
records are never deleted and only gain their reversal, once. Times are stored
as UTC ISO 8601 text with microseconds, one format everywhere, so text order is time order.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from ..exceptions import NotABrainDatabase, SchemaTooNew

MIGRATIONS: list[str] = [
    # v1
    """
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('body', 'approver', 'captain')),
        label TEXT NOT NULL,
        created_at TEXT NOT NULL
    );

    CREATE TABLE brain_log (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        by TEXT NOT NULL,
        token_id TEXT,
        role TEXT,
        reason TEXT NOT NULL,
        target TEXT,
        detail TEXT NOT NULL
    );
    CREATE TRIGGER brain_log_no_update BEFORE UPDATE ON brain_log
        BEGIN SELECT RAISE(ABORT, 'brain_log is append-only'); END;
    CREATE TRIGGER brain_log_no_delete BEFORE DELETE ON brain_log
        BEGIN SELECT RAISE(ABORT, 'brain_log is append-only'); END;

    CREATE TABLE kill_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        engaged INTEGER NOT NULL,
        reason TEXT,
        by TEXT,
        at TEXT
    );
    INSERT INTO kill_state (id, engaged) VALUES (1, 0);

    CREATE TABLE bodies (
        body_id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        hostname TEXT NOT NULL,
        version TEXT NOT NULL,
        registered_at TEXT NOT NULL,
        last_heartbeat TEXT NOT NULL
    );

    CREATE TABLE audit_events (
        body_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        ts TEXT NOT NULL,
        mac TEXT NOT NULL,
        event TEXT NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (body_id, seq)
    ) WITHOUT ROWID;
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

    CREATE TABLE decisions (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        deadline TEXT NOT NULL,
        body_id TEXT NOT NULL,
        decision TEXT NOT NULL
    );
    CREATE INDEX decisions_pending ON decisions (state, deadline);

    CREATE TABLE tasks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        value_usd REAL NOT NULL,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        claimed_body TEXT,
        claimed_agent TEXT,
        claimed_at TEXT,
        lease_expires TEXT,
        claim_token TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        outcome_summary TEXT,
        finished_at TEXT
    );
    CREATE INDEX tasks_queue ON tasks (state, value_usd DESC, seq);
    CREATE INDEX tasks_lease ON tasks (state, lease_expires);
    """,
    # v2: waking humans
    """
    CREATE TABLE escalations (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        next_at TEXT,
        dedup_key TEXT,
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL,
        escalation TEXT NOT NULL
    );
    CREATE INDEX escalations_due ON escalations (state, next_at);
    CREATE INDEX escalations_dedup ON escalations (dedup_key, state);

    CREATE TABLE answer_tokens (
        token_hash TEXT PRIMARY KEY,
        page_id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        verb TEXT NOT NULL,
        channel TEXT NOT NULL,
        target TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );

    CREATE TABLE interactions_seen (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL
    );
    CREATE INDEX interactions_seen_at ON interactions_seen (at);
    """,
    # v3: compensating records, so undoing a body's action or decision reverses its brain updates too
    """
    CREATE TABLE compensations (
        id INTEGER PRIMARY KEY,
        action_id TEXT NOT NULL,
        decision_id TEXT,
        body_id TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('task_claim', 'task_outcome')),
        target TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        created_at TEXT NOT NULL,
        reversed_at TEXT,
        reversed_by TEXT
    );
    CREATE INDEX compensations_action ON compensations (action_id);
    CREATE INDEX compensations_decision ON compensations (decision_id);
    CREATE TRIGGER compensations_no_delete BEFORE DELETE ON compensations
        BEGIN SELECT RAISE(ABORT, 'compensations are never deleted'); END;
    CREATE TRIGGER compensations_reversed_once BEFORE UPDATE ON compensations
        WHEN OLD.reversed_at IS NOT NULL
            OR NEW.id IS NOT OLD.id OR NEW.action_id IS NOT OLD.action_id OR NEW.decision_id IS NOT OLD.decision_id
            OR NEW.body_id IS NOT OLD.body_id OR NEW.kind IS NOT OLD.kind OR NEW.target IS NOT OLD.target
            OR NEW.before IS NOT OLD.before OR NEW.after IS NOT OLD.after OR NEW.created_at IS NOT OLD.created_at
        BEGIN SELECT RAISE(ABORT, 'a compensation only gains its reversal, once'); END;
    """,
    # v4: a body token is bound to its first body id; any token can be revoked. Tokens are never deleted.
    """
    ALTER TABLE tokens ADD COLUMN body_id TEXT;
    ALTER TABLE tokens ADD COLUMN revoked_at TEXT;
    CREATE TRIGGER tokens_no_delete BEFORE DELETE ON tokens
        BEGIN SELECT RAISE(ABORT, 'tokens are never deleted: revoke them'); END;
    CREATE TRIGGER tokens_bound_and_revoked_once BEFORE UPDATE ON tokens
        WHEN NEW.id IS NOT OLD.id OR NEW.token_hash IS NOT OLD.token_hash OR NEW.role IS NOT OLD.role
            OR NEW.label IS NOT OLD.label OR NEW.created_at IS NOT OLD.created_at
            OR (OLD.body_id IS NOT NULL AND NEW.body_id IS NOT OLD.body_id)
            OR (NEW.body_id IS NOT NULL AND NEW.role IS NOT 'body')
            OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS NOT OLD.revoked_at)
        BEGIN SELECT RAISE(ABORT, 'a token only gains its body (body tokens) and its revocation, once each'); END;
    """,
    # v5: `Idempotency-Key` on POST /v1/tasks: a retried creation returns the task it created the first time
    """
    CREATE TABLE task_keys (
        token_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_sha256 TEXT NOT NULL,
        task_id TEXT NOT NULL,
        PRIMARY KEY (token_id, key)
    ) WITHOUT ROWID;
    """,
    # v6: retention of the bodies' audit events (90 days): deleted only up to a body's prune mark, and never
    # its newest event; the marks themselves are append-only
    """
    CREATE TABLE audit_prune_marks (body_id TEXT NOT NULL, through_seq INTEGER NOT NULL, at TEXT NOT NULL);
    CREATE INDEX audit_prune_marks_body ON audit_prune_marks (body_id, through_seq);
    CREATE TRIGGER audit_prune_marks_no_update BEFORE UPDATE ON audit_prune_marks
        BEGIN SELECT RAISE(ABORT, 'audit_prune_marks is append-only'); END;
    CREATE TRIGGER audit_prune_marks_no_delete BEFORE DELETE ON audit_prune_marks
        BEGIN SELECT RAISE(ABORT, 'audit_prune_marks is append-only'); END;
    DROP TRIGGER audit_events_no_delete;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        WHEN OLD.seq > (SELECT COALESCE(MAX(through_seq), 0) FROM audit_prune_marks WHERE body_id = OLD.body_id)
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
    """,
    # v7: a reversal keeps its own put-backs as compensations (kind 'reversal'), so that undoing it redoes it.
    # SQLite cannot change a CHECK in place: the table is copied into one that allows the new kind.
    """
    CREATE TABLE compensations_v7 (
        id INTEGER PRIMARY KEY,
        action_id TEXT NOT NULL,
        decision_id TEXT,
        body_id TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('task_claim', 'task_outcome', 'reversal')),
        target TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        created_at TEXT NOT NULL,
        reversed_at TEXT,
        reversed_by TEXT
    );
    INSERT INTO compensations_v7 SELECT id, action_id, decision_id, body_id, kind, target, before, after, created_at,
        reversed_at, reversed_by FROM compensations;
    DROP TABLE compensations;
    ALTER TABLE compensations_v7 RENAME TO compensations;
    CREATE INDEX compensations_action ON compensations (action_id);
    CREATE INDEX compensations_decision ON compensations (decision_id);
    CREATE TRIGGER compensations_no_delete BEFORE DELETE ON compensations
        BEGIN SELECT RAISE(ABORT, 'compensations are never deleted'); END;
    CREATE TRIGGER compensations_reversed_once BEFORE UPDATE ON compensations
        WHEN OLD.reversed_at IS NOT NULL
            OR NEW.id IS NOT OLD.id OR NEW.action_id IS NOT OLD.action_id OR NEW.decision_id IS NOT OLD.decision_id
            OR NEW.body_id IS NOT OLD.body_id OR NEW.kind IS NOT OLD.kind OR NEW.target IS NOT OLD.target
            OR NEW.before IS NOT OLD.before OR NEW.after IS NOT OLD.after OR NEW.created_at IS NOT OLD.created_at
        BEGIN SELECT RAISE(ABORT, 'a compensation only gains its reversal, once'); END;
    """,
    # v8: a body id is held by one live token. Where two live tokens were bound to one body (trust on first use
    # bound tokens, not bodies), the first bound keeps it and the others are revoked, each with a log line.
    """
    CREATE TEMP TABLE v8_second_binds AS
        SELECT t.id, t.body_id FROM tokens AS t
        WHERE t.body_id IS NOT NULL AND t.revoked_at IS NULL AND t.id != (
            SELECT first.id FROM tokens AS first
            LEFT JOIN brain_log AS bind ON bind.action = 'token_bind' AND bind.target = first.id
            WHERE first.body_id = t.body_id AND first.revoked_at IS NULL
            ORDER BY bind.id IS NULL, bind.id, first.created_at, first.rowid LIMIT 1
        );
    INSERT INTO brain_log (at, action, by, token_id, role, reason, target, detail)
        SELECT strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), 'token_revoke', 'migration', NULL, NULL,
            'body ' || body_id || ' is held by one token: this one was bound to it after another', id, '{}'
        FROM v8_second_binds;
    UPDATE tokens SET revoked_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')
        WHERE id IN (SELECT id FROM v8_second_binds);
    DROP TABLE v8_second_binds;
    CREATE UNIQUE INDEX IF NOT EXISTS tokens_one_live_per_body ON tokens (body_id)
        WHERE body_id IS NOT NULL AND revoked_at IS NULL;
    """,
    # v9: a body that exits cleanly deregisters: gone, not lost (no alert)
    """
    ALTER TABLE bodies ADD COLUMN left_at TEXT;
    """,
    # v10: autonomous agents. A task gains its acceptance command, repository, claim mode and logic version, its
    # verification, evidence and spend, its shadow runs, and an append-only history; the brain keeps LLM usage
    # (idempotent by record id), readiness reports and the captains' overrides of them (never deleted).
    """
    ALTER TABLE tasks ADD COLUMN acceptance TEXT NOT NULL DEFAULT '';
    ALTER TABLE tasks ADD COLUMN repo TEXT NOT NULL DEFAULT '';
    ALTER TABLE tasks ADD COLUMN claim_mode TEXT;
    ALTER TABLE tasks ADD COLUMN logic_version TEXT;
    ALTER TABLE tasks ADD COLUMN parked_decision_id TEXT;
    ALTER TABLE tasks ADD COLUMN verification TEXT;
    ALTER TABLE tasks ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN evidence TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE tasks ADD COLUMN spend TEXT;
    ALTER TABLE tasks ADD COLUMN shadow_runs TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX tasks_agent ON tasks (claimed_agent);

    CREATE TABLE task_events (
        id INTEGER PRIMARY KEY,
        task_id TEXT NOT NULL,
        event TEXT NOT NULL
    );
    CREATE INDEX task_events_task ON task_events (task_id, id);
    CREATE TRIGGER task_events_no_update BEFORE UPDATE ON task_events
        BEGIN SELECT RAISE(ABORT, 'task_events is append-only'); END;
    CREATE TRIGGER task_events_no_delete BEFORE DELETE ON task_events
        BEGIN SELECT RAISE(ABORT, 'task_events is append-only'); END;

    CREATE TABLE usage_records (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        body_id TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX usage_records_body ON usage_records (body_id, seq);
    CREATE TRIGGER usage_records_no_update BEFORE UPDATE ON usage_records
        BEGIN SELECT RAISE(ABORT, 'usage_records is append-only'); END;

    CREATE TABLE readiness_reports (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        report TEXT NOT NULL
    );
    CREATE TABLE readiness_overrides (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        logic_version TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        override TEXT NOT NULL
    );
    CREATE INDEX readiness_overrides_agent ON readiness_overrides (agent, logic_version, expires_at);
    CREATE TRIGGER readiness_overrides_no_update BEFORE UPDATE ON readiness_overrides
        BEGIN SELECT RAISE(ABORT, 'readiness overrides are never changed: they expire'); END;
    CREATE TRIGGER readiness_overrides_no_delete BEFORE DELETE ON readiness_overrides
        BEGIN SELECT RAISE(ABORT, 'readiness overrides are never deleted: they expire'); END;
    """,
    # v11: a token may be bound to one agent when it is created (an agent's runner and body: `swarm brain token
    # create --role body --agent NAME`), and that never changes; tokens from before are bound to no agent.
    """
    ALTER TABLE tokens ADD COLUMN agent TEXT;
    DROP TRIGGER IF EXISTS tokens_bound_and_revoked_once;
    CREATE TRIGGER tokens_bound_and_revoked_once BEFORE UPDATE ON tokens
        WHEN NEW.id IS NOT OLD.id OR NEW.token_hash IS NOT OLD.token_hash OR NEW.role IS NOT OLD.role
            OR NEW.label IS NOT OLD.label OR NEW.created_at IS NOT OLD.created_at OR NEW.agent IS NOT OLD.agent
            OR (OLD.body_id IS NOT NULL AND NEW.body_id IS NOT OLD.body_id)
            OR (NEW.body_id IS NOT NULL AND NEW.role IS NOT 'body')
            OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS NOT OLD.revoked_at)
        BEGIN SELECT RAISE(ABORT, 'a token only gains its body (body tokens) and its revocation, once each'); END;
    """,
    # v12: a task names the files its acceptance command reads, which the model may not change (NULL: the default)
    """
    ALTER TABLE tasks ADD COLUMN acceptance_inputs TEXT;
    """,
    # v13 (telemetry, #20): the minutes the brain and each body were seen up, for the uptime KPIs; pruned by
    # `[brain] telemetry_retention_days`. Everything else the KPIs and /metrics read is derived from the tables
    # above (usage_records, tasks, decisions, audit_events), not copied.
    """
    CREATE TABLE telemetry_presence (
        subject TEXT NOT NULL,
        minute TEXT NOT NULL,
        PRIMARY KEY (subject, minute)
    ) WITHOUT ROWID;
    CREATE INDEX telemetry_presence_minute ON telemetry_presence (minute);
    """,
    # v14 (dashboard, #20): the dashboard's login sessions, by the SHA-256 of their cookie; a row goes when its
    # session ends (logout, an idle or absolute timeout, its token revoked).
    """
    CREATE TABLE dashboard_sessions (
        session_hash TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        token_id TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_seen TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # v15 (#18): a task's setup command, which builds its environment (for the model, and afresh for the
    # acceptance re-run)
    """
    ALTER TABLE tasks ADD COLUMN setup TEXT NOT NULL DEFAULT '';
    """,
    # v16 (#17): verifications checked without table scans, one audited re-run per verification, and the key each body
    # attests its events with (trust on first use). `verification_waits` lists the (action id, body) each task's
    # pending verification waits for, kept with the task row; `verification_uses` which event confirmed which
    # verification (never changed, never deleted); an index finds a body's event by its action id (on `id`: an index
    # of a WITHOUT ROWID table ends with its key, so it holds (id, body_id, seq)).
    """
    ALTER TABLE bodies ADD COLUMN verify_key TEXT;
    CREATE INDEX audit_events_action ON audit_events (id);
    CREATE TABLE verification_waits (
        action_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        body_id TEXT NOT NULL,
        PRIMARY KEY (action_id, task_id, body_id)
    ) WITHOUT ROWID;
    CREATE INDEX verification_waits_task ON verification_waits (task_id);
    INSERT OR IGNORE INTO verification_waits (action_id, task_id, body_id)
        SELECT json_extract(verification, '$.action_id'), id, json_extract(verification, '$.body_id') FROM tasks
        WHERE json_extract(verification, '$.status') = 'pending'
            AND json_extract(verification, '$.action_id') IS NOT NULL
            AND json_extract(verification, '$.body_id') IS NOT NULL;
    INSERT OR IGNORE INTO verification_waits (action_id, task_id, body_id)
        SELECT json_extract(run.value, '$.verification.action_id'), tasks.id,
            json_extract(run.value, '$.verification.body_id')
        FROM tasks, json_each(tasks.shadow_runs) AS run
        WHERE json_extract(run.value, '$.verification.status') = 'pending'
            AND json_extract(run.value, '$.verification.action_id') IS NOT NULL
            AND json_extract(run.value, '$.verification.body_id') IS NOT NULL;
    CREATE TABLE verification_uses (
        body_id TEXT NOT NULL,
        action_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        slot TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (body_id, action_id)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO verification_uses (body_id, action_id, task_id, slot, at)
        SELECT json_extract(verification, '$.body_id'), json_extract(verification, '$.action_id'), id, id,
            COALESCE(finished_at, created_at)
        FROM tasks WHERE json_extract(verification, '$.status') = 'confirmed' ORDER BY seq;
    CREATE TRIGGER verification_uses_no_update BEFORE UPDATE ON verification_uses
        BEGIN SELECT RAISE(ABORT, 'verification_uses is append-only'); END;
    CREATE TRIGGER verification_uses_no_delete BEFORE DELETE ON verification_uses
        BEGIN SELECT RAISE(ABORT, 'verification_uses is append-only'); END;
    """,
    # v17 (governance, #19): a `reviewer` token role (an agent's vote, bound to that one agent). SQLite cannot widen
    # a CHECK in place, so the table is rebuilt the way SQLite documents, with its triggers and its index.
    """
    CREATE TABLE tokens_v14 (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('body', 'reviewer', 'approver', 'captain')),
        label TEXT NOT NULL,
        created_at TEXT NOT NULL,
        body_id TEXT,
        revoked_at TEXT,
        agent TEXT
    );
    INSERT INTO tokens_v14 (rowid, id, token_hash, role, label, created_at, body_id, revoked_at, agent)
        SELECT rowid, id, token_hash, role, label, created_at, body_id, revoked_at, agent FROM tokens;
    DROP TABLE tokens;
    ALTER TABLE tokens_v14 RENAME TO tokens;
    CREATE TRIGGER tokens_no_delete BEFORE DELETE ON tokens
        BEGIN SELECT RAISE(ABORT, 'tokens are never deleted: revoke them'); END;
    CREATE TRIGGER tokens_bound_and_revoked_once BEFORE UPDATE ON tokens
        WHEN NEW.id IS NOT OLD.id OR NEW.token_hash IS NOT OLD.token_hash OR NEW.role IS NOT OLD.role
            OR NEW.label IS NOT OLD.label OR NEW.created_at IS NOT OLD.created_at OR NEW.agent IS NOT OLD.agent
            OR (OLD.body_id IS NOT NULL AND NEW.body_id IS NOT OLD.body_id)
            OR (NEW.body_id IS NOT NULL AND NEW.role IS NOT 'body')
            OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS NOT OLD.revoked_at)
        BEGIN SELECT RAISE(ABORT, 'a token only gains its body (body tokens) and its revocation, once each'); END;
    CREATE UNIQUE INDEX tokens_one_live_per_body ON tokens (body_id)
        WHERE body_id IS NOT NULL AND revoked_at IS NULL;
    """,
    # v18 (anomaly detection, #20): agents paused (a kill switch scoped to one agent's bodies) until a human resumes
    # them; a row per paused agent, deleted on resume (the brain's log keeps the history).
    """
    CREATE TABLE agent_pauses (
        agent TEXT PRIMARY KEY,
        pause TEXT NOT NULL
    );
    """,
    # v19 (review of #20): a read-only `metrics` token role (a scraper's: GET /metrics and nothing else), which
    # widens the tokens table's CHECK (a table rebuild, its index and triggers recreated as they were); and what a
    # scrape reads without scanning every usage record: running totals kept by a trigger on insert (usage records
    # are append-only), and indexes on the records' time (the last hour, a KPI window) and task (cost per task).
    """
    CREATE TABLE tokens_v19 (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('body', 'reviewer', 'approver', 'captain', 'metrics')),
        label TEXT NOT NULL,
        created_at TEXT NOT NULL,
        body_id TEXT,
        revoked_at TEXT,
        agent TEXT
    );
    INSERT INTO tokens_v19 (rowid, id, token_hash, role, label, created_at, body_id, revoked_at, agent)
        SELECT rowid, id, token_hash, role, label, created_at, body_id, revoked_at, agent FROM tokens;
    DROP TABLE tokens;
    ALTER TABLE tokens_v19 RENAME TO tokens;
    CREATE TRIGGER tokens_no_delete BEFORE DELETE ON tokens
        BEGIN SELECT RAISE(ABORT, 'tokens are never deleted: revoke them'); END;
    CREATE UNIQUE INDEX tokens_one_live_per_body ON tokens (body_id)
        WHERE body_id IS NOT NULL AND revoked_at IS NULL;
    CREATE TRIGGER tokens_bound_and_revoked_once BEFORE UPDATE ON tokens
        WHEN NEW.id IS NOT OLD.id OR NEW.token_hash IS NOT OLD.token_hash OR NEW.role IS NOT OLD.role
            OR NEW.label IS NOT OLD.label OR NEW.created_at IS NOT OLD.created_at OR NEW.agent IS NOT OLD.agent
            OR (OLD.body_id IS NOT NULL AND NEW.body_id IS NOT OLD.body_id)
            OR (NEW.body_id IS NOT NULL AND NEW.role IS NOT 'body')
            OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS NOT OLD.revoked_at)
        BEGIN SELECT RAISE(ABORT, 'a token only gains its body (body tokens) and its revocation, once each'); END;

    CREATE INDEX usage_records_at ON usage_records (julianday(json_extract(record, '$.at')));
    CREATE INDEX usage_records_task ON usage_records (json_extract(record, '$.task_id'));
    CREATE TABLE usage_totals (
        agent TEXT NOT NULL,
        model TEXT NOT NULL,
        outcome TEXT NOT NULL,
        calls INTEGER NOT NULL,
        usd REAL NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        PRIMARY KEY (agent, model, outcome)
    ) WITHOUT ROWID;
    INSERT INTO usage_totals
        SELECT json_extract(record, '$.agent'), json_extract(record, '$.model'),
            COALESCE(json_extract(record, '$.outcome'), 'answered'), COUNT(*),
            TOTAL(json_extract(record, '$.usd')), TOTAL(json_extract(record, '$.input_tokens')),
            TOTAL(json_extract(record, '$.output_tokens')), TOTAL(json_extract(record, '$.cache_read_tokens')),
            TOTAL(json_extract(record, '$.cache_write_tokens'))
        FROM usage_records GROUP BY 1, 2, 3;
    CREATE TRIGGER usage_records_totals AFTER INSERT ON usage_records BEGIN
        INSERT INTO usage_totals VALUES (
            json_extract(NEW.record, '$.agent'), json_extract(NEW.record, '$.model'),
            COALESCE(json_extract(NEW.record, '$.outcome'), 'answered'), 1,
            COALESCE(json_extract(NEW.record, '$.usd'), 0), COALESCE(json_extract(NEW.record, '$.input_tokens'), 0),
            COALESCE(json_extract(NEW.record, '$.output_tokens'), 0),
            COALESCE(json_extract(NEW.record, '$.cache_read_tokens'), 0),
            COALESCE(json_extract(NEW.record, '$.cache_write_tokens'), 0))
        ON CONFLICT (agent, model, outcome) DO UPDATE SET calls = calls + 1, usd = usd + excluded.usd,
            input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens,
            cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
            cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens;
    END;
    """,
    # v20 (review of #17, key pairing): a body token may be paired when it is created (`swarm brain token create
    # --pair`): the SHA-256 of its pairing secret, which a registration naming a verification key must carry. Set on
    # insert only (the update trigger's list of frozen columns is not widened: nothing updates it); tokens from
    # before are unpaired.
    """
    ALTER TABLE tokens ADD COLUMN pairing_hash TEXT;
    """,
    # v21 (#19, rollout): each agent's rollout — its live logic version and the candidate's stage (shadow, canary
    # step) — one row per agent, the `RolloutState` as JSON, replaced whole (the brain's log keeps each change).
    """
    CREATE TABLE rollouts (
        agent TEXT PRIMARY KEY,
        state TEXT NOT NULL
    );
    """,
    # v22 (#21, `swarm privacy migrate`): a stored audit event's text may change only inside the transaction of the
    # brain's one-time privacy migration (which opens this gate and closes it again, and is logged), and never its
    # body, seq, id, time, MAC or arrival (the chain's links)
    """
    CREATE TABLE audit_rewrite_gate (id INTEGER PRIMARY KEY CHECK (id = 1), open INTEGER NOT NULL);
    INSERT INTO audit_rewrite_gate (id, open) VALUES (1, 0);
    DROP TRIGGER audit_events_no_update;
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        WHEN (SELECT open FROM audit_rewrite_gate) = 0 OR NEW.body_id IS NOT OLD.body_id OR NEW.seq IS NOT OLD.seq
            OR NEW.id IS NOT OLD.id OR NEW.ts IS NOT OLD.ts OR NEW.mac IS NOT OLD.mac
            OR NEW.received_at IS NOT OLD.received_at
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
    """,
    # v23 (#22, claims): a generation number of what a rollout's evaluation reads — the tasks' outcomes, histories,
    # verifications, spend and shadow runs, the decisions, the usage charged to tasks, the refused audit events —
    # moved by triggers on every change of those (whoever writes it: the CLI's process too), but not by a claim of a
    # queued task or a lease's renewal, which change nothing an evaluation counts. The brain keeps what it read and
    # reads it again only once the number moved (`rollout_inputs.py`); and the refused events by agent, indexed
    # (what it reads of the audit events).
    """
    CREATE TABLE rollout_inputs (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL);
    INSERT INTO rollout_inputs (id, generation) VALUES (1, 0);
    CREATE TRIGGER rollout_inputs_task_insert AFTER INSERT ON tasks WHEN NEW.state IS NOT 'queued'
        BEGIN UPDATE rollout_inputs SET generation = generation + 1; END;
    CREATE TRIGGER rollout_inputs_task_update AFTER UPDATE ON tasks
        WHEN NOT (OLD.state IN ('queued', 'claimed') AND NEW.state = 'claimed'
            AND NEW.shadow_runs IS OLD.shadow_runs AND NEW.verification IS OLD.verification
            AND NEW.spend IS OLD.spend AND NEW.finished_at IS OLD.finished_at AND NEW.repo IS OLD.repo
            AND NEW.acceptance IS OLD.acceptance AND NEW.id IS OLD.id)
        BEGIN UPDATE rollout_inputs SET generation = generation + 1; END;
    CREATE TRIGGER rollout_inputs_task_delete AFTER DELETE ON tasks
        BEGIN UPDATE rollout_inputs SET generation = generation + 1; END;
    CREATE TRIGGER rollout_inputs_task_events AFTER INSERT ON task_events
        WHEN json_extract(NEW.event, '$.kind') NOT IN ('created', 'claimed')
        BEGIN UPDATE rollout_inputs SET generation = generation + 1; END;
    CREATE TRIGGER rollout_inputs_decision_insert AFTER INSERT ON decisions
        BEGIN UPDATE rollout_inputs SET generation = generation + 1; END;
    CREATE TRIGGER rollout_inputs_decision_update AFTER UPDATE ON decisions
        BEGIN UPDATE rollout_inputs SET generation = generation + 1; END;
    CREATE TRIGGER rollout_inputs_decision_delete AFTER DELETE ON decisions
        BEGIN UPDATE rollout_inputs SET generation = generation + 1; END;
    CREATE TRIGGER rollout_inputs_usage AFTER INSERT ON usage_records
        WHEN json_extract(NEW.record, '$.task_id') IS NOT NULL
        BEGIN UPDATE rollout_inputs SET generation = generation + 1; END;
    CREATE TRIGGER rollout_inputs_refusal AFTER INSERT ON audit_events
        WHEN json_extract(NEW.event, '$.outcome') = 'refused'
        BEGIN UPDATE rollout_inputs SET generation = generation + 1; END;
    CREATE TRIGGER rollout_inputs_audit_rewrite AFTER UPDATE ON audit_events
        BEGIN UPDATE rollout_inputs SET generation = generation + 1; END;
    CREATE TRIGGER rollout_inputs_audit_prune AFTER DELETE ON audit_events
        WHEN json_extract(OLD.event, '$.outcome') = 'refused'
        BEGIN UPDATE rollout_inputs SET generation = generation + 1; END;
    CREATE INDEX audit_events_refused ON audit_events (json_extract(event, '$.agent'))
        WHERE json_extract(event, '$.outcome') = 'refused';
    """,
    # v24 (#21, `swarm privacy migrate` of the brain's own records): a log entry's reason and a task history line's
    # text may change only inside that same gated transaction (the migration encrypting what was written before
    # `[privacy]`), never anything else of them
    """
    DROP TRIGGER brain_log_no_update;
    CREATE TRIGGER brain_log_no_update BEFORE UPDATE ON brain_log
        WHEN (SELECT open FROM audit_rewrite_gate) = 0 OR NEW.id IS NOT OLD.id OR NEW.at IS NOT OLD.at
            OR NEW.action IS NOT OLD.action OR NEW.by IS NOT OLD.by OR NEW.token_id IS NOT OLD.token_id
            OR NEW.role IS NOT OLD.role OR NEW.target IS NOT OLD.target OR NEW.detail IS NOT OLD.detail
        BEGIN SELECT RAISE(ABORT, 'brain_log is append-only'); END;
    DROP TRIGGER task_events_no_update;
    CREATE TRIGGER task_events_no_update BEFORE UPDATE ON task_events
        WHEN (SELECT open FROM audit_rewrite_gate) = 0 OR NEW.id IS NOT OLD.id OR NEW.task_id IS NOT OLD.task_id
        BEGIN SELECT RAISE(ABORT, 'task_events is append-only'); END;
    """,
    # v25 (#21, `swarm privacy migrate` of what v24 left out): inside that same gated transaction, and only there,
    # the text of a readiness override (its reason) and of a readiness report (its items' detail and fix), the
    # copies of task rows a compensating record keeps (their text columns), and a log entry's `detail.error` (a
    # wake-up service's answer, which may quote the address paged) may change, and nothing else of them. Readiness
    # reports, which nothing changed or deleted before, are now refused both outside it.
    """
    DROP TRIGGER readiness_overrides_no_update;
    CREATE TRIGGER readiness_overrides_no_update BEFORE UPDATE ON readiness_overrides
        WHEN (SELECT open FROM audit_rewrite_gate) = 0 OR NEW.id IS NOT OLD.id OR NEW.agent IS NOT OLD.agent
            OR NEW.logic_version IS NOT OLD.logic_version OR NEW.expires_at IS NOT OLD.expires_at
            OR json_remove(NEW.override, '$.reason') IS NOT json_remove(OLD.override, '$.reason')
        BEGIN SELECT RAISE(ABORT, 'readiness overrides are never changed: they expire'); END;
    CREATE TRIGGER readiness_reports_no_update BEFORE UPDATE ON readiness_reports
        WHEN (SELECT open FROM audit_rewrite_gate) = 0 OR NEW.id IS NOT OLD.id OR NEW.at IS NOT OLD.at
            OR json_remove(NEW.report, '$.items') IS NOT json_remove(OLD.report, '$.items')
            OR (SELECT json_group_array(json_array(json_extract(value, '$.name'), json_extract(value, '$.ok')))
                FROM json_each(NEW.report, '$.items'))
            IS NOT (SELECT json_group_array(json_array(json_extract(value, '$.name'), json_extract(value, '$.ok')))
                FROM json_each(OLD.report, '$.items'))
        BEGIN SELECT RAISE(ABORT, 'readiness reports are never changed'); END;
    CREATE TRIGGER readiness_reports_no_delete BEFORE DELETE ON readiness_reports
        BEGIN SELECT RAISE(ABORT, 'readiness reports are never deleted'); END;
    DROP TRIGGER compensations_reversed_once;
    CREATE TRIGGER compensations_reversed_once BEFORE UPDATE ON compensations
        WHEN NEW.id IS NOT OLD.id OR NEW.action_id IS NOT OLD.action_id OR NEW.decision_id IS NOT OLD.decision_id
            OR NEW.body_id IS NOT OLD.body_id OR NEW.kind IS NOT OLD.kind OR NEW.target IS NOT OLD.target
            OR NEW.created_at IS NOT OLD.created_at
            OR ((SELECT open FROM audit_rewrite_gate) = 0 AND (OLD.reversed_at IS NOT NULL
                OR NEW.before IS NOT OLD.before OR NEW.after IS NOT OLD.after))
            OR ((SELECT open FROM audit_rewrite_gate) = 1 AND (NEW.reversed_at IS NOT OLD.reversed_at
                OR NEW.reversed_by IS NOT OLD.reversed_by
                OR json_remove(NEW.before, '$.title', '$.description', '$.acceptance', '$.setup', '$.outcome_summary',
                    '$.repo', '$.verification', '$.evidence', '$.spend', '$.shadow_runs', '$.acceptance_inputs')
                IS NOT json_remove(OLD.before, '$.title', '$.description', '$.acceptance', '$.setup',
                    '$.outcome_summary', '$.repo', '$.verification', '$.evidence', '$.spend', '$.shadow_runs',
                    '$.acceptance_inputs')
                OR json_remove(NEW.after, '$.title', '$.description', '$.acceptance', '$.setup', '$.outcome_summary',
                    '$.repo', '$.verification', '$.evidence', '$.spend', '$.shadow_runs', '$.acceptance_inputs')
                IS NOT json_remove(OLD.after, '$.title', '$.description', '$.acceptance', '$.setup',
                    '$.outcome_summary', '$.repo', '$.verification', '$.evidence', '$.spend', '$.shadow_runs',
                    '$.acceptance_inputs')))
        BEGIN SELECT RAISE(ABORT, 'a compensation only gains its reversal, once'); END;
    DROP TRIGGER brain_log_no_update;
    CREATE TRIGGER brain_log_no_update BEFORE UPDATE ON brain_log
        WHEN (SELECT open FROM audit_rewrite_gate) = 0 OR NEW.id IS NOT OLD.id OR NEW.at IS NOT OLD.at
            OR NEW.action IS NOT OLD.action OR NEW.by IS NOT OLD.by OR NEW.token_id IS NOT OLD.token_id
            OR NEW.role IS NOT OLD.role OR NEW.target IS NOT OLD.target
            OR json_remove(NEW.detail, '$.error') IS NOT json_remove(OLD.detail, '$.error')
        BEGIN SELECT RAISE(ABORT, 'brain_log is append-only'); END;
    """,
    # v26: the check value (an HMAC of a constant) of the key store's secret the kept `Idempotency-Key`s are keyed
    # under: a brain started with another key store (the old one lost: it is kept out of backups) refuses a keyed
    # request instead of taking a retry for a new one
    """
    CREATE TABLE task_key_secret (one INTEGER PRIMARY KEY CHECK (one = 1), check_value TEXT NOT NULL);
    """,
]


async def migrate(conn: aiosqlite.Connection) -> int:
    """Bring the schema up to date, one transaction per migration; returns the version reached."""
    while True:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            async with conn.execute("PRAGMA user_version") as cursor:
                row = await cursor.fetchone()
            version = int(row[0]) if row is not None else 0
            if version > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"the brain database is at schema version {version}, newer than this brain knows "
                    f"({len(MIGRATIONS)}): upgrade swarm"
                )
            if version == len(MIGRATIONS):
                await conn.execute("COMMIT")
                return version
            for statement in split_statements(MIGRATIONS[version]):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")


def refuse_foreign(path: Path) -> None:
    """`NotABrainDatabase` if the SQLite file at `path` holds tables but no brain schema version: another
    application's database (a `--db` typo), which the brain must not write into, not even to switch it to WAL.
    Read-only; a file SQLite cannot read is left to the checks that follow."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) != 0:
                return
            found = [str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")]
        finally:
            conn.close()
    except sqlite3.Error:
        return
    if found:
        raise NotABrainDatabase(
            f"{path} is not a brain database: it holds another application's tables ({', '.join(sorted(found)[:5])}) "
            "and no brain schema version; is --db (or [brain] database_url) the right file? Nothing was written"
        )


def split_statements(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (which contain `;`) whole."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.strip().splitlines():
        current.append(line)
        candidate = "\n".join(current).strip()
        if candidate and sqlite3.complete_statement(candidate):
            statements.append(candidate)
            current = []
    return statements
