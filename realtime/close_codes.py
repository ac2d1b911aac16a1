"""Every WebSocket close code the server sends, in one place (contract section 4).

RFC 6455's codes where one fits; the 4xxx codes mirror HTTP statuses so that a client can read
them without a table (4401 unauthorized, 4403 forbidden, 4429 too many).
"""

from __future__ import annotations

from typing import Final

CLOSE_GOING_AWAY: Final = 1001  # the server is shutting down; reconnect to another one
# Bad query parameters, or a client that stopped reading (ws_write_timeout_s): the contract's
# codes cover auth and limits; docs/SECURITY.md says why not 1011.
CLOSE_POLICY: Final = 1008
CLOSE_TOO_LARGE: Final = 1009
CLOSE_TRY_AGAIN: Final = 1013  # RFC 6455 "try again later": the credential store is unreachable
CLOSE_KICKED: Final = 4000  # an admin asked (admin.kick)
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403
CLOSE_TOO_MANY: Final = 4429
