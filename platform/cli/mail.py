"""``konsil mail feature-news --region ID --subject-file F --body-file F [--org SLUG] [--dry-run]``:
news about a feature, mailed only to the members who agreed to feature e-mails
(tenants/member_emails.py checks each member's recorded consent and records every
mail sent). It prints counts only, never an address. ``--dry-run`` only counts who
would get it.

The subject file holds one line; the body file holds paragraphs separated by blank
lines. Both are sent as written (write them in the language your members read); the
greeting and the line on how to stop these e-mails come in each member's language."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from konsil.platform.core.settings import load_settings
from konsil.regions.container import open_region
from konsil.tenants import member_emails
from konsil.tenants.tables import Organisation

SUBJECT_MAX = 200
BODY_MAX = 20_000
KIND = "feature_news"


class BadNews(ValueError):
    """A subject or body file that cannot be sent."""


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadNews(f"cannot read the {what} file {path}: {getattr(exc, 'strerror', None) or exc}") from None


def news_from(subject_file: str, body_file: str) -> member_emails.FeatureNews:
    subject = _read(subject_file, "subject").strip()
    if not subject or "\n" in subject or len(subject) > SUBJECT_MAX:
        raise BadNews(f"the subject must be one line of 1 to {SUBJECT_MAX} characters")
    body = _read(body_file, "body").replace("\r\n", "\n").strip()
    if not body or len(body) > BODY_MAX:
        raise BadNews(f"the body must hold 1 to {BODY_MAX} characters")
    paragraphs = [" ".join(p.split()) for p in body.split("\n\n") if p.strip()]
    return member_emails.FeatureNews(title=subject, paragraphs=paragraphs)


async def feature_news(args: argparse.Namespace) -> int:
    try:
        news = news_from(args.subject_file, args.body_file)
    except BadNews as exc:
        print(f"konsil mail feature-news: {exc}", file=sys.stderr)
        return 2
    settings = load_settings(args.config)
    region = settings.region(args.region)
    async with open_region(settings.for_region(region.id), region) as ctx:
        ctx.service_name = "cli"
        query = Organisation.select(Organisation.id, Organisation.slug)
        if args.org:
            query = query.where(Organisation.slug == args.org)
        orgs = await query
        if args.org and not orgs:
            print(f"no organisation {args.org!r} in region {region.id}", file=sys.stderr)
            return 2
        total = 0
        for org in orgs:
            if args.dry_run:
                count = await member_emails.feature_news_audience(org["id"])
            else:
                count = await member_emails.send_feature_news(ctx, org["id"], news, KIND)
            total += count
            if count:
                print(f"{org['slug']}: {count}")
    done = "would get it (dry run)" if args.dry_run else "sent"
    print(f"region {region.id}: {total} {done}, to members who agreed to feature e-mails ({len(orgs)} organisations)")
    return 0
