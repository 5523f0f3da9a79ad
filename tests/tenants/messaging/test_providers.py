"""The SMS providers against local stand-ins of Sinch's and Twilio's REST APIs: each
stand-in checks the documented request (method, path, authentication, content type, body
fields) as the provider would, answers like it, and records what it saw."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import msgspec
import pytest

from konsil.platform.core.keys.local import LocalKeyring
from konsil.platform.core.keys.vault import VaultTransitProvider
from konsil.platform.core.settings import ConfigError, RegionSettings, SmsSettings
from konsil.platform.core.sms import SmsRejected, SmsUnavailable, is_e164, mask_number
from konsil.regions.container import region_sms
from konsil.tenants.messaging.providers import TIMEOUT, SinchSms, TwilioSms, build_sms_sender
from tests.conftest import KEY_CLIENT_TIMEOUT, BaoServer
from tests.tenants.messaging.stand_ins import (
    ACCOUNT,
    NUMBER,
    PLAN,
    SERVICE,
    SHORT,
    SINCH_TOKEN,
    TEXT,
    TWILIO_TOKEN,
    StandIn,
)


def sinch(stand_in: StandIn, token: str = SINCH_TOKEN, timeout: httpx.Timeout = TIMEOUT) -> SinchSms:
    return SinchSms(PLAN, "Konsil", token, base_url=stand_in.url, timeout=timeout)


def twilio(stand_in: StandIn, token: str = TWILIO_TOKEN, timeout: httpx.Timeout = TIMEOUT, **kw: str) -> TwilioSms:
    kw.setdefault("sender", "+15005550006")
    return TwilioSms(ACCOUNT, token, base_url=stand_in.url, timeout=timeout, **kw)


async def test_sinch_sends_a_batch_and_returns_its_id(serve: Any) -> None:
    stand_in = serve("sinch")
    receipt = await sinch(stand_in).send(NUMBER, TEXT, "visit-1")
    assert (receipt.provider, receipt.message_id) == ("sinch", "01FC66621XXXXX119Z8PMV1QPQ")
    [request] = stand_in.seen
    assert json.loads(request["body"]) == {"from": "Konsil", "to": [NUMBER], "body": TEXT}


async def test_twilio_sends_a_message_with_the_idempotency_token(serve: Any) -> None:
    stand_in = serve("twilio")
    receipt = await twilio(stand_in).send(NUMBER, TEXT, "visit-1")
    assert (receipt.provider, receipt.message_id) == ("twilio", "SM" + "0" * 32)
    [request] = stand_in.seen
    assert request["headers"]["I-Twilio-Idempotency-Token"] == "visit-1"
    assert parse_qs(request["body"].decode()) == {"To": [NUMBER], "Body": [TEXT], "From": ["+15005550006"]}


async def test_twilio_through_a_messaging_service(serve: Any) -> None:
    stand_in = serve("twilio")
    await twilio(stand_in, sender="", messaging_service_sid=SERVICE).send(NUMBER, TEXT, "visit-2")
    assert parse_qs(stand_in.seen[0]["body"].decode())["MessagingServiceSid"] == [SERVICE]


@pytest.mark.parametrize("kind", ["sinch", "twilio"])
async def test_wrong_credentials_are_rejected_without_naming_number_or_token(
    serve: Any, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in = serve(kind)
    wrong = "wrong-token-1234"
    sender = sinch(stand_in, token=wrong) if kind == "sinch" else twilio(stand_in, token=wrong)
    with caplog.at_level(logging.DEBUG), pytest.raises(SmsRejected) as raised:
        await sender.send(NUMBER, TEXT, "visit-3")
    assert "credentials (401)" in str(raised.value)
    told = str(raised.value) + caplog.text
    for secret in (NUMBER, NUMBER[1:], "41234567", "wrong-token-1234", SINCH_TOKEN, TWILIO_TOKEN, TEXT):
        assert secret not in told
    assert len(stand_in.seen) == 1


@pytest.mark.parametrize("kind", ["sinch", "twilio"])
@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_provider_failure_is_unavailable(serve: Any, kind: str, status: int) -> None:
    stand_in = serve(kind)
    stand_in.status = status
    sender = sinch(stand_in) if kind == "sinch" else twilio(stand_in)
    with pytest.raises(SmsUnavailable, match=f"answered {status}"):
        await sender.send(NUMBER, TEXT, "visit-4")


@pytest.mark.parametrize("kind", ["sinch", "twilio"])
async def test_a_provider_that_hangs_is_unavailable_within_the_timeout(serve: Any, kind: str) -> None:
    stand_in = serve(kind)
    stand_in.delay = 4.0
    sender = sinch(stand_in, timeout=SHORT) if kind == "sinch" else twilio(stand_in, timeout=SHORT)
    started = time.monotonic()
    with pytest.raises(SmsUnavailable, match="did not answer in time"):
        await sender.send(NUMBER, TEXT, "visit-5")
    assert time.monotonic() - started < 2.5


async def test_the_default_timeouts_are_short() -> None:
    assert (TIMEOUT.connect, TIMEOUT.read, TIMEOUT.pool) == (3.0, 10.0, 10.0)


async def test_a_provider_that_cannot_be_reached_is_unavailable(serve: Any) -> None:
    stand_in = serve("sinch")
    stand_in.url = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(SmsUnavailable, match="could not be reached"):
        await sinch(stand_in).send(NUMBER, TEXT, "visit-6")


@pytest.mark.parametrize("number", ["4741234567", "+47 412 34 567", "+4700000000", "+1555", "", "+47412345678901234"])
@pytest.mark.parametrize("kind", ["sinch", "twilio"])
async def test_an_invalid_number_is_refused_before_any_request(serve: Any, kind: str, number: str) -> None:
    stand_in = serve(kind)
    sender = sinch(stand_in) if kind == "sinch" else twilio(stand_in)
    with pytest.raises(SmsRejected, match="not a valid international number") as raised:
        await sender.send(number, TEXT, "visit-7")
    assert not number or number not in str(raised.value)
    assert stand_in.seen == []


async def test_an_empty_text_is_refused_before_any_request(serve: Any) -> None:
    stand_in = serve("twilio")
    with pytest.raises(SmsRejected, match="1 to 1000 characters"):
        await twilio(stand_in).send(NUMBER, " ", "visit-8")
    assert stand_in.seen == []


async def test_a_token_read_from_vault_once_and_its_failure_is_unavailable(serve: Any) -> None:
    stand_in = serve("sinch")
    reads: list[int] = []

    async def token() -> str:
        reads.append(1)
        return SINCH_TOKEN

    sender = SinchSms(PLAN, "Konsil", token, base_url=stand_in.url)
    await sender.send(NUMBER, TEXT, "a")
    await sender.send(NUMBER, TEXT, "b")
    assert len(reads) == 1 and len(stand_in.seen) == 2

    async def vault_down() -> str:
        raise ConnectionError("vault sealed")

    with pytest.raises(SmsUnavailable, match="credential could not be read"):
        await SinchSms(PLAN, "Konsil", vault_down, base_url=stand_in.url).send(NUMBER, TEXT, "c")


def test_numbers_are_checked_and_masked() -> None:
    assert is_e164(NUMBER) and is_e164("+12025550143")
    assert not is_e164("+4741234567 ") and not is_e164("0041234567")
    assert mask_number(NUMBER) == "+47 *** ** 567"
    assert mask_number("garbage") == "***"


# -- settings ---------------------------------------------------------------------------

REGION = {
    "id": "eu",
    "jurisdiction": "EU",
    "public_url": "http://127.0.0.1:8001",
    "listen": "127.0.0.1:8001",
    "database": "postgresql://localhost/konsil_eu",
    "internal_secret": "eu-internal-secret-5a9c1e77",
}


def region_with(sms: dict[str, str]) -> RegionSettings:
    return msgspec.convert({**REGION, "sms": sms}, RegionSettings)


@pytest.mark.parametrize(
    ("sms", "message"),
    [
        ({"provider": "sinch", "sender": "Konsil", "api_token": "t"}, "provider sinch needs service_plan_id"),
        ({"provider": "sinch", "service_plan_id": PLAN, "api_token": "t"}, "provider sinch needs sender"),
        ({"provider": "sinch", "service_plan_id": PLAN, "sender": "Konsil"}, "needs api_token or token_path"),
        (
            {"provider": "sinch", "service_plan_id": PLAN, "sender": "Konsil", "api_token": "t", "token_path": "sms"},
            "either the token or token_path",
        ),
        ({"provider": "twilio", "sender": "+15005550006", "auth_token": "t"}, "provider twilio needs account_sid"),
        ({"provider": "twilio", "account_sid": ACCOUNT, "auth_token": "t"}, "needs sender or messaging_service_sid"),
        ({"provider": "twilio", "account_sid": ACCOUNT, "sender": "+15005550006"}, "needs auth_token or token_path"),
        ({"provider": "twilio", "account_sid": "AC12", "sender": "+15005550006", "auth_token": "t"}, "account_sid"),
        ({"provider": "sinch", "service_plan_id": PLAN, "sender": "+47 4123", "api_token": "t"}, "sender must be"),
        ({"provider": "sinch", "service_plan_id": PLAN, "sender": "KonsilAlerts1", "api_token": "t"}, "sender must be"),
        ({"provider": "none", "api_token": "t"}, 'provider = "none"'),
        ({"provider": "sms77"}, "provider"),
    ],
)
def test_sms_settings_are_checked_with_clear_messages(sms: dict[str, str], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="sms") as raised:
        region_with(sms)
    assert message in str(raised.value)


def test_sms_settings_build_the_provider() -> None:
    assert region_with({}).sms == SmsSettings() and build_sms_sender(SmsSettings()) is None
    eu = region_with({"provider": "sinch", "service_plan_id": PLAN, "sender": "Konsil", "api_token": SINCH_TOKEN})
    sender = build_sms_sender(eu.sms)
    assert isinstance(sender, SinchSms) and sender.description == "sinch at https://eu.sms.api.sinch.com"
    us = region_with(
        {"provider": "twilio", "account_sid": ACCOUNT, "messaging_service_sid": SERVICE, "token_path": "sms"}
    )
    with pytest.raises(ValueError, match="no Vault reader"):
        build_sms_sender(us.sms)

    async def token() -> str:
        return TWILIO_TOKEN

    twilio_sender = build_sms_sender(us.sms, token)
    assert isinstance(twilio_sender, TwilioSms) and twilio_sender.description == "twilio at https://api.twilio.com"


async def test_the_region_reads_the_token_from_its_vault(serve: Any, bao: BaoServer, tmp_path: Path) -> None:
    stand_in = serve("twilio")
    bao.client().secrets.kv.v2.create_or_update_secret(
        path="konsil/sms", secret={"token": TWILIO_TOKEN}, mount_point="secret"
    )
    sms = {"provider": "twilio", "base_url": stand_in.url, "account_sid": ACCOUNT, "sender": "+15005550006"}
    region = region_with({**sms, "token_path": "konsil/sms"})
    vault = VaultTransitProvider(bao.url, token=bao.root_token, timeout=KEY_CLIENT_TIMEOUT)
    try:
        sender = region_sms(region, vault)
        assert sender is not None
        receipt = await sender.send(NUMBER, TEXT, "visit-9")
        assert receipt.message_id == "SM" + "0" * 32 and len(stand_in.seen) == 1
        missing = region_with({**sms, "token_path": "konsil/no-such-secret"})
        absent = region_sms(missing, vault)
        assert absent is not None
        with pytest.raises(SmsUnavailable, match="credential could not be read"):
            await absent.send(NUMBER, TEXT, "visit-10")
        assert len(stand_in.seen) == 1
    finally:
        await vault.close()
    with pytest.raises(ConfigError, match=r"regions\.eu\.sms\.token_path: needs the vault backend"):
        region_sms(region, LocalKeyring(tmp_path / "keyring"))
