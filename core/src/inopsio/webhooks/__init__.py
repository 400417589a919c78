"""Outgoing webhooks: tenant admins subscribe URLs to event types; each matching event is POSTed there,
signed (HMAC-SHA256 over timestamp and body, the Stripe scheme), retried with backoff for a day, and
every attempt is logged. See ``docs/webhooks.md``."""
