"""systemd's readiness protocol (Type=notify, sd_notify(3)): the daemon says when it is ready and
when it stops, so `systemctl start` returns only once the control socket answers."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> None:
    """Send `state` (READY=1, STOPPING=1) to $NOTIFY_SOCKET; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), address)
    except OSError as e:
        log.debug("sd_notify failed: %s", e)
