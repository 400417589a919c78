"""Real time: the tenant's domain events pushed to WebSocket clients at ``/api/v1/ws``.

See :mod:`inopsio.realtime.hub` (fan-out from Redis) and :mod:`inopsio.realtime.connection` (the
per-socket protocol, catch-up and RBAC).
"""
