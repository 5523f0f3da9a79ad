"""Signed internal calls: HMAC over method, path with query, body hash, timestamp,
nonce and signer; accepted only inside the replay window and only once per nonce."""

from __future__ import annotations

import pytest

from konsil.platform.core.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    TIMESTAMP_HEADER,
    NonceCache,
    SignatureError,
    Verifier,
    sign,
)

SECRET = "control-to-eu-secret-0123456789"
OTHER_SECRET = "control-to-us-secret-9876543210"
NOW = 1_900_000_000.0
WINDOW = 60
PATH = "/internal/v1/orgs/praxis-nord/members?role=expert&limit=10"
BODY = b'{"email_hash": "ab12", "name": "Dr. Example"}'


@pytest.fixture
def verifier() -> Verifier:
    return Verifier({"control": SECRET, "auditor": OTHER_SECRET}, window_seconds=WINDOW)


def signed(method: str = "POST", path: str = PATH, body: bytes = BODY, now: float = NOW) -> dict[str, str]:
    return sign(SECRET, method, path, body, "control", now=now)


def test_round_trip(verifier: Verifier) -> None:
    headers = signed()
    assert set(headers) == {SIGNATURE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNER_HEADER}
    assert headers[TIMESTAMP_HEADER] == str(int(NOW))
    assert verifier.verify("POST", PATH, BODY, headers, now=NOW + 5) == "control"


def test_round_trip_with_an_empty_body_and_the_real_clock(verifier: Verifier) -> None:
    headers = sign(SECRET, "GET", "/internal/v1/health", b"", "control")
    assert verifier.verify("GET", "/internal/v1/health", b"", headers) == "control"


def test_every_signature_has_a_fresh_nonce() -> None:
    nonces = {signed()[NONCE_HEADER] for _ in range(50)}
    assert len(nonces) == 50


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", PATH, BODY + b" ", id="body"),
        pytest.param("POST", PATH, b"", id="empty-body"),
        pytest.param("PUT", PATH, BODY, id="method"),
        pytest.param("POST", PATH.replace("praxis-nord", "praxis-sued"), BODY, id="path"),
        pytest.param("POST", PATH.replace("role=expert", "role=owner"), BODY, id="query-value"),
        pytest.param("POST", PATH + "&admin=1", BODY, id="query-added"),
        pytest.param("POST", PATH.split("?")[0], BODY, id="query-dropped"),
    ],
)
def test_tampered_request_is_refused(verifier: Verifier, method: str, path: str, body: bytes) -> None:
    headers = signed()
    with pytest.raises(SignatureError, match="bad signature"):
        verifier.verify(method, path, body, headers, now=NOW)
    # The refused attempt did not burn the nonce: the genuine request still goes through.
    assert verifier.verify("POST", PATH, BODY, headers, now=NOW) == "control"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        pytest.param(SIGNATURE_HEADER, "0" * 64, id="signature"),
        pytest.param(NONCE_HEADER, "f" * 32, id="nonce"),
        pytest.param(TIMESTAMP_HEADER, str(int(NOW) + 1), id="timestamp"),
        pytest.param(SIGNER_HEADER, "auditor", id="signer-with-other-secret"),
    ],
)
def test_tampered_header_is_refused(verifier: Verifier, header: str, value: str) -> None:
    headers = signed() | {header: value}
    with pytest.raises(SignatureError, match="bad signature"):
        verifier.verify("POST", PATH, BODY, headers, now=NOW)


def test_wrong_secret_is_refused(verifier: Verifier) -> None:
    headers = sign("not-the-shared-secret-000000", "POST", PATH, BODY, "control", now=NOW)
    with pytest.raises(SignatureError, match="bad signature"):
        verifier.verify("POST", PATH, BODY, headers, now=NOW)


@pytest.mark.parametrize("offset", [-(WINDOW + 1), -3600, WINDOW + 1, 3600])
def test_timestamp_outside_the_window_is_refused(verifier: Verifier, offset: int) -> None:
    headers = signed(now=NOW + offset)
    with pytest.raises(SignatureError, match="replay window"):
        verifier.verify("POST", PATH, BODY, headers, now=NOW)


@pytest.mark.parametrize("offset", [-WINDOW, WINDOW])
def test_timestamp_at_the_edge_of_the_window_is_accepted(verifier: Verifier, offset: int) -> None:
    headers = signed(now=NOW + offset)
    assert verifier.verify("POST", PATH, BODY, headers, now=NOW) == "control"


