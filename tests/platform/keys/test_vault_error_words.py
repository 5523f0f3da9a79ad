"""What the Vault provider says when Vault refuses: words an operator acts on, in logs and
5xx log lines, that never name an organisation (Vault quotes key paths such as
``transit/keys/org-<id>`` in its errors)."""

from __future__ import annotations

import uuid

from hvac import exceptions as hvac_errors

from konsil.platform.core.keys.provider import KeyServiceMisconfigured, KeyUnavailable
from konsil.platform.core.keys.vault import _translate


def test_a_vault_reason_quoting_a_key_path_names_no_organisation() -> None:
    org = uuid.uuid4()
    refused = hvac_errors.InvalidRequest(errors=[f"invalid request on transit/keys/org-{org}: key is not exportable"])
    translated = _translate(refused, unwrapping=False)
    assert isinstance(translated, KeyUnavailable)
    assert str(org) not in str(translated) and org.hex not in str(translated)
    assert "transit/keys/org-…: key is not exportable" in str(translated)


def test_a_missing_transit_mount_is_named_by_its_mount() -> None:
    org = uuid.uuid4()
    unmounted = hvac_errors.InvalidPath(
        errors=[f"no handler for route 'transit/keys/org-{org}'. route entry not found."]
    )
    translated = _translate(unmounted, unwrapping=False)
    assert isinstance(translated, KeyServiceMisconfigured)
    assert "no secrets engine is enabled at Vault mount 'transit'" in str(translated)
    assert str(org) not in str(translated)
