"""Region tables of retention: purge-run evidence."""

from piccolo.columns import UUID, BigInt, Text, Timestamptz, Varchar
from piccolo.table import Table


class PurgeRun(Table, tablename="purge_run"):
    """Evidence of one purge run for one data class (and, for classes kept per
    organisation, one organisation): the cutoff, the rows removed, start, end and
    outcome. A run interrupted and re-run with the same ``run_id`` continues the
    same rows, so the evidence of a killed worker's run ends as if it had not died."""

    id = UUID(primary_key=True)
    run_id = UUID(index=True)
    region = Varchar(length=2)
    data_class = Varchar(length=24)  # one of policy.DATA_CLASSES
    org_id = UUID(null=True, default=None, index=True)
    trigger = Varchar(length=16)  # schedule | cli
    as_of = Timestamptz()  # the run's clock: every cutoff is computed from it
    cutoff = Timestamptz(null=True, default=None)
    rows_removed = BigInt(default=0)
    detail = Text(default="{}")  # JSON: rows removed per table
    started_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)
    outcome = Varchar(length=12, default="running")  # running | success | failure | skipped
    message = Varchar(length=200, default="")  # why a class failed or was skipped; never personal data


RETENTION_TABLES: list[type[Table]] = [PurgeRun]
