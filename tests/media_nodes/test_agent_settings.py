"""A media node's agent holds its own settings: its region's broker, heartbeat key and
TURN secret (or where in Vault KV to read it), read from the same file as the region's
other processes, and never the region's database DSN or tenant-key (Transit)
credentials. No services needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from konsil.media_nodes.agent_settings import AgentSettings, load_agent_settings
from konsil.media_nodes.turn_secret import VaultKv
from konsil.platform.core.config import ConfigError

CONTROL_DSN = "postgresql://ctl:ctl-pass-7731@db.control.internal/konsil_control"
EU_DSN = "postgresql://eu:eu-pass-4412@db.eu.internal/konsil_eu"
US_DSN = "postgresql://us:us-pass-9923@db.us.internal/konsil_us"
EU_VAULT_TOKEN = "eu-transit-token-0badf00d"
US_VAULT_TOKEN = "us-vault-token-f00dcafe"
SECRETS = ("eu-internal-secret-5a9c1e77", "us-internal-secret-b83f02d4", "discovery-key-0123456789")

# An operator's whole file, as today's region processes read it.
FULL = f"""
mode = "services"
discovery_key = "{SECRETS[2]}"

[control]
database = "{CONTROL_DSN}"
listen = "127.0.0.1:8000"
public_url = "http://127.0.0.1:8000"

[[regions]]
id = "eu"
jurisdiction = "EU/EEA"
public_url = "http://127.0.0.1:8101"
listen = "127.0.0.1:8101"
database = "{EU_DSN}"
internal_secret = "{SECRETS[0]}"
broker_url = "amqp://eu-broker/eu"
media_node_key = "eu-heartbeat-key-0123456789"
turn_secret = "eu-turn-secret-0123456789"
ops_token_hashes = ["{"a" * 64}"]
[regions.vault]
backend = "vault"
url = "https://vault.eu.internal"
mount = "transit-eu"
token = "{EU_VAULT_TOKEN}"
keyring_path = "/keys/eu"

