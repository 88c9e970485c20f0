"""A provider simulator: fake Twilio, SendGrid and Meta Graph APIs served over real HTTP.

It runs as its own process (``manage.py run_provider_sim``) and needs no database: everything it
remembers (idempotency tokens, counters, pending callbacks) lives in memory. It calls the service's
webhooks back the way the real providers do, signed with the same secrets. docs/PROVIDER_SIMULATOR.md
describes every endpoint, fault and setting.

Only the standard library and ``cryptography`` are used, and no Django: tests and tools can start a
simulator in-process with ``Simulator(SimulatorConfig(...)).serve(...)``.
"""
