"""Typed settings: a TOML file plus ``KONSIL_*`` overrides; any problem is one line
naming the key; each process is handed only its own slice of the configuration."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from konsil.platform.core.settings import (
    ConfigError,
    ControlPlaneSettings,
    RegionEndpoint,
    RegionSettings,
    Settings,
    dump_settings,
    load_control_settings,
    load_settings,
)

DISCOVERY_KEY = "discovery-key-0123456789"
CONTROL_DSN = "postgresql://ctl_user:ctl-pass-7731@db.control.internal:5432/konsil_control"
EU_DSN = "postgresql://eu_user:eu-pass-4412@db.eu.internal:5432/konsil_eu"
US_DSN = "postgresql://us_user:us-pass-9923@db.us.internal:5432/konsil_us"
EU_SECRET = "eu-internal-secret-5a9c1e77"
US_SECRET = "us-internal-secret-b83f02d4"
US_VAULT_TOKEN = "us-vault-token-f00dcafe"

CONTROL = f"""
discovery_key = "{DISCOVERY_KEY}"

[control]
database = "{CONTROL_DSN}"
listen = "127.0.0.1:8000"
public_url = "http://127.0.0.1:8000"
internal_url = "http://control.internal:8000/"
"""

EU = f"""
[[regions]]
id = "eu"
jurisdiction = "EU/EEA (GDPR)"
public_url = "http://127.0.0.1:8101"
listen = "127.0.0.1:8101"
database = "{EU_DSN}"
internal_secret = "{EU_SECRET}"
"""

US = f"""
[[regions]]
id = "us"
jurisdiction = "United States (HIPAA)"
public_url = "https://us.example.org/"
listen = "0.0.0.0:8102"
database = "{US_DSN}"
internal_secret = "{US_SECRET}"
internal_url = "http://region-us.internal:8102"
[regions.vault]
backend = "vault"
url = "https://vault.us.internal"
token = "{US_VAULT_TOKEN}"
"""

FULL = CONTROL + EU + US


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def make(text: str) -> Path:
        path = tmp_path / "konsil.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return make


def load(path: Path, **environ: str) -> Settings:
    return load_settings(path, environ=environ)


def config_error(path: Path, **environ: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ)
    message = str(caught.value)
    assert "\n" not in message, f"not one line: {message!r}"
    assert message.strip() == message and message
    return message


def test_full_valid_file(write: Callable[[str], Path]) -> None:
    settings = load(write(FULL))

    assert settings.discovery_key == DISCOVERY_KEY
    assert settings.require_discovery_key() == DISCOVERY_KEY
    control = settings.require_control()
    assert control.database == CONTROL_DSN
    assert control.listen == "127.0.0.1:8000"
    assert control.base_url == "http://control.internal:8000"
    assert [r.id for r in settings.regions] == ["eu", "us"]
    eu, us = settings.region("eu"), settings.region("us")
    assert isinstance(eu, RegionSettings)
    assert eu.database == EU_DSN and eu.internal_secret == EU_SECRET
    assert eu.jurisdiction == "EU/EEA (GDPR)"
    assert eu.endpoint().base_url == "http://127.0.0.1:8101"
    assert eu.vault.backend == "local"
    assert us.endpoint().base_url == "http://region-us.internal:8102"
    assert us.vault.backend == "vault" and us.vault.token == US_VAULT_TOKEN
    # Defaults for what the file leaves out.
    assert settings.mode == "embedded"
    assert settings.session_idle_minutes == 30
    assert settings.signature_window_seconds == 60


def test_unknown_region_and_missing_sections_are_config_errors(write: Callable[[str], Path]) -> None:
    settings = load(write(FULL))
    with pytest.raises(ConfigError, match="regions"):
        settings.region("zz")
    bare = load(write(EU))
    assert bare.control is None and bare.discovery_key is None
    with pytest.raises(ConfigError, match=r"^control"):
        bare.require_control()
    with pytest.raises(ConfigError, match=r"^discovery_key"):
        bare.require_discovery_key()


def test_environment_overrides_the_file(write: Callable[[str], Path]) -> None:
    path = write(FULL)
    settings = load(
        path,
        KONSIL_CONTROL__LISTEN="0.0.0.0:9000",
        KONSIL_REGIONS__EU__DATABASE="postgresql://other@db2.eu.internal/konsil_eu2",
        KONSIL_REGIONS__US__VAULT__TOKEN="replaced-token",
        KONSIL_MODE="services",
        UNRELATED="ignored",
    )
    assert settings.require_control().listen == "0.0.0.0:9000"
    assert settings.require_control().database == CONTROL_DSN  # untouched siblings
    assert settings.region("eu").database == "postgresql://other@db2.eu.internal/konsil_eu2"
    assert settings.region("eu").internal_secret == EU_SECRET
    assert settings.region("us").database == US_DSN
    assert settings.region("us").vault.token == "replaced-token"
    assert settings.mode == "services"
    assert [r.id for r in settings.regions] == ["eu", "us"]
    # The file itself is read, never changed.
    assert path.read_text(encoding="utf-8") == FULL


def test_environment_can_name_the_file(write: Callable[[str], Path]) -> None:
    path = write(FULL)
    settings = load_settings(None, environ={"KONSIL_CONFIG": str(path)})
    assert settings.region("us").database == US_DSN


def test_environment_alone_can_add_a_region(write: Callable[[str], Path]) -> None:
    settings = load(
        write(CONTROL),
        KONSIL_REGIONS__EU__JURISDICTION="EU/EEA (GDPR)",
        KONSIL_REGIONS__EU__PUBLIC_URL="http://127.0.0.1:8101",
        KONSIL_REGIONS__EU__LISTEN="127.0.0.1:8101",
        KONSIL_REGIONS__EU__DATABASE=EU_DSN,
        KONSIL_REGIONS__EU__INTERNAL_SECRET=EU_SECRET,
    )
    assert settings.region("eu").database == EU_DSN


def test_integers_from_the_environment_are_coerced(write: Callable[[str], Path]) -> None:
    settings = load(write(FULL), KONSIL_SESSION_IDLE_MINUTES="15", KONSIL_SIGNATURE_WINDOW_SECONDS="120")
    assert settings.session_idle_minutes == 15
    assert type(settings.session_idle_minutes) is int
    assert settings.signature_window_seconds == 120


@pytest.mark.parametrize("value", ["fifteen", "15.5", "", "0", "100000", "-3"])
def test_bad_integers_from_the_environment_name_the_key(write: Callable[[str], Path], value: str) -> None:
    message = config_error(write(FULL), KONSIL_SESSION_IDLE_MINUTES=value)
    assert message.startswith("session_idle_minutes:")


def test_bad_value_from_the_environment_names_the_key(write: Callable[[str], Path]) -> None:
    message = config_error(write(FULL), KONSIL_CONTROL__LISTEN="not a listen address")
    assert message.startswith("control.listen:")
    message = config_error(write(FULL), KONSIL_REGIONS__US__INTERNAL_SECRET="short")
    assert message.startswith("regions.us.internal_secret:")


def test_region_override_without_a_key_is_an_error(write: Callable[[str], Path]) -> None:
    message = config_error(write(FULL), KONSIL_REGIONS="eu")
    assert message.startswith("KONSIL_REGIONS")


@pytest.mark.parametrize(
    ("text", "key", "also"),
    [
        pytest.param(
            FULL.replace(f'database = "{EU_DSN}"\n', ""),
            "regions.eu.database",
            "missing required field",
            id="missing-database",
        ),
        pytest.param(FULL.replace(EU_DSN, "mysql://eu@db/konsil"), "regions.eu.database", "", id="dsn-scheme"),
        pytest.param(FULL.replace(CONTROL_DSN, "http://db/konsil"), "control.database", "", id="control-dsn"),
        pytest.param(
            FULL.replace("[control]\n", "[control]\ncolour = 1\n"), "control.colour", "unknown field", id="unknown-key"
        ),
        pytest.param("colour = 1\n" + FULL, "configuration", "colour", id="unknown-top-level-key"),
        pytest.param(FULL.replace(US_SECRET, "too-short"), "regions.us.internal_secret", "16", id="short-secret"),
        pytest.param(FULL.replace(DISCOVERY_KEY, "short"), "discovery_key", "16", id="short-discovery-key"),
        pytest.param(FULL.replace('id = "us"', 'id = "eu"'), "regions.eu.id", "duplicate", id="duplicate-region"),
        pytest.param(FULL.replace('id = "us"', 'id = "USA"'), "regions.USA.id", "", id="bad-region-id"),
        pytest.param(FULL.replace("https://us.example.org/", "ftp://us"), "regions.us.public_url", "", id="bad-url"),
        pytest.param(FULL.replace('listen = "0.0.0.0:8102"', 'listen = "8102"'), "regions.us.listen", "", id="listen"),
        pytest.param('mode = "cluster"\n' + FULL, "mode", "", id="bad-mode"),
    ],
)
def test_bad_setting_is_one_line_naming_the_key(write: Callable[[str], Path], text: str, key: str, also: str) -> None:
    message = config_error(write(text))
    assert message.startswith(f"{key}:"), message
    assert also in message


def test_missing_key_is_named_by_its_full_dotted_path(write: Callable[[str], Path]) -> None:
    message = config_error(write(FULL.replace(f'database = "{EU_DSN}"\n', "")))
    assert message.startswith("regions.eu.database"), message


def test_invalid_toml_names_the_file_and_place(write: Callable[[str], Path]) -> None:
    path = write(FULL + "\n[[regions]\nid = \n")
    message = config_error(path)
    assert message.startswith(f"config file {path}:")
    assert "TOML" in message and "line" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "konsil.toml"
    message = config_error(path)
    assert message == f"config file {path}: not found"


def test_for_region_holds_only_that_region(write: Callable[[str], Path]) -> None:
    settings = load(write(FULL))
    eu = settings.for_region("eu")

    assert eu.control is None
    assert [r.id for r in eu.regions] == ["eu"]
    assert eu.control_url == "http://control.internal:8000"
    assert eu.discovery_key == DISCOVERY_KEY
    text = dump_settings(eu)
    for secret in (US_DSN, "us-pass-9923", "db.us.internal", US_SECRET, US_VAULT_TOKEN, CONTROL_DSN, "ctl-pass-7731"):
        assert secret not in text, f"{secret!r} leaked into the EU region's configuration"
    assert EU_DSN in text and EU_SECRET in text
    assert "[control]" not in text
    # What the launcher writes is what the region process reads back.
    assert load(write(text)) == eu


def test_for_region_keeps_an_explicit_control_url(write: Callable[[str], Path]) -> None:
    settings = load(write('control_url = "http://gateway:8000"\n' + FULL))
    assert settings.for_region("us").control_url == "http://gateway:8000"
    with pytest.raises(ConfigError):
        settings.for_region("zz")


def test_for_control_holds_no_region_database_credentials(write: Callable[[str], Path]) -> None:
    settings = load(write(FULL))
    control = settings.for_control()

    assert control.control.database == CONTROL_DSN
    assert [r.id for r in control.regions] == ["eu", "us"]
    text = dump_settings(control)
    for secret in (EU_DSN, "eu-pass-4412", "db.eu.internal", US_DSN, "us-pass-9923", "db.us.internal", US_VAULT_TOKEN):
        assert secret not in text, f"{secret!r} leaked into the control plane's configuration"
    # The control plane still knows where the regions are and signs calls to them.
    assert control.region("us").base_url == "http://region-us.internal:8102"
    assert control.region("eu").internal_secret == EU_SECRET
    assert load_control_settings(write(text), environ={}) == control


def test_the_control_planes_types_have_no_place_for_region_credentials() -> None:
    """Not trimmed values but types: nothing the control plane holds can carry a region's
    database, Vault or relay credentials."""

    def fields(kind: type[msgspec.Struct]) -> set[str]:
        return set(kind.__struct_fields__)

    assert fields(RegionEndpoint) == {"id", "jurisdiction", "public_url", "internal_url", "internal_secret"}
    assert fields(ControlPlaneSettings) & {"regions", "control"} == {"regions", "control"}
    region_type = msgspec.inspect.type_info(ControlPlaneSettings)
    assert isinstance(region_type, msgspec.inspect.StructType)
    regions = next(f.type for f in region_type.fields if f.name == "regions")
    assert isinstance(regions, msgspec.inspect.ListType)
    assert isinstance(regions.item_type, msgspec.inspect.StructType) and regions.item_type.cls is RegionEndpoint
    assert not fields(RegionEndpoint) & {"database", "vault", "turn_secret", "media_node_key", "broker_url"}


def test_the_control_plane_reads_an_operators_whole_file(write: Callable[[str], Path]) -> None:
    """Backward compatible: the file every process reads serves the control plane too;
    it takes the endpoints of its regions and passes over their other keys."""
    control = load_control_settings(write(FULL), environ={})
    assert control == load(write(FULL)).for_control()
    assert control.region("us") == RegionEndpoint(
        id="us",
        jurisdiction="United States (HIPAA)",
        public_url="https://us.example.org/",
        internal_secret=US_SECRET,
        internal_url="http://region-us.internal:8102",
    )
    text = repr(control)
    for secret in (EU_DSN, US_DSN, US_VAULT_TOKEN):
        assert secret not in text
    # Overrides apply as for every process; a region's database is not even read.
    overridden = load_control_settings(
        write(FULL),
        environ={"KONSIL_REGIONS__EU__PUBLIC_URL": "https://eu.example.org", "KONSIL_REGIONS__EU__DATABASE": "bad"},
    )
    assert overridden.region("eu").public_url == "https://eu.example.org"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param(FULL.replace(US_SECRET, "too-short"), "regions.us.internal_secret", id="short-secret"),
        pytest.param(FULL.replace("[control]\n", "[control]\ncolour = 1\n"), "control.colour", id="unknown-key"),
        pytest.param(
            FULL.replace('listen = "0.0.0.0:8102"\n', 'listen = "0.0.0.0:8102"\ncolour = 1\n'),
            "regions.us.colour",
            id="unknown-region-key",
        ),
        pytest.param(FULL.replace('id = "us"', 'id = "eu"'), "regions.eu.id", id="duplicate-region"),
        pytest.param(EU, "control", id="no-control-section"),
    ],
)
def test_the_control_planes_part_is_checked_naming_the_key(write: Callable[[str], Path], text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_control_settings(write(text), environ={})
    assert str(caught.value).startswith(f"{key}:"), caught.value


def test_dump_settings_without_a_discovery_key(write: Callable[[str], Path]) -> None:
    settings = load(write(CONTROL.replace(f'discovery_key = "{DISCOVERY_KEY}"\n', "") + EU))
    assert load(write(dump_settings(settings.for_region("eu")))) == settings.for_region("eu")


# --- the command line -------------------------------------------------------


def run_check(konsil: Path, path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(konsil), "check-config", "--config", str(path)],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param(FULL.replace(US_SECRET, "too-short"), "regions.us.internal_secret", id="short-secret"),
        pytest.param(FULL.replace("[control]\n", "[control]\ncolour = 1\n"), "control.colour", id="unknown-key"),
    ],
)
def test_check_config_cli_reports_one_line(
    konsil_script: Path,
    write: Callable[[str], Path],
    child_env: Callable[..., dict[str, str]],
    text: str,
    key: str,
) -> None:
    done = run_check(konsil_script, write(text), child_env())
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"konsil: configuration error: {key}:")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_check_config_cli_accepts_a_valid_file(
    konsil_script: Path, write: Callable[[str], Path], child_env: Callable[..., dict[str, str]]
) -> None:
    done = run_check(konsil_script, write(FULL), child_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "configuration is valid" in done.stdout and "eu, us" in done.stdout
