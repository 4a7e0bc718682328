"""Waking humans: channels (Discord, Twilio SMS and calls, ntfy, email), the escalation ladder, and the
endpoints that take their answers (Discord interactions, Twilio gather, single-use answer links)."""
