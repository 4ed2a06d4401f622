"""Usage rows partitioned by month of created_at (PostgreSQL; SQLite keeps its plain table).

A partitioned table's unique constraints must contain the partition key, so `request_id` alone can no
longer be unique in the database. One usage row per request id, which is what keeps a request from being
billed twice, is then held by two things (gateway/metering/writes.py `_usage_write`):

- `UNIQUE (request_id, created_at)`: the same record written again (a retried batch after a broken
  connection, a spool replay after an outage, however late) carries the created_at it was built with, so
  it conflicts with its first copy in the same partition. The index also serves lookups by request id.
- `billing_usageclaim`, one row per request id written in the last USAGE_CLAIM_HOURS, claimed in the
  same statement that inserts the usage row: a second, different record for one request id (another
  created_at) is refused while its claim lives. Such a record can only be built while its request runs
  (one Meter per request id, minted at random per request), far inside the window, and the table stays a
  window's worth of rows instead of growing with the history like a unique index on request_id would.

The Django model state does not change: `request_id` stays `unique=True` for SQLite and the ORM. The
rows are copied into the new table (the table is locked for the copy: minutes for tens of millions).
"""

from django.db import migrations

from common.partitions import partition_by_month, unpartition

TABLE = "billing_usageevent"
# Single-column foreign-key indexes that the composite (tenant, created_at) and (api_key, created_at)
# indexes serve as well: one index fewer to write per usage row each.
REDUNDANT = ("billing_usageevent_tenant_id_c5b338b9", "billing_usageevent_api_key_id_1f2bdebe")

CLAIMS = """
CREATE TABLE billing_usageclaim (request_id varchar(40) PRIMARY KEY, claimed_at timestamptz NOT NULL);
CREATE INDEX billing_usageclaim_claimed_at ON billing_usageclaim USING brin (claimed_at);
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        partition_by_month(cursor, TABLE, primary_key=("id", "created_at"),
                           unique={"usage_unique_request_id_created_at": ("request_id", "created_at")},
                           drop_indexes=REDUNDANT)
        cursor.execute(CLAIMS)
        # Rows already written hold their request ids: claim them, so the guarantee covers them too.
        cursor.execute(f"INSERT INTO billing_usageclaim SELECT request_id, now() FROM {TABLE} "
                       "WHERE created_at > now() - interval '1 day' ON CONFLICT DO NOTHING")
        # The copied months have no statistics yet: without them the rollup's ORDER BY id LIMIT walks
        # every month's primary key instead of the small index of rows not rolled up (seconds, not ms).
        cursor.execute(f"ANALYZE {TABLE}")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS billing_usageclaim")
        unpartition(cursor, TABLE, primary_key=("id",), unique={"billing_usageevent_request_id_key": ("request_id",)})
        cursor.execute(f"CREATE INDEX billing_usageevent_tenant_id_c5b338b9 ON {TABLE} (tenant_id)")
        cursor.execute(f"CREATE INDEX billing_usageevent_api_key_id_1f2bdebe ON {TABLE} (api_key_id)")
        cursor.execute(f"CREATE INDEX billing_usageevent_request_id_e35a9b65_like ON {TABLE} "
                       "(request_id varchar_pattern_ops)")


class Migration(migrations.Migration):
    # One transaction: a failure half-way leaves the plain table as it was.
    atomic = True

    dependencies = [
        ("billing", "0009_statements_and_alerts"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
