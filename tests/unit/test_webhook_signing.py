"""Webhook signatures the Standard Webhooks way, checked with the reference implementation (``standardwebhooks``)."""

from __future__ import annotations

import time

import pytest
import standardwebhooks

from connectors.webhook_client import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, new_secret, sign, verify

BODY = b'[{"version":1,"type":"event","id":"c:1:0","data":{}}]'


def _headers(secret: str, msg_id: str = "d-1", at: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if at is None else at
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(msg_id, stamp, BODY, secret)}


def test_reference_library_verifies_our_signatures() -> None:
    secret = new_secret()
    assert standardwebhooks.Webhook(secret).verify(BODY, _headers(secret))[0]["id"] == "c:1:0"
    plain = "a plain secret"  # not whsec_: the key is its UTF-8 bytes
    standardwebhooks.Webhook(plain.encode()).verify(BODY, _headers(plain))
    assert verify(BODY, secret, _headers(secret)) and verify(BODY, plain, _headers(plain))


def test_replays_and_tampering_are_refused() -> None:
    secret = new_secret()
    old = _headers(secret, at=int(time.time()) - 600)  # a delivery captured ten minutes ago
    with pytest.raises(standardwebhooks.WebhookVerificationError, match="too old"):
        standardwebhooks.Webhook(secret).verify(BODY, old)
    assert not verify(BODY, secret, old)
    fresh = _headers(secret)
    for bad in ({**fresh, TIMESTAMP_HEADER: str(int(time.time()) + 1)},  # re-stamped: signature no longer fits
                {**fresh, ID_HEADER: "d-2"}):
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(secret).verify(BODY, bad)
        assert not verify(BODY, secret, bad)
    assert not verify(BODY + b" ", secret, fresh) and not verify(BODY, new_secret(), fresh)
