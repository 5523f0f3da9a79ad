"""The control plane built from an operator's whole file holds no region's database or
key credentials: not in its settings, not in what it keeps per region."""

from __future__ import annotations

from pathlib import Path

import msgspec

from konsil.platform.control.app import create_control_app
from konsil.platform.control.context import ControlContext
from konsil.platform.core.settings import RegionEndpoint, load_control_settings, load_settings

EU_DSN = "postgresql://eu_user:eu-pass-4412@db.eu.internal:5432/konsil_eu"
US_DSN = "postgresql://us_user:us-pass-9923@db.us.internal:5432/konsil_us"
US_VAULT_TOKEN = "us-vault-token-f00dcafe"
US_VAULT_SECRET_ID = "us-approle-secret-1234"
US_TURN_SECRET = "us-turn-secret-0123456789"
US_NODE_KEY = "us-heartbeat-key-0123456789"
CREDENTIALS: tuple[str, ...] = (EU_DSN, "eu-pass-4412", US_DSN, "us-pass-9923", US_VAULT_TOKEN, US_VAULT_SECRET_ID)
CREDENTIALS += (US_TURN_SECRET, US_NODE_KEY, "/keys/eu")


def operators_file(tmp_path: Path) -> Path:
    path = tmp_path / "konsil.toml"
    path.write_text(
        f"""
mode = "services"
discovery_key = "discovery-key-0123456789"

[control]
database = "sqlite:///{tmp_path / "control.sqlite"}"
listen = "127.0.0.1:8000"
public_url = "http://127.0.0.1:8000"

[[regions]]
id = "eu"
jurisdiction = "EU/EEA"
public_url = "http://127.0.0.1:8101"
listen = "127.0.0.1:8101"
database = "{EU_DSN}"
internal_secret = "eu-internal-secret-5a9c1e77"
[regions.vault]
keyring_path = "/keys/eu"

[[regions]]
id = "us"
jurisdiction = "United States"
public_url = "https://us.example.org"
internal_url = "http://region-us.internal:8102"
listen = "0.0.0.0:8102"
database = "{US_DSN}"
internal_secret = "us-internal-secret-b83f02d4"
broker_url = "amqp://us-broker/us"
media_node_key = "{US_NODE_KEY}"
turn_secret = "{US_TURN_SECRET}"
[regions.vault]
backend = "vault"
url = "https://vault.us.internal"
auth = "approle"
role_id = "konsil-us"
secret_id = "{US_VAULT_SECRET_ID}"
token = "{US_VAULT_TOKEN}"
""",
        encoding="utf-8",
    )
    return path


def test_the_control_planes_objects_hold_no_region_credentials(tmp_path: Path) -> None:
    path = operators_file(tmp_path)
    # Both ways the control plane is given its settings: the launcher's for_control(),
    # and 'konsil serve control' reading the operator's file.
    for settings in (load_settings(path, environ={}).for_control(), load_control_settings(path, environ={})):
        app = create_control_app(settings)
        ctx = app.state.control
        assert isinstance(ctx, ControlContext)
        assert all(type(region) is RegionEndpoint for region in ctx.regions.values())
        held = msgspec.json.encode({"settings": ctx.settings, "regions": ctx.regions}).decode()
        held += repr(ctx.route("us")) + repr(ctx.route("eu"))
        for credential in CREDENTIALS:
            assert credential not in held, f"{credential!r} reached the control plane"
        # What it does hold: where the regions are and how to sign calls to them.
        assert ctx.route("us").host_header == b"region-us.internal:8102"
        assert ctx.signed_headers("eu", "GET", "/x", b"")
