"""Per-tenant quotas and daily usage counters: one service every plugin calls to check and count."""
