"""Region tables of report jobs and their finished files.

Reports are audit records about an organisation (HIPAA 164.316(b)(2)(i): kept 6 years,
apart from the 1 to 90 day data retention), so they are not organisation-owned: removing
an organisation leaves them, like its access log. They hold no personal data.

A job's files are written in the same transaction that marks it done, so a job killed
mid-way leaves no file at all, never one that looks complete."""

from piccolo.columns import UUID, BigInt, Bytea, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class ReportJob(Table, tablename="report_job"):
    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    framework = Varchar(length=16)
    period_start = Timestamptz()  # inclusive, UTC
    period_end = Timestamptz()  # exclusive, UTC
    status = Varchar(length=12, default="queued")  # queued | running | done | failed
    progress = Integer(default=0)  # percent
    step = Varchar(length=120, default="")  # what it is doing now, in words
    requested_by = Varchar(length=80)  # pseudonymous actor ("member:<uuid>", "cli")
    created_at = Timestamptz(default=TimestamptzNow())
    started_at = Timestamptz(null=True, default=None)
    heartbeat_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)
    attempts = Integer(default=0)
    message = Varchar(length=300, default="")  # why it failed, safe to show
    report_sha256 = Varchar(length=64, default="")  # of report.json, as the PDF prints it


class ReportFile(Table, tablename="report_file"):
    id = UUID(primary_key=True)
    report_id = UUID(index=True)
    format = Varchar(length=8)  # jobs.FORMATS
    content = Bytea()
    sha256 = Varchar(length=64)
    size = BigInt()
    created_at = Timestamptz(default=TimestamptzNow())


REPORT_TABLES: list[type[Table]] = [ReportJob, ReportFile]
