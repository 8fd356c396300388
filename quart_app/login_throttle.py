"""Login throttling: failed guesses counted in Redis, shared by every web process.

Three fixed-window counters (``LOGIN_WINDOW`` seconds from a counter's first attempt):

- per (username, client address): ``LOGIN_MAX_ATTEMPTS``;
- per username from any address: ``LOGIN_MAX_ATTEMPTS_PER_USERNAME`` (one account
  guessed from many addresses);
- per address for any username: ``LOGIN_MAX_ATTEMPTS_PER_ADDRESS`` (one password
  sprayed over many accounts).

An attempt is **reserved before the password is checked** (one Lua script: refuse if
any counter is full, else count the attempt in all three), so parallel guesses can
never all pass a check that reads a count before the slow hash.  A successful login
clears its (username, address) counter and gives its reservation back to the other
two (a right password is not a guess; the shared counters keep every failure).  A
full counter answers 429 ``too_many_attempts`` with ``retry_after`` (seconds until
that counter expires) and ``Retry-After``.

Redis unreachable: logins fail closed (503 ``unavailable``) - the limit is a security
control - and ``reeltrack_redis_connection_failures_total{process="web",
operation="login_throttle"}`` counts it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from quart import request
from redis.exceptions import RedisError

from quart_app.core import metrics
from quart_app.core.accounts import normalise_username
from quart_app.core.config import Config
from quart_app.errors import ApiError, try_later
from quart_app.services import REDIS_KEY_PREFIX, services

#: KEYS: the counters; ARGV: window seconds, then one limit per key.
#: Returns 0 when the attempt was counted, else the seconds until a full counter frees.
_RESERVE = """
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then ttl = tonumber(ARGV[1]) end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[1], 'NX')
end
return 0
"""
#: KEYS[1] is deleted; every other key gives one attempt back (never below 0)
_RELEASE = """
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 0
"""
#: every key gives one attempt back (an attempt that was never checked)
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""


def client_address() -> str:
    """The peer address of the request (behind a proxy: configure the proxy's
    forwarding in the ASGI server so this is the real client)."""
    return request.remote_addr or "unknown"


def _key(kind: str, *parts: str) -> str:
    # hashed: usernames are user input; keys stay short and printable
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
    return f"{REDIS_KEY_PREFIX}login-fail:{kind}:{digest}"


@dataclass(frozen=True)
class Attempt:
    """One reserved login attempt (its counters' keys: pair, username, address)."""

    keys: tuple[str, str, str]


def _unavailable() -> ApiError:
    metrics.redis_failure("web", "login_throttle")
    return ApiError(503, "unavailable", "login is temporarily unavailable")


class LoginThrottle:
    def __init__(self, config: Config) -> None:
        self.config = config

    def _keys(self, username: str, address: str) -> tuple[str, str, str]:
        name = normalise_username(username)
        return (_key("pair", name, address), _key("user", name), _key("addr", address))

    async def reserve(self, username: str, address: str) -> Attempt:
        """Count one attempt before checking the password.

        Raises ApiError 429 ``too_many_attempts`` (``retry_after``) when a counter is
        full, 503 ``unavailable`` when Redis cannot be reached.
        """
        keys = self._keys(username, address)
        limits = (
            self.config.login_max_attempts,
            self.config.login_max_attempts_per_username,
            self.config.login_max_attempts_per_address,
        )
        try:
            redis = services().require_redis()
            wait = int(
                await redis.eval(_RESERVE, 3, *keys, self.config.login_window, *limits)  # type: ignore[misc]
            )
        except (RedisError, OSError):
            raise _unavailable() from None
        if wait > 0:
            metrics.rate_limited("login")
            raise try_later(
                429, "too_many_attempts", f"too many failed logins; try again in {wait} s", wait
            )
        return Attempt(keys)

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: clear the pair counter, give the reservation back."""
        await self._run(_RELEASE, attempt)

    async def not_checked(self, attempt: Attempt) -> None:
        """The attempt was refused before its password was checked: give it back."""
        await self._run(_GIVE_BACK, attempt)

    async def _run(self, script: str, attempt: Attempt) -> None:
        try:
            await services().require_redis().eval(script, 3, *attempt.keys)  # type: ignore[misc]
        except (RedisError, OSError):  # the counters expire on their own
            metrics.redis_failure("web", "login_throttle")
