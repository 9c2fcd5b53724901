"""Sans-I/O protocol engine: binding cache, binding update list, HA/MN/CN behaviour, timers."""
