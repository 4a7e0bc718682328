"""The brain: a persistent daemon (state engine, goals, governance, wake-up pings, kill switch for every body).

Not built yet: see the README, "Not finished".
"""
