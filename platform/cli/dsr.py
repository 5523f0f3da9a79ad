"""``konsil dsr …``: data-subject requests from the command line.

    konsil dsr file --org SLUG --kind access --by email   (the address on stdin or at the prompt)
    konsil dsr list --org SLUG [--status received]
    konsil dsr show ID
    konsil dsr export ID [--text] [--output FILE]
    konsil dsr extract ID [--output FILE]                  (who accessed their data, PDF)
    konsil dsr rectify ID                                  (JSON {"name": …, "phone": …} on stdin, or prompts)
    konsil dsr erase ID [--yes]
    konsil dsr reject ID --reason identity_not_verified

The subject's e-mail or phone, and corrected values, are never taken from the
command line: command lines land in shell history and are visible to every user
of the machine (``ps``). They are read from stdin when it is piped, else from a
prompt. Every step is access-logged as ``operator:cli``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from konsil.compliance.dsr import service
from konsil.compliance.dsr.schemas import KINDS, Rectification, RequestIn
from konsil.compliance.dsr.tables import DataSubjectRequest
from konsil.platform.core import errors
from konsil.platform.core.keys.provider import KeyDestroyed, KeyUnavailable
from konsil.platform.core.settings import ConfigError, RegionSettings, Settings, load_settings
from konsil.regions.container import open_region
from konsil.tenants.actors import Actor
from konsil.tenants.tables import Organisation

OPERATOR = ("operator:cli", "operator")


def _read(prompt: str) -> str:
    """One line from stdin (piped) or the terminal; never from argv."""
    if sys.stdin.isatty():
        return input(prompt)
    return sys.stdin.readline().rstrip("\n")


def _actor() -> Actor:
    return Actor(OPERATOR[0], OPERATOR[1], OPERATOR[0], "local")


async def _locate(
    settings: Settings, regions: list[RegionSettings], slug: str | None, request_id: uuid.UUID | None
) -> tuple[RegionSettings, str] | None:
    """The region and organisation slug holding the organisation (or the request)."""

    for region in regions:
        async with open_region(settings, region):
            if request_id is not None:
                found = (
                    await DataSubjectRequest.select(DataSubjectRequest.org_id)
                    .where(DataSubjectRequest.id == request_id)
                    .first()
                    .run()
                )
                if found is None:
                    continue
                org = (
                    await Organisation.select(Organisation.slug).where(Organisation.id == found["org_id"]).first().run()
                )
                if org is not None and (slug is None or org["slug"] == slug):
                    return region, org["slug"]
            elif slug is not None and await Organisation.exists().where(Organisation.slug == slug).run():
                return region, slug
    return None


def _write(path: str | None, content: bytes) -> None:
    if path is None:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # personal data: owner only
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    print(f"written to {path}", file=sys.stderr)


def _rectification() -> Rectification:
    if sys.stdin.isatty():
        name = input("corrected name (empty: keep): ").strip()
        phone = input("corrected phone (empty: keep, '-': remove): ").strip()
        raw: dict[str, Any] = {}
        if name:
            raw["name"] = name
        if phone:
            raw["phone"] = None if phone == "-" else phone
        return msgspec.convert(raw, Rectification)
    return msgspec.json.decode(sys.stdin.buffer.read(65536), type=Rectification)


async def _run(args: argparse.Namespace) -> int:

    settings = load_settings(args.config)
    regions = [settings.region(args.region)] if args.region else list(settings.regions)
    request_id: uuid.UUID | None = getattr(args, "id", None)
    slug: str | None = getattr(args, "org", None)

    data: RequestIn | None = None
    change: Rectification | None = None
    try:
        if args.command == "file":
            value = _read(f"the data subject's {'e-mail address' if args.by == 'email' else 'phone'}: ").strip()
            data = msgspec.convert({"kind": args.kind, args.by: value}, RequestIn)
        elif args.command == "rectify":
            change = _rectification()
    except msgspec.ValidationError as exc:
        print(f"konsil dsr: {exc}", file=sys.stderr)  # names the field, never the value
        return 2
    except msgspec.DecodeError:
        print('konsil dsr: stdin is not a JSON object like {"name": …, "phone": …}', file=sys.stderr)
        return 2

    located = await _locate(settings, regions, slug, request_id)
    if located is None:
        what = f"request {request_id}" if request_id else f"organisation {slug!r}"
        print(f"konsil dsr: no {what} in the configured region(s)", file=sys.stderr)
        return 2
    region, slug = located
    if args.command == "erase" and not args.yes:
        answer = await asyncio.to_thread(
            input, f"Erase the data subject's records in {slug!r} for good? Type 'erase': "
        )
        if answer.strip() != "erase":
            print("not erased")
            return 1

    async with open_region(settings, region) as ctx:
        org = await Organisation.select().where(Organisation.slug == slug).first().run()
        assert org is not None
        actor = _actor()
        if args.command == "file":
            assert data is not None
            made = await service.file(ctx, actor, org, data)
            print(f"{made.id}\t{made.kind}\treceived {made.received_at:%Y-%m-%d}\tdue {made.due_at:%Y-%m-%d}")
        elif args.command == "list":
            rows = await service.list_requests(org["id"], args.status)
            for r in rows:
                flag = "\tOVERDUE" if r.overdue else ""
                print(
                    f"{r.id}\t{r.kind}\tby {r.identifier_kind}\treceived {r.received_at:%Y-%m-%d}\t"
                    f"due {r.due_at:%Y-%m-%d}\t{r.status}{flag}"
                )
            if not rows:
                print(f"no data-subject requests in {slug!r}")
        elif args.command == "show":
            assert request_id is not None
            shown = await service.detail(ctx, actor, org, request_id)
            print(msgspec.json.format(msgspec.json.encode(shown)).decode())
        elif args.command == "export":
            assert request_id is not None
            exported = await service.export(ctx, actor, org, request_id)
            if args.text:
                _write(args.output, service.overview_text(exported).encode())
            else:
                _write(args.output, msgspec.json.format(msgspec.json.encode(exported)) + b"\n")
        elif args.command == "extract":
            assert request_id is not None
            pdf = await service.access_extract(ctx, actor, org, request_id)
            _write(args.output or service.extract_filename(request_id), pdf)
        elif args.command == "rectify":
            assert request_id is not None and change is not None
            done = await service.rectify(ctx, actor, org, request_id, change)
            print(f"corrected {done.changed['members']} member account(s), {done.changed['visits']} visit(s)")
        elif args.command == "erase":
            assert request_id is not None
            erased = await service.erase(ctx, actor, org, request_id)
            c = erased.changed
            print(
                f"erased {c['visits']} visit(s), {c['calls']} call(s), {c['telemetry']} telemetry record(s), "
                f"{c['relay_receipts']} relay receipt(s), {c['members']} member account(s); "
                f"kept {c['payments_kept']} payment record(s) (legal hold)"
            )
        elif args.command == "reject":
            assert request_id is not None
            rejected = await service.reject(ctx, actor, org, request_id, args.reason)
            print(f"{rejected.id}\t{rejected.status}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="konsil dsr",
        description="data-subject requests (access, rectification, erasure, portability); "
        "personal data is read from stdin or a prompt, never from the command line",
    )
    sub = top.add_subparsers(dest="command", required=True)
    filed = sub.add_parser("file", help="file a request (the e-mail or phone is read from stdin or a prompt)")
    filed.add_argument("--org", required=True, help="organisation slug")
    filed.add_argument("--kind", required=True, choices=KINDS)
    filed.add_argument("--by", required=True, choices=("email", "phone"), help="which identifier the subject gave")
    listed = sub.add_parser("list", help="the organisation's requests with due dates")
    listed.add_argument("--org", required=True, help="organisation slug")
    listed.add_argument("--status", choices=("received", "completed", "rejected"))
    for name, text in (
        ("show", "a request and how many records of the subject were found"),
        ("export", "the subject's data as JSON (or --text), and who accessed it"),
        ("extract", "who accessed the subject's data, as a PDF for them to read (a file)"),
        ("rectify", "correct name and/or phone (JSON on stdin, or prompts)"),
        ("erase", "erase the subject's records (payment records stay: legal hold)"),
        ("reject", "close a request without answering it"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("id", type=uuid.UUID, help="the request's id")
        command.add_argument("--org", help="organisation slug (optional)")
    sub.choices["export"].add_argument("--text", action="store_true", help="a plain-text overview instead of JSON")
    sub.choices["export"].add_argument("--output", help="write to this file (mode 0600) instead of stdout")
    sub.choices["extract"].add_argument(
        "--output", help="write to this file (mode 0600; default access-log-extract-ID.pdf here)"
    )
    sub.choices["erase"].add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sub.choices["reject"].add_argument(
        "--reason",
        required=True,
        choices=("identity_not_verified", "manifestly_unfounded", "duplicate", "withdrawn"),
    )
    for command in sub.choices.values():
        command.add_argument("--region", help="only look in this region")
        command.add_argument("--config", help="TOML configuration file (default: $KONSIL_CONFIG)")
    return top


def main(argv: Sequence[str]) -> int:

    args = parser().parse_args(list(argv))
    try:
        return asyncio.run(_run(args))
    except errors.AppError as exc:
        print(f"konsil dsr: {exc.message}", file=sys.stderr)
        return 2 if exc.status == 404 else 1
    except KeyUnavailable:
        print("konsil dsr: the region's key service does not answer; nothing was changed", file=sys.stderr)
        return 1
    except KeyDestroyed:
        print("konsil dsr: this organisation's key no longer exists (its data was deleted)", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"konsil: configuration error: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        return 130
    except OSError as exc:
        print(f"konsil: {type(exc).__name__}: {exc.strerror or exc}", file=sys.stderr)
        return 1