[[regions]]
id = "us"
jurisdiction = "United States"
public_url = "http://127.0.0.1:8102"
listen = "127.0.0.1:8102"
database = "{US_DSN}"
internal_secret = "{SECRETS[1]}"
broker_url = "amqp://us-broker/us"
media_node_key = "us-heartbeat-key-0123456789"
[regions.vault]
backend = "vault"
url = "https://vault.us.internal"
mount = "transit-us"
token = "{US_VAULT_TOKEN}"
kv_mount = "kv-us"
turn_secret_path = "konsil/turn"
timeout_seconds = 2
"""


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def make(text: str) -> Path:
        path = tmp_path / "konsil.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return make


def error(path: Path, region: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_agent_settings(path, region, environ)
    message = str(caught.value)
    assert "\n" not in message and message
    return message


def test_the_agents_settings_type_has_no_place_for_a_dsn_or_transit_credentials() -> None:
    assert set(AgentSettings.__struct_fields__) == {
        "region_id",
        "broker_url",
        "media_node_key",
        "turn_secret",
        "turn_secret_in_vault",
        "telemetry",  # [telemetry]: where traces and metrics go, no credential
    }
    # The Vault login reads the KV engine: no Transit mount, no keyring.
    assert set(VaultKv.__struct_fields__) == {
        "url",
        "path",
        "mount",
        "auth",
        "token",
        "role_id",
        "secret_id",
        "kubernetes_role",
        "kubernetes_jwt_path",
        "timeout_seconds",
    }


def test_a_region_with_its_turn_secret_in_the_file(write: Callable[[str], Path]) -> None:
    settings = load_agent_settings(write(FULL), "eu", {})
    assert settings == AgentSettings(
        region_id="eu",
        broker_url="amqp://eu-broker/eu",
        media_node_key="eu-heartbeat-key-0123456789",
        turn_secret="eu-turn-secret-0123456789",
        turn_secret_in_vault=None,
    )
    held = msgspec.json.encode(settings).decode()
    for value in (EU_DSN, US_DSN, CONTROL_DSN, EU_VAULT_TOKEN, US_VAULT_TOKEN, "transit-eu", "/keys/eu", *SECRETS):
        assert value not in held, f"{value!r} reached the media node"


def test_a_region_with_its_turn_secret_in_vault(write: Callable[[str], Path]) -> None:
    settings = load_agent_settings(write(FULL), "us", {})
    assert settings.turn_secret == ""
    assert settings.turn_secret_in_vault == VaultKv(
        url="https://vault.us.internal", path="konsil/turn", mount="kv-us", token=US_VAULT_TOKEN, timeout_seconds=2
    )
    held = msgspec.json.encode(settings).decode()
    # The Vault login the file gives is held to read the KV entry; a node's own file gives
    # one whose policy reads that entry only. No DSN, no Transit mount, nothing of other regions.
    for value in (EU_DSN, US_DSN, CONTROL_DSN, EU_VAULT_TOKEN, "transit-us", "transit-eu", *SECRETS):
        assert value not in held, f"{value!r} reached the media node"


def test_only_the_keys_a_node_needs_are_read(write: Callable[[str], Path]) -> None:
    """A node's own file may hold its region's part only; what the region's other
    processes need (and check) is neither needed nor checked here."""
    own = write(
        "[[regions]]\n"
        'id = "eu"\n'
        'broker_url = "amqp://eu-broker/eu"\n'
        'media_node_key = "eu-heartbeat-key-0123456789"\n'
        'turn_secret = "eu-turn-secret-0123456789"\n'
    )
    assert load_agent_settings(own, "eu", {}).broker_url == "amqp://eu-broker/eu"
    # A bad DSN of the region, or a bad control section, is not the node's concern.
    assert load_agent_settings(write(FULL.replace(EU_DSN, "mysql://x")), "eu", {}).region_id == "eu"
    # The environment overrides as for every process.
    env = {"KONSIL_REGIONS__EU__MEDIA_NODE_KEY": "from-the-environment-0123"}
    assert load_agent_settings(write(FULL), "eu", env).media_node_key == "from-the-environment-0123"


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        pytest.param(
            FULL.replace('broker_url = "amqp://us-broker/us"\n', ""),
            "us",
            "regions.us.broker_url: missing (needed to run a media node)",
            id="no-broker",
        ),
        pytest.param(
            FULL.replace('media_node_key = "eu-heartbeat-key-0123456789"\n', ""),
            "eu",
            "regions.eu.media_node_key: missing (needed to run a media node)",
            id="no-key",
        ),
        pytest.param(
            FULL.replace('turn_secret_path = "konsil/turn"\n', ""),
            "us",
            "regions.us.turn_secret: missing (or vault.turn_secret_path), needed to run a media node",
            id="no-turn-secret",
        ),
        pytest.param(
            FULL.replace('url = "https://vault.us.internal"\n', ""),
            "us",
            "regions.us.vault.url: required for the vault backend",
            id="no-vault-url",
        ),
        pytest.param(
            FULL.replace(f'token = "{US_VAULT_TOKEN}"\n', ""),
            "us",
            "regions.us.vault.token: required for token authentication",
            id="no-vault-token",
        ),
        pytest.param(
            FULL.replace("timeout_seconds = 2", "timeout_seconds = 0"),
            "us",
            "regions.us.vault.timeout_seconds: Expected `float` > 0.0",
            id="bad-timeout",
        ),
        pytest.param(
            FULL.replace('broker_url = "amqp://eu-broker/eu"', "broker_url = 5"),
            "eu",
            "regions.eu.broker_url: Expected `str`, got `int`",
            id="bad-type",
        ),
        pytest.param(FULL, "zz", "regions: no region with id 'zz' is configured", id="no-such-region"),
    ],
)
def test_what_the_node_needs_is_checked_naming_the_key(
    write: Callable[[str], Path], text: str, region: str, expected: str
) -> None:
    assert error(write(text), region) == expected
