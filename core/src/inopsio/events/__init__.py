"""Domain events: declared per plugin, published through a transactional outbox, delivered at least
once to hook handlers (idempotent by event id) and to the tenant's real-time channel."""
