"""Everything that runs on the process's "tracker-io" thread: the loop, the outbox, the writer."""
