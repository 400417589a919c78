"""Every event type of every installed plugin says who may read it (see inopsio.testing.conformance)."""

from inopsio.testing.conformance import (  # noqa: F401
    test_every_event_type_declares_who_may_read_it,
    test_the_catalog_says_who_may_read_each_event_type,
)
