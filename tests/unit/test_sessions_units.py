"""The pure parts of sessions and login: the failed-login window and the media URL signer."""

from __future__ import annotations

import pytest

from connectors.api.media_urls import MediaUrlError, MediaUrlSigner
from connectors.api.throttle import FailureWindow, LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failure_window_slides_and_bounds_memory() -> None:
    clock = Clock()
    window = FailureWindow(60, 3, max_keys=2, clock=clock)
    for _ in range(3):
        assert window.retry_after("ann") == 0
        window.count("ann")
        clock.now += 10
    assert window.retry_after("ann") == pytest.approx(30)  # the first failure ages out at 1060
    clock.now = 1061
    assert window.retry_after("ann") == 0
    window.count("bob")
    window.count("cid")  # a third key: the least recently counted (ann) is forgotten
    assert set(window._failures) == {"bob", "cid"}


def test_a_success_forgives_the_user_not_the_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(60, per_user=2, per_address=3, clock=clock)
    throttle.attempt("ann", "a")
    throttle.attempt("ann", "a")
    assert throttle.retry_after("ann", "b") > 0  # the user is locked from any address
    throttle.attempt("bob", "a")
    throttle.succeeded("bob", "a")  # bob's attempt is forgiven on the address; ann's two stay
    assert throttle.retry_after("bob", "a") == 0
    throttle.attempt("cid", "a")
    assert throttle.retry_after("dan", "a") > 0


def test_media_urls_sign_one_key_until_they_expire() -> None:
    signer = MediaUrlSigner(600)
    signer.set_key("k")
    url = signer.url("thumbs/a b.jpg")
    path, _, query = url.partition("?")
    assert path == "/v1/media/thumbs/a%20b.jpg"
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert 600 <= signer.check("thumbs/a b.jpg", params["expires"], params["sig"]) <= 661
    with pytest.raises(MediaUrlError):
        signer.check("thumbs/other.jpg", params["expires"], params["sig"])
    with pytest.raises(MediaUrlError):
        signer.check("thumbs/a b.jpg", str(int(params["expires"]) + 1), params["sig"])
    other = MediaUrlSigner(600)
    other.set_key("another key")
    with pytest.raises(MediaUrlError):
        other.check("thumbs/a b.jpg", params["expires"], params["sig"])
    with pytest.raises(MediaUrlError, match="expired"):
        expired = MediaUrlSigner(600)
        expired.set_key("k")
        expires = "1000"
        expired.check("x", expires, expired._sign("x", 1000))
