"""The subprocessor register (P16): the shipped file loads, each region lists the
privacy policy's processors, its transfers pass the check, and broken data or a broken
transfer is named."""

from __future__ import annotations

from importlib import resources

import msgspec
import pytest

from konsil.compliance.subprocessors.register import (
    INTEGRATIONS,
    Register,
    RegisterError,
    integration_entry,
    load_register,
    parse_register,
    transfer_problems,
)
from konsil.compliance.subprocessors.register import for_region as region_list

# The privacy policy's lists (payment, support, video calls, statistics), by region:
# Stripe and the SMS provider follow the customer's region; Criipto (BankID, MitID) is
# the policy's eID broker, "only available in Scandinavia", so in the EU region only.
EU = {"Stripe (EU)", "24SevenOffice", "Intercom", "Zendesk", "AWS", "Sinch", "Criipto", "Plausible"}
US = {"Stripe (US)", "24SevenOffice", "Intercom", "Zendesk", "Twilio", "Plausible"}

SHIPPED = resources.files("konsil.compliance.subprocessors").joinpath("register.toml").read_text(encoding="utf-8")

ENTRY = """
[regions.eu]
jurisdiction = "eu_eea"

[regions.us]
jurisdiction = "us"

[[subprocessors]]
name = "Mailer Inc"
purpose = "Newsletters"
data_categories = ["contact"]
regions = [{regions}]
location = "us"
transfer_mechanism = "{mechanism}"
personal_data = true
dpa_signed = true
phi = {phi}
baa = {baa}
{extra}
"""


def entry(
    regions: str = '"eu"',
    mechanism: str = "scc",
    phi: str = "false",
    baa: str = "false",
    extra: str = "",
) -> str:
    return ENTRY.format(regions=regions, mechanism=mechanism, phi=phi, baa=baa, extra=extra)


def test_the_register_loads() -> None:
    register = load_register()
    assert isinstance(register, Register)
    assert set(register.regions) == {"eu", "us"}
    names = [p.name for p in register.subprocessors]
    assert len(names) == len(set(names)) == 10
    assert all(p.dpa_signed for p in register.subprocessors if p.personal_data)


def test_each_region_lists_the_policy_processors() -> None:
    register = load_register()
    assert {p.name for p in register.for_region("eu")} == EU
    assert {p.name for p in region_list("us")} == US
    # Stripe and the SMS provider follow the customer's region.
    assert "Stripe (US)" not in EU and "Twilio" not in EU
    assert "Stripe (EU)" not in US and "Sinch" not in US
    with pytest.raises(RegisterError, match="region 'no' is not in the subprocessor register"):
        register.for_region("no")


def test_the_shipped_register_passes_the_transfer_check() -> None:
    register = load_register()
    for region in register.regions:
        assert transfer_problems(register, region) == []
    # Every processor outside the EU/EEA that receives EU personal data has a mechanism.
    outside = [p for p in register.for_region("eu") if p.location != "eu_eea" and p.personal_data]
    assert [p.name for p in outside] == ["Intercom"]
    assert outside[0].transfer_mechanism == "scc"


def test_a_us_processor_receiving_eu_personal_data_without_a_mechanism_fails() -> None:
    register = parse_register(entry(regions='"eu"', mechanism="none_needed"))
    problems = transfer_problems(register, "eu")
    assert [(p.processor, p.rule) for p in problems] == [("Mailer Inc", "transfer")]
    assert "Mailer Inc" in problems[0].reason
    assert "without a transfer mechanism" in problems[0].reason
    # With SCC it passes; the US region's own data is not an EU transfer.
    assert transfer_problems(parse_register(entry(regions='"eu"', mechanism="scc")), "eu") == []
    assert transfer_problems(parse_register(entry(regions='"us"', mechanism="none_needed")), "us") == []


def test_the_shipped_register_with_intercom_unprotected_fails() -> None:
    text = SHIPPED.replace(
        'name = "Intercom"\npurpose = "Onboarding and product-update e-mails to users"\n'
        'data_categories = ["contact"]\nregions = ["eu", "us"]\nlocation = "us"\n'
        'transfer_mechanism = "scc"',
        'name = "Intercom"\npurpose = "Onboarding and product-update e-mails to users"\n'
        'data_categories = ["contact"]\nregions = ["eu", "us"]\nlocation = "us"\n'
        'transfer_mechanism = "none_needed"',
    )
    assert text != SHIPPED
    problems = transfer_problems(parse_register(text), "eu")
    assert [p.processor for p in problems] == ["Intercom"]


