"""Sans-I/O protocol engine: binding cache, binding update list, HA/MN/CN behaviour, timers.

Entry point: :class:`Engine` (``handle(event, now)``, ``next_timer()``,
``handle_timer(now)``, ``dad_result``, ``reconciled``, ``load_config``,
``restore``, ``binding_used``). Inputs and actions are in :mod:`.events`.
"""

from .binding import Binding, BindingCache, sequence_newer
from .correspondent import Correspondent, NonceTable
from .engine import Engine
from .events import (
    Action,
    AtHome,
    BindingChanged,
    CareOfAddressChanged,
    ForgetBinding,
    HomeAddressOptionReceived,
    Input,
    Malformed,
    PersistBinding,
    Received,
    Send,
    SendParameterProblem,
    StartDad,
)
from .home_agent import HomeAgent
from .mobile_node import MobileNode

__all__ = [
    "Action",
    "AtHome",
    "Binding",
    "BindingCache",
    "BindingChanged",
    "CareOfAddressChanged",
    "Correspondent",
    "Engine",
    "ForgetBinding",
    "HomeAddressOptionReceived",
    "HomeAgent",
    "Input",
    "Malformed",
    "MobileNode",
    "NonceTable",
    "PersistBinding",
    "Received",
    "Send",
    "SendParameterProblem",
    "StartDad",
    "sequence_newer",
]
