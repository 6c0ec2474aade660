"""Messaging apps: their webhooks (inbound messages and status reports) and their
APIs for replies. Parsing and signatures live here; the rules live in inbox/."""
