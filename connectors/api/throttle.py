"""Throttling of failed logins: a sliding window of failure times per key (a user name, a client address).

Pure and in memory (one table per API process; a restart forgets it). An attempt is counted *before* its
password is checked and forgiven when it succeeds, so parallel guesses cannot slip past the limit while the
hashes run."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class FailureWindow:
    """At most ``limit`` failures per key within ``window_s``; beyond, ``retry_after`` says how long to wait.

    ``max_keys`` bounds memory: the key counted least recently is forgotten first."""

    def __init__(self, window_s: float, limit: int, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.limit = limit
        self.max_keys = max_keys
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        times = self._live(key)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(times[-self.limit] + self.window_s - self._clock(), 0.0)

    def count(self, key: str) -> None:
        times = self._live(key)
        if times is None:
            while len(self._failures) >= self.max_keys:
                self._failures.pop(next(iter(self._failures)))
            times = self._failures[key] = deque()
        else:  # move to the end: the most recently counted key is forgotten last
            self._failures[key] = self._failures.pop(key)
        times.append(self._clock())

    def forgive(self, key: str) -> None:
        """Take back the latest count of ``key`` (its attempt succeeded)."""
        times = self._failures.get(key)
        if times:
            times.pop()

    def clear(self, key: str | None = None) -> None:
        """Forget ``key`` (None: every key)."""
        if key is None:
            self._failures.clear()
        else:
            self._failures.pop(key, None)

    def _live(self, key: str) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        horizon = self._clock() - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        return times


class LoginThrottle:
    """Failed logins per user name and per client address (``api.login_*`` settings)."""

    def __init__(self, window_s: float, per_user: int, per_address: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.users = FailureWindow(window_s, per_user, clock=clock)
        self.addresses = FailureWindow(window_s, per_address, clock=clock)

    def retry_after(self, username: str, address: str) -> float:
        return max(self.users.retry_after(username), self.addresses.retry_after(address))

    def attempt(self, username: str, address: str) -> None:
        """Count an attempt as failed until ``succeeded`` says otherwise."""
        self.users.count(username)
        self.addresses.count(address)

    def succeeded(self, username: str, address: str) -> None:
        """The user's earlier failures are forgotten; the address keeps them (one valid account must not
        reset an address's count of guesses at others)."""
        self.users.clear(username)
        self.addresses.forgive(address)

    def reset(self) -> None:
        self.users.clear()
        self.addresses.clear()
