"""Control catalogs (issue 13, item 1): every framework's file loads and holds the controls
the frameworks ask for, and a broken catalog is refused with its file and control named.
Whether the files ship in the wheel is checked in tests/e2e/test_catalog_wheel.py."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from konsil.compliance.controls.catalog import (
    COLLECTORS,
    FRAMEWORK_IDS,
    PROMISE_IDS,
    CatalogError,
    load_catalogs,
    parse_catalog,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

REQUIRED = {
    "gdpr": [
        "5(1)(e)",
        "12(3)+15",
        "16",
        "17, 17(3)(b)",
        "20",
        "25(2)",
        "28(2),(3)(h)",
        "30(1),(2)",
        "32(1)(a)(b)",
        "33(2),(5)",
        "44-46",
    ],
    "hipaa": [
        "164.312(a)(2)(i)",
        "164.312(a)(2)(ii)",
        "164.312(a)(2)(iii)",
        "164.312(a)(2)(iv)",
        "164.312(b)",
        "164.312(c)(1),(c)(2)",
        "164.312(d)",
        "164.312(e)(1),(e)(2)",
        "164.308(a)(1)(ii)(D)",
        "164.308(a)(3)(ii)(C)",
        "164.308(a)(7)(ii)(A)",
        "164.308(b)(1),(b)(4)",
        "164.316(b)(2)(i)",
    ],
    "nen7510": [
        "A.9.2.1",
        "A.9.2.3",
        "A.9.2.5",
        "A.9.4.1",
        "A.10.1.2",
        "A.12.4.1",
        "A.12.4.2",
        "A.12.4.3",
        "A.12.4.4",
        "A.15.1.2",
        "NEN 7513 ch.5",
    ],
    "normen": [
        "kap. 4.2.2",
        "kap. 5.2",
        "FA 54",
        "FA 54/10",
        "FA 15 logging",
        "FA 15 follow-up",
        "FA 15 innsyn",
        "FA 25",
        "FA 20b",
        "Cloud guide",
    ],
}

GOOD = """
id = "gdpr"
name = "GDPR"

[[controls]]
id = "16"
title = "Rectification"
requirement = "Corrections are recorded."
promises = ["P17"]
[controls.check]
collector = "dsr"
pass_rule = "A matching change entry exists."
rules = ["rectification_logged"]
"""


def test_every_framework_loads_from_the_package() -> None:
    catalogs = load_catalogs()
    assert set(catalogs) == set(FRAMEWORK_IDS) == {"gdpr", "hipaa", "nen7510", "normen"}
    for framework_id, framework in catalogs.items():
        assert framework.id == framework_id
        assert framework.controls


@pytest.mark.parametrize("framework_id", sorted(REQUIRED))
def test_required_controls_are_present(framework_id: str) -> None:
    ids = [control.id for control in load_catalogs()[framework_id].controls]
    assert sorted(set(REQUIRED[framework_id]) - set(ids)) == []
    assert len(ids) == len(set(ids))


def test_each_control_has_exactly_one_way_to_be_met_and_known_promises() -> None:
    used = set()
    for framework in load_catalogs().values():
        for control in framework.controls:
            assert (control.check is None) != (control.attestation is None), control.id
            assert set(control.promises) <= PROMISE_IDS
            if control.check is not None:
                used.add(control.check.collector)
    # Every collector of issue 13 evidences at least one control.
    assert used == set(COLLECTORS)


def test_promise_ids_match_docs_promises() -> None:
    text = (REPO_ROOT / "docs" / "promises.md").read_text(encoding="utf-8")
    assert set(re.findall(r"^## (P\d+) ", text, flags=re.MULTILINE)) == PROMISE_IDS


def test_good_catalog_parses() -> None:
    framework = parse_catalog("gdpr.toml", GOOD)
    assert framework.control("16").check is not None


BAD = [
    pytest.param(
        GOOD.replace('promises = ["P17"]', 'promises = ["P17"]\nowner = "x"'), "'16'", "owner", id="unknown-field"
    ),
    pytest.param(
        GOOD.replace('pass_rule = "A', 'when = "daily"\npass_rule = "A'), "'16'", "when", id="unknown-check-field"
    ),
    pytest.param(GOOD + GOOD.split("\n", 3)[3], "'16'", "duplicate", id="duplicate-id"),
    pytest.param(GOOD.replace('"P17"', '"P21"'), "'16'", "P21", id="unknown-promise"),
    pytest.param(
        GOOD + '[controls.attestation]\nstatement = "Signed."\nvalid_days = 365\n',
        "'16'",
        "exactly one",
        id="check-and-attestation",
    ),
    pytest.param(GOOD.split("[controls.check]")[0], "'16'", "exactly one", id="neither"),
    pytest.param(GOOD.replace('"dsr"', '"backups"'), "'16'", "collector", id="unknown-collector"),
    pytest.param(
        GOOD.split("[controls.check]")[0] + '[controls.attestation]\nstatement = "Signed."\nvalid_days = 0\n',
        "'16'",
        "valid_days",
        id="attestation-never-valid",
    ),
    pytest.param(GOOD.replace('title = "Rectification"', 'title = ""'), "'16'", "title", id="empty-title"),
    pytest.param(
        GOOD.replace('"rectification_logged"', '"sealed_columns"'),
        "'16'",
        "sealed_columns",
        id="rule-of-another-collector",
    ),
    pytest.param(GOOD.replace('rules = ["rectification_logged"]', "rules = []"), "'16'", "rules", id="no-rules"),
]


@pytest.mark.parametrize(("text", "control", "detail"), BAD)
def test_bad_catalog_is_refused_naming_file_and_control(text: str, control: str, detail: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog("gdpr.toml", text)
    message = str(caught.value)
    assert message.startswith("gdpr.toml: control ")
    assert control in message
    assert detail in message


def test_framework_id_must_be_known_and_match_the_file() -> None:
    with pytest.raises(CatalogError, match=r"^soc2\.toml: .*id"):
        parse_catalog("soc2.toml", GOOD.replace('id = "gdpr"', 'id = "soc2"', 1))
    with pytest.raises(CatalogError, match=r"^hipaa\.toml: framework id 'gdpr' does not match"):
        parse_catalog("hipaa.toml", GOOD)


def test_missing_or_stray_catalog_file_is_refused(tmp_path: Path) -> None:
    for framework_id in FRAMEWORK_IDS:
        (tmp_path / f"{framework_id}.toml").write_text(GOOD.replace('"gdpr"', f'"{framework_id}"', 1))
    assert set(load_catalogs(tmp_path)) == set(FRAMEWORK_IDS)
    (tmp_path / "soc2.toml").write_text(GOOD)
    with pytest.raises(CatalogError, match=r"^soc2\.toml: not a known framework"):
        load_catalogs(tmp_path)
    (tmp_path / "soc2.toml").unlink()
    (tmp_path / "normen.toml").unlink()
    with pytest.raises(CatalogError, match=r"^normen\.toml: catalog file missing"):
        load_catalogs(tmp_path)


def test_package_data_covers_the_catalog_files() -> None:
    setuptools_conf = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "konsil.compliance.controls" in setuptools_conf["packages"]
    patterns = setuptools_conf["package-data"]["konsil.compliance.controls"]
    for framework_id in FRAMEWORK_IDS:
        assert any(fnmatch(f"{framework_id}.toml", pattern) for pattern in patterns), framework_id
