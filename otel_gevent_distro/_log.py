"""The distro's single logger.

Every message starts with ``otel-gevent-distro:`` so that a user reading an
application's stderr knows where it came from, even before logging is set up
(Python's last-resort handler prints the bare message).
"""

import logging

logger = logging.getLogger("otel_gevent_distro")

PREFIX = "otel-gevent-distro: "