@pytest.mark.parametrize("timestamp", ["", "soon", "-5", "1.9e9"])
def test_malformed_timestamp_is_refused(verifier: Verifier, timestamp: str) -> None:
    headers = signed() | {TIMESTAMP_HEADER: timestamp}
    with pytest.raises(SignatureError, match="replay window"):
        verifier.verify("POST", PATH, BODY, headers, now=NOW)


def test_replayed_nonce_is_refused(verifier: Verifier) -> None:
    headers = signed()
    assert verifier.verify("POST", PATH, BODY, headers, now=NOW) == "control"
    with pytest.raises(SignatureError, match="replayed"):
        verifier.verify("POST", PATH, BODY, headers, now=NOW + 1)
    with pytest.raises(SignatureError, match="replayed"):
        verifier.verify("POST", PATH, BODY, headers, now=NOW + WINDOW)


def test_unknown_signer_is_refused(verifier: Verifier) -> None:
    headers = sign(SECRET, "POST", PATH, BODY, "intruder", now=NOW)
    with pytest.raises(SignatureError, match="unknown signer"):
        verifier.verify("POST", PATH, BODY, headers, now=NOW)
    headers = signed()
    del headers[SIGNER_HEADER]
    with pytest.raises(SignatureError, match="unknown signer"):
        verifier.verify("POST", PATH, BODY, headers, now=NOW)


@pytest.mark.parametrize("signature", [None, ""])
def test_missing_signature_is_refused(verifier: Verifier, signature: str | None) -> None:
    headers = signed()
    if signature is None:
        del headers[SIGNATURE_HEADER]
    else:
        headers[SIGNATURE_HEADER] = signature
    with pytest.raises(SignatureError, match="not signed"):
        verifier.verify("POST", PATH, BODY, headers, now=NOW)
    with pytest.raises(SignatureError, match="not signed"):
        verifier.verify("POST", PATH, BODY, {}, now=NOW)


@pytest.mark.parametrize("nonce", [None, "", "abc", "x" * 65])
def test_missing_or_malformed_nonce_is_refused(verifier: Verifier, nonce: str | None) -> None:
    headers = signed()
    if nonce is None:
        del headers[NONCE_HEADER]
    else:
        headers[NONCE_HEADER] = nonce
    with pytest.raises(SignatureError, match="nonce"):
        verifier.verify("POST", PATH, BODY, headers, now=NOW)


def test_errors_name_no_secret(verifier: Verifier) -> None:
    headers = sign(OTHER_SECRET, "POST", PATH, BODY, "control", now=NOW)
    with pytest.raises(SignatureError) as caught:
        verifier.verify("POST", PATH, BODY, headers, now=NOW)
    assert SECRET not in str(caught.value) and OTHER_SECRET not in str(caught.value)
    assert headers[SIGNATURE_HEADER] not in str(caught.value)


def test_nonce_cache_refuses_a_nonce_inside_the_window_and_forgets_it_later() -> None:
    cache = NonceCache(window_seconds=WINDOW)
    assert cache.add("n" * 32, NOW)
    assert not cache.add("n" * 32, NOW + WINDOW)
    assert cache.add("m" * 32, NOW + WINDOW)
    # Long after the window (a replayed request would already fail the timestamp check)
    # the entry is dropped, so the cache does not keep every nonce forever.
    assert cache.add("o" * 32, NOW + 10 * WINDOW)
    assert len(cache._seen) == 1
    assert cache.add("n" * 32, NOW + 10 * WINDOW + 1)


def test_nonce_cache_stays_bounded_under_a_flood_and_fails_closed() -> None:
    cache = NonceCache(window_seconds=WINDOW, max_entries=1000)
    accepted = [cache.add(f"flood-{i:08d}-padding", NOW + i / 1000) for i in range(20_000)]
    assert len(cache._seen) <= 1000
    # Full of nonces still inside the window: new calls are refused rather than an
    # old nonce evicted (which would let its request be replayed).
    assert accepted[:1000] == [True] * 1000 and not any(accepted[1000:2000])
    assert not cache.add("flood-00000000-padding", NOW + 1.5)
    # Once the old ones leave the window, calls are accepted again.
    assert cache.add("later-nonce-0000000000", NOW + 3 * WINDOW)


def test_verifier_nonce_cache_stays_bounded_under_a_flood() -> None:
    verifier = Verifier({"control": SECRET}, window_seconds=WINDOW)
    verifier.nonces.max_entries = 500
    refused = 0
    for i in range(3000):
        headers = signed(path=f"/internal/v1/ping?i={i}")
        try:
            verifier.verify("POST", f"/internal/v1/ping?i={i}", BODY, headers, now=NOW)
        except SignatureError:
            refused += 1
    assert len(verifier.nonces._seen) <= 500 and refused == 2500
