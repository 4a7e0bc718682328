"""Waking humans: channels (Discord, Twilio SMS and calls, ntfy, email), the escalation ladder, and the
endpoints that take their answers (Discord interactions, Twilio gather, single-use answer links).

    swarm.toml ──▶ registry.CHANNELS (a factory per section) ──▶ WakeSetup ──▶ Escalator ──▶ Channel.send
                                                                                  ▲
                      Brain: a decision needs a human, or something went wrong ───┘

One module per channel (`discord`, `twilio`, `ntfy`, `email`, and `memory` for tests and the demo);
`registry` says how to add one. Import from the modules: the state engine imports `records` from
here, so this package's `__init__` imports nothing.
"""
