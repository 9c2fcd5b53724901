"""asyncio wiring of transports, engine and reconciler; control socket; persistence."""