def test_phi_without_a_baa_fails_for_the_us_region() -> None:
    register = parse_register(entry(regions='"us"', phi="true", baa="false"))
    problems = transfer_problems(register, "us")
    assert [(p.processor, p.rule) for p in problems] == [("Mailer Inc", "baa")]
    assert "without a business associate agreement" in problems[0].reason
    assert transfer_problems(parse_register(entry(regions='"us"', phi="true", baa="true")), "us") == []
    # The shipped Twilio entry loses its BAA: named.
    text = SHIPPED.replace("phi = true\nbaa = true", "phi = true\nbaa = false")
    assert text != SHIPPED
    assert [p.processor for p in transfer_problems(parse_register(text), "us")] == ["Twilio"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (entry(extra='country = "US"'), "subprocessors[0] ('Mailer Inc'): Object contains unknown field `country`"),
        (
            entry().replace('["contact"]', '["contact", "health"]'),
            "subprocessors[0] ('Mailer Inc'): Invalid enum value 'health' - at `data_categories[1]` "
            "(one of: contact, phone, payment, invoicing, national_id, call_metadata, support, usage, technical, none)",
        ),
        (
            entry().replace('location = "us"', 'location = "mars"'),
            "('Mailer Inc'): Invalid enum value 'mars' - at `location` (one of: eu_eea, us)",
        ),
        (entry(mechanism="adequacy"), "'Mailer Inc': transfer_mechanism: a US location relies on"),
        (entry(regions='"eu", "de"'), "'Mailer Inc': regions: 'de' has no [regions.de] table"),
        (entry().replace("personal_data = true", "personal_data = false"), "'Mailer Inc': data_categories"),
        (entry().replace("personal_data = true\n", ""), "Object missing required field `personal_data`"),
        (entry() + "[[subprocessors]]" + entry().split("[[subprocessors]]")[1], "listed twice"),
        (
            entry().replace('jurisdiction = "us"', 'jurisdiction = "mars"'),
            "regions.us: Invalid enum value 'mars' - at `jurisdiction`",
        ),
        (entry().replace("[regions.us]", "[regions.USA]"), "regions.USA: a region id is two lowercase letters"),
        ("extra = 1\n" + entry(), "subprocessor register: Object contains unknown field `extra`"),
        ("subprocessors = ", "not valid TOML"),
        ('[regions.eu]\njurisdiction = "eu_eea"\n', "no [[subprocessors]] entries"),
    ],
)
def test_bad_data_fails_naming_the_entry(text: str, message: str) -> None:
    with pytest.raises(RegisterError) as caught:
        parse_register(text)
    assert message in str(caught.value)


def test_a_signing_date_is_a_date() -> None:
    register = parse_register(entry(extra="dpa_signed_on = 2025-03-01"))
    assert str(register.subprocessors[0].dpa_signed_on) == "2025-03-01"
    with pytest.raises(RegisterError, match="dpa_signed_on"):
        parse_register(entry(extra='dpa_signed_on = "soon"'))
    assert msgspec.to_builtins(register.subprocessors[0])["dpa_signed_on"] == "2025-03-01"


# The integrations a region's settings can turn on, by the provider names the settings use
# (regions.<id>.payments, .sms, .identity). When those settings land, the test below should
# also read every provider configured in a region's settings and ask the same question.
PAYMENTS, SMS, IDENTITY = "stripe", ("sinch", "twilio"), "criipto"
USED_BY_REGION = {"eu": [PAYMENTS, "sinch", IDENTITY], "us": [PAYMENTS, "twilio"]}


def test_every_integration_has_its_register_entry_in_each_region_it_serves() -> None:
    register = load_register()
    assert set(INTEGRATIONS) == {PAYMENTS, *SMS, IDENTITY}
    for region, providers in USED_BY_REGION.items():
        for provider in providers:
            entry = integration_entry(register, provider, region)
            assert region in entry.regions and entry.personal_data and entry.dpa_signed
    # What each sends matches the entry's data categories.
    assert set(integration_entry(register, "sinch", "eu").data_categories) == {"phone"}
    assert set(integration_entry(register, "twilio", "us").data_categories) == {"phone"}
    assert {"contact", "payment"} <= set(integration_entry(register, "stripe", "us").data_categories)
    criipto = integration_entry(register, "criipto", "eu")
    assert "national_id" in criipto.data_categories and criipto.location == "eu_eea"
    assert criipto.transfer_mechanism == "none_needed"
    # A provider outside its regions, or unknown, is named.
    with pytest.raises(RegisterError, match="'criipto' has no subprocessor register entry for region 'us'"):
        integration_entry(register, "criipto", "us")
    with pytest.raises(RegisterError, match="'twilio' has no subprocessor register entry for region 'eu'"):
        integration_entry(register, "twilio", "eu")
    # An entry missing from the register is named too.
    without = msgspec.structs.replace(
        register, subprocessors=[p for p in register.subprocessors if p.name != "Criipto"]
    )
    with pytest.raises(RegisterError, match="'Criipto' is not in the register for region 'eu'"):
        integration_entry(without, "criipto", "eu")
