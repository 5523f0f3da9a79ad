"""A region uses only third parties the subprocessor register lists for it (P16): the
region's own SMS provider and Stripe account start; another region's provider (Twilio
for the EU region, Sinch for the US) is refused before the region starts, naming the
setting."""

from __future__ import annotations

import pytest

from konsil.platform.core.settings import ConfigError, PaymentSettings, SmsSettings
from konsil.regions.container import check_subprocessors, integrations
from tests.conftest import bare_region
from tests.tenants.messaging.stand_ins import ACCOUNT, PLAN

SINCH = SmsSettings(provider="sinch", service_plan_id=PLAN, sender="Konsil", api_token="t")
TWILIO = SmsSettings(provider="twilio", account_sid=ACCOUNT, sender="+15005550006", auth_token="t")
STRIPE = PaymentSettings(
    provider="stripe", publishable_key="pk_test_x", secret_key="sk_test_x", webhook_secret="whsec_x"
)


def test_each_region_may_use_its_own_providers() -> None:
    eu = bare_region("eu", sms=SINCH, payments=STRIPE)
    assert integrations(eu) == [("payments.provider", "stripe"), ("sms.provider", "sinch")]
    check_subprocessors(eu)
    check_subprocessors(bare_region("us", sms=TWILIO, payments=STRIPE))
    check_subprocessors(bare_region("eu"))  # none at all


@pytest.mark.parametrize(("region", "sms"), [("eu", TWILIO), ("us", SINCH)])
def test_another_regions_provider_is_refused_naming_the_setting(region: str, sms: SmsSettings) -> None:
    with pytest.raises(ConfigError) as refused:
        check_subprocessors(bare_region(region, sms=sms))
    message = str(refused.value)
    assert message.startswith(f"regions.{region}.sms.provider = '{sms.provider}'"), message
    assert "register" in message
