"""The SMS providers a region texts its members through, written against their published
REST APIs with httpx: Sinch (the EU region; ``POST /xms/v1/{service_plan_id}/batches``,
bearer token, JSON) and Twilio (the US region; ``POST
/2010-04-01/Accounts/{sid}/Messages.json``, HTTP Basic, form-encoded).

Both answer the core's ``SmsSender``: a 4xx is ``SmsRejected`` (never retried), a
timeout, a connection failure, a 429 or a 5xx is ``SmsUnavailable`` (retried later by
the caller). Timeouts are short (3 s to connect, 10 s in all) so that an outage holds a
background worker briefly. No error message or log line carries the number, the text or
a credential: the provider's answer body is not repeated either, since providers echo
the number in it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec

from konsil.platform.core.settings import SmsSettings
from konsil.platform.core.sms import SmsReceipt, SmsRejected, SmsSender, SmsUnavailable, mask_number, require_e164

log = logging.getLogger(__name__)

SINCH_EU = "https://eu.sms.api.sinch.com"
TWILIO_API = "https://api.twilio.com"
# Connect within 3 s, the whole exchange within 10 s.
TIMEOUT = httpx.Timeout(10.0, connect=3.0)
# The longest text sent: alerts are one short line; a provider splits longer ones and
# charges per part.
MAX_TEXT = 1000

TokenSource = Callable[[], Awaitable[str]]


class _SinchBatch(msgspec.Struct):
    id: str


class _TwilioMessage(msgspec.Struct):
    sid: str


class _HttpSms:
    """What both providers share: the token (inline or read once from Vault), the
    client, and the mapping of failures onto ``SmsRejected`` / ``SmsUnavailable``."""

    provider = ""

    def __init__(self, base_url: str, token: str | TokenSource, timeout: httpx.Timeout = TIMEOUT) -> None:
        self._base = base_url.rstrip("/")
        self._token_value = token if isinstance(token, str) else None
        self._token_source = None if isinstance(token, str) else token
        self._timeout = timeout

    @property
    def description(self) -> str:
        return f"{self.provider} at {self._base}"

    async def _token(self) -> str:
        if self._token_value is None:
            assert self._token_source is not None
            try:
                self._token_value = await self._token_source()
            except Exception as exc:
                # Vault down or the secret missing: a later try may succeed.
                reason = f"the {self.provider} credential could not be read ({type(exc).__name__})"
                raise SmsUnavailable(reason) from None
        return self._token_value

    def _check(self, to_e164: str, text: str) -> None:
        require_e164(to_e164)
        if not text.strip() or len(text) > MAX_TEXT:
            raise SmsRejected(f"the text must have 1 to {MAX_TEXT} characters")

    async def _post(self, to_e164: str, path: str, **request: Any) -> httpx.Response:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(f"{self._base}{path}", **request)
        except httpx.TimeoutException:
            log.warning("sms: %s timed out sending to %s", self.provider, mask_number(to_e164))
            raise SmsUnavailable(f"{self.provider} did not answer in time") from None
        except httpx.HTTPError as exc:
            log.warning("sms: %s unreachable (%s)", self.provider, type(exc).__name__)
            raise SmsUnavailable(f"{self.provider} could not be reached ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            log.warning("sms: %s answered %d", self.provider, status)
            raise SmsUnavailable(f"{self.provider} answered {status}; try again later")
        if status in (401, 403):
            log.error("sms: %s refused the credentials (%d)", self.provider, status)
            raise SmsRejected(f"{self.provider} refused the credentials ({status})")
        if status >= 300:
            log.warning("sms: %s refused a message to %s (%d)", self.provider, mask_number(to_e164), status)
            raise SmsRejected(f"{self.provider} refused the message ({status})")
        return response


class SinchSms(_HttpSms):
    """Sinch's SMS REST API: one batch with one recipient per message. Sinch documents no
    idempotency header, so a retry after a lost answer may send twice."""

    provider = "sinch"

    def __init__(
        self,
        service_plan_id: str,
        sender: str,
        token: str | TokenSource,
        base_url: str = SINCH_EU,
        timeout: httpx.Timeout = TIMEOUT,
    ) -> None:
        super().__init__(base_url, token, timeout)
        self.service_plan_id = service_plan_id
        self.sender = sender

    async def send(self, to_e164: str, text: str, idempotency_key: str) -> SmsReceipt:
        self._check(to_e164, text)
        token = await self._token()
        response = await self._post(
            to_e164,
            f"/xms/v1/{self.service_plan_id}/batches",
            json={"from": self.sender, "to": [to_e164], "body": text},
            headers={"Authorization": f"Bearer {token}"},
        )
        try:
            batch = msgspec.json.decode(response.content, type=_SinchBatch)
        except msgspec.DecodeError:
            raise SmsUnavailable("sinch answered without a batch id") from None
        return SmsReceipt(provider=self.provider, message_id=batch.id)


class TwilioSms(_HttpSms):
    """Twilio's Messages API, from a number or through a messaging service; every retry
    of one alert carries the same ``I-Twilio-Idempotency-Token``."""

    provider = "twilio"

    def __init__(
        self,
        account_sid: str,
        token: str | TokenSource,
        sender: str = "",
        messaging_service_sid: str = "",
        base_url: str = TWILIO_API,
        timeout: httpx.Timeout = TIMEOUT,
    ) -> None:
        if not sender and not messaging_service_sid:
            raise ValueError("twilio needs a sender or a messaging service")
        super().__init__(base_url, token, timeout)
        self.account_sid = account_sid
        self.sender = sender
        self.messaging_service_sid = messaging_service_sid

    async def send(self, to_e164: str, text: str, idempotency_key: str) -> SmsReceipt:
        self._check(to_e164, text)
        token = await self._token()
        form = {"To": to_e164, "Body": text}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            form["From"] = self.sender
        response = await self._post(
            to_e164,
            f"/2010-04-01/Accounts/{self.account_sid}/Messages.json",
            data=form,
            auth=(self.account_sid, token),
            headers={"I-Twilio-Idempotency-Token": idempotency_key},
        )
        try:
            message = msgspec.json.decode(response.content, type=_TwilioMessage)
        except msgspec.DecodeError:
            raise SmsUnavailable("twilio answered without a message sid") from None
        return SmsReceipt(provider=self.provider, message_id=message.sid)


def build_sms_sender(settings: SmsSettings, token: TokenSource | None = None) -> SmsSender | None:
    """The region's SMS provider by its ``sms`` settings (None for ``provider = "none"``);
    ``token`` reads the credential from the region's Vault when ``token_path`` names it."""
    if settings.provider == "none":
        return None
    if settings.provider == "sinch":
        sinch_token: str | TokenSource = settings.api_token or _required(token)
        return SinchSms(settings.service_plan_id, settings.sender, sinch_token, settings.base_url or SINCH_EU)
    twilio_token: str | TokenSource = settings.auth_token or _required(token)
    return TwilioSms(
        settings.account_sid,
        twilio_token,
        sender=settings.sender,
        messaging_service_sid=settings.messaging_service_sid,
        base_url=settings.base_url or TWILIO_API,
    )


def _required(token: TokenSource | None) -> TokenSource:
    if token is None:
        raise ValueError("sms.token_path is set but no Vault reader was given")
    return token
