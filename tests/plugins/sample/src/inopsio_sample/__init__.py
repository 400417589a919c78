"""A test plugin: notes per tenant, used by the kernel's tests, the conformance suite and the benchmark."""

__version__ = "0.1.0"
