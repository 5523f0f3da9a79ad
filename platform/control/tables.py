"""Control database tables. They hold no personal data: ids, slugs, regions and
keyed hashes only (an e2e test scans every table for the personal strings used)."""

from __future__ import annotations

from piccolo.columns import UUID, Serial, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

# The status of an organisation its region deleted: the gateway answers 410 Gone for it.
DELETED = "deleted"


class DirectoryOrganisation(Table, tablename="directory_organisation"):
    id = UUID(primary_key=True)
    slug = Varchar(length=40, unique=True, index=True)
    region = Varchar(length=2, index=True)
    status = Varchar(length=16, default="pending")  # pending | active | deleted
    created_at = Timestamptz(default=TimestamptzNow())


class RegionRecord(Table, tablename="region"):
    id = Varchar(length=2, primary_key=True)
    jurisdiction = Varchar(length=120)
    public_url = Varchar(length=300)
    updated_at = Timestamptz(default=TimestamptzNow())


class LoginIndexEntry(Table, tablename="login_index"):
    id = Serial(primary_key=True)
    email_hmac = Varchar(length=64, index=True)
    org_id = UUID(index=True)
    region = Varchar(length=2)


CONTROL_TABLES: list[type[Table]] = [DirectoryOrganisation, RegionRecord, LoginIndexEntry]
