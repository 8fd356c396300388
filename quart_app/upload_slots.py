"""How many uploads one client address may stream at once (``UPLOADS_PER_ADDRESS``).

An upload holds a connection, a file being written and a slot of the server's
attention for as long as its body takes; many slow ones from one address would hold
them all.  The count lives in the web process (an upload is tied to the connection it
arrives on, so a slot can never outlive its request, even if the process dies): the cap
is per web process.  The address is the one the login throttle uses
(:func:`quart_app.login_throttle.client_address`, behind ``TRUSTED_PROXY_HOPS`` proxies
the forwarded client).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from quart import current_app

from quart_app.errors import try_later

#: what a refused upload is told to wait: slots free as uploads end, not on a clock
RETRY_AFTER_S = 5
_EXTENSION = "reeltrack.upload_slots"


class UploadSlots:
    """Uploads in flight per client address in this process."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self._in_flight: dict[str, int] = {}

    def in_flight(self, address: str) -> int:
        return self._in_flight.get(address, 0)

    @contextlib.contextmanager
    def hold(self, address: str) -> Iterator[None]:
        """Hold one of ``address``'s slots for the block.

        Raises ApiError 429 ``too_many_uploads`` (``retry_after``, ``Retry-After``) when
        the address already has ``per_address`` uploads in flight.
        """
        held = self._in_flight.get(address, 0)
        if held >= self.per_address:
            raise try_later(
                429,
                "too_many_uploads",
                f"at most {self.per_address} uploads at once from one address;"
                " try again when one has finished",
                RETRY_AFTER_S,
            )
        self._in_flight[address] = held + 1
        try:
            yield
        finally:
            left = self._in_flight[address] - 1
            if left:
                self._in_flight[address] = left
            else:
                del self._in_flight[address]


def upload_slots(per_address: int) -> UploadSlots:
    """The current app's upload slots (made on first use)."""
    slots = current_app.extensions.get(_EXTENSION)
    if slots is None:
        slots = current_app.extensions[_EXTENSION] = UploadSlots(per_address)
    assert isinstance(slots, UploadSlots)
    return slots
