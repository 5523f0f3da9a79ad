"""The commands that start a process: ``konsil up``, ``serve``, ``worker``, ``beat``,
and ``migrate``, each building its own process from the configuration."""

from __future__ import annotations

import argparse

from konsil.platform.cli.launcher import up as launch
from konsil.platform.cli.migrations import migrate_targets, selected_targets
from konsil.platform.control.app import create_control_app
from konsil.platform.core.http_server import serve as serve_app
from konsil.platform.core.settings import load_control_settings, load_settings
from konsil.platform.core.telemetry.setup import setup as setup_telemetry
from konsil.regions.app import create_region_app
from konsil.regions.tasks import run_beat, run_worker


def up(args: argparse.Namespace) -> int:
    return launch(args.config, args.data_dir, args.port, args.demo)


def serve(args: argparse.Namespace) -> int:
    if args.what == "control":
        # The control plane reads its own part of the file: no region database or keys.
        control = load_control_settings(args.config)
        setup_telemetry(control.telemetry, "control")
        serve_app(create_control_app(control), control, control.control.listen)
        return 0
    settings = load_settings(args.config)
    region_id = args.region or (settings.regions[0].id if settings.regions else None)
    setup_telemetry(settings.telemetry, "region", region_id)
    app = create_region_app(settings, args.region)
    serve_app(app, settings, settings.region(args.region or settings.regions[0].id).listen)
    return 0


def migrate(args: argparse.Namespace) -> int:
    migrate_targets(selected_targets(args.config, args.region, args.control))
    return 0


def worker(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    setup_telemetry(settings.telemetry, "worker", args.region)
    run_worker(settings, args.region, args.loglevel)
    return 0


def beat(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    setup_telemetry(settings.telemetry, "beat", args.region)
    run_beat(settings, args.region, args.loglevel)
    return 0
