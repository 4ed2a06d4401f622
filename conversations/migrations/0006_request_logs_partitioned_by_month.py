"""Request logs partitioned by month of created_at (PostgreSQL; SQLite keeps its plain table).

The primary key becomes (request_id, created_at), as a partitioned table's keys must hold the partition
key. A log is written with its usage row's batch and ON CONFLICT DO NOTHING: a retried or replayed batch
carries the same created_at, so it still conflicts; a duplicate log would only repeat a prompt in a trace,
never bill. The Django model state does not change.
"""

from django.db import migrations

from common.partitions import partition_by_month, unpartition

TABLE = "conversations_requestlog"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        partition_by_month(cursor, TABLE, primary_key=("request_id", "created_at"), unique={})
        cursor.execute(f"ANALYZE {TABLE}")  # the copied months have no statistics yet


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        unpartition(cursor, TABLE, primary_key=("request_id",), unique={})


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0005_request_logging"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
