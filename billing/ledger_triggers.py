"""The ledger's invariant, as database triggers (installed by billing migration 0003).

They make `billing_ledgerentry` an append-only chain per tenant: an entry must carry the next `seq` and
`balance_after_nano` = previous balance + `amount_nano`, so the last entry's balance always equals the
sum of the tenant's entries, whoever writes to the table. UPDATE and DELETE are refused.

SQLite rebuilds a table for most ALTERs and loses its triggers: a migration that alters the ledger
table must end with `sqlite_triggers_reinstall` (0004 does).
"""

POSTGRES_UP = """
CREATE FUNCTION billing_ledger_chain() RETURNS trigger AS $$
DECLARE prev_seq bigint; prev_balance bigint;
BEGIN
    SELECT seq, balance_after_nano INTO prev_seq, prev_balance FROM billing_ledgerentry
     WHERE tenant_id = NEW.tenant_id ORDER BY seq DESC LIMIT 1;
    IF NEW.seq <> COALESCE(prev_seq, 0) + 1
       OR NEW.balance_after_nano <> COALESCE(prev_balance, 0) + NEW.amount_nano THEN
        RAISE EXCEPTION 'ledger chain broken for tenant %: the next entry is seq % with balance % + amount',
            NEW.tenant_id, COALESCE(prev_seq, 0) + 1, COALESCE(prev_balance, 0) USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER billing_ledger_chain BEFORE INSERT ON billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_chain();
CREATE FUNCTION billing_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: post a correcting entry instead' USING ERRCODE = 'check_violation';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER billing_ledger_append_only BEFORE UPDATE OR DELETE ON billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_append_only();
"""
POSTGRES_DOWN = """
DROP TRIGGER billing_ledger_append_only ON billing_ledgerentry;
DROP FUNCTION billing_ledger_append_only();
DROP TRIGGER billing_ledger_chain ON billing_ledgerentry;
DROP FUNCTION billing_ledger_chain();
"""
SQLITE_UP = [
    """
CREATE TRIGGER IF NOT EXISTS billing_ledger_chain BEFORE INSERT ON billing_ledgerentry
WHEN NEW.seq <> COALESCE((SELECT MAX(seq) FROM billing_ledgerentry WHERE tenant_id = NEW.tenant_id), 0) + 1
  OR NEW.balance_after_nano <> COALESCE((SELECT balance_after_nano FROM billing_ledgerentry
                                         WHERE tenant_id = NEW.tenant_id ORDER BY seq DESC LIMIT 1), 0)
                               + NEW.amount_nano
BEGIN SELECT RAISE(ABORT, 'ledger chain broken: an entry must follow the last one of its tenant'); END
""",
    """
CREATE TRIGGER IF NOT EXISTS billing_ledger_no_update BEFORE UPDATE ON billing_ledgerentry
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: post a correcting entry instead'); END
""",
    """
CREATE TRIGGER IF NOT EXISTS billing_ledger_no_delete BEFORE DELETE ON billing_ledgerentry
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: post a correcting entry instead'); END
""",
]
SQLITE_DOWN = [
    "DROP TRIGGER billing_ledger_chain",
    "DROP TRIGGER billing_ledger_no_update",
    "DROP TRIGGER billing_ledger_no_delete",
]


def _run(schema_editor, postgres, sqlite):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(postgres, params=None)
    elif vendor == "sqlite":
        for statement in sqlite:
            schema_editor.execute(statement, params=None)
    else:
        raise RuntimeError(f"No ledger triggers for the {vendor} database.")


def triggers_up(apps, schema_editor):
    _run(schema_editor, POSTGRES_UP, SQLITE_UP)


def triggers_down(apps, schema_editor):
    _run(schema_editor, POSTGRES_DOWN, SQLITE_DOWN)


def sqlite_triggers_reinstall(apps, schema_editor):
    """After a migration that alters billing_ledgerentry: SQLite rebuilds the table, dropping its triggers."""
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_UP:
            schema_editor.execute(statement, params=None)


