"""Deal pipelines: stages, deals on a board with optimistic concurrency, and their metrics."""
