"""Protocol constants of RFC 6275 §12 (and a few limits of the wire format).

One place for numbers every layer needs; stdlib only, so any package may
import it.  Times are in seconds.
"""

from __future__ import annotations

INITIAL_BINDACK_TIMEOUT = 1.0
#: §11.7.1: a first home registration waits longer, DAD runs at the HA first.
INITIAL_BINDACK_TIMEOUT_FIRSTREG = 1.5
MAX_BINDACK_TIMEOUT = 32.0
MAX_NONCE_LIFETIME = 240
MAX_TOKEN_LIFETIME = 210
MAX_RR_BINDING_LIFETIME = 420
MAX_UPDATE_RATE = 3
INITIAL_DHAAD_TIMEOUT = 3.0
DHAAD_RETRIES = 4
INITIAL_SOLICIT_TIMER = 3.0
PREFIX_ADV_TIMEOUT = 3.0
PREFIX_ADV_RETRIES = 3
#: §13 defaults for a home agent's Mobile Prefix Advertisements.
MIN_MOB_PFX_ADV_INTERVAL = 600
MAX_MOB_PFX_ADV_INTERVAL = 86400

#: Lifetime fields are 16 bits in units of 4 seconds.
LIFETIME_UNIT = 4
MAX_LIFETIME = 0xFFFF * LIFETIME_UNIT  # 262140 s

#: UMIP's defaults for the largest binding lifetime an HA grants / an MN asks.
DEFAULT_MAX_HA_BINDING_LIFETIME = MAX_LIFETIME
