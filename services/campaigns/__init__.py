"""Campaigns over many shoppers: who gets what, when, on which channel (contact rules), the
outbox a campaign writes, and the audit of what it offered. Plain Python: the Ray Data job
that drives a campaign lives in jobs/."""
