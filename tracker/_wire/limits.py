"""Every size and count limit of tracker, defined once: the client refuses at `log()` what
the server would refuse later, so a run can never hold a record it cannot sync.

The client imports these to check values as they are logged; the server imports the same
names to check what arrives. docs/protocol.md lists them.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_RECORDS",
    "MAX_CONFIG_VALUE_BYTES",
    "MAX_EDITED_TAG_CHARS",
    "MAX_FILE_BYTES",
    "MAX_FILE_NAME_CHARS",
    "MAX_HEARTBEAT_SECONDS",
    "MAX_JSON_BYTES",
    "MAX_NAME_CHARS",
    "MAX_PAGE",
    "MAX_RECORD_BYTES",
    "MAX_ROW_KEYS",
    "MAX_RUN_KEYS",
    "MAX_STEP",
    "MAX_STREAM_PAGE",
    "MAX_TAG_CHARS",
]

MAX_STEP: Final = 2**63 - 1
"""The largest step, sequence number or integer query parameter: a signed 64-bit integer,
as databases store it."""
MAX_RECORD_BYTES: Final = 16 * 2**20
"""The largest encoded record (a row, a config change): it must fit a batch on its own."""
MAX_ROW_KEYS: Final = 10_000
"""The most keys one history row may have: each key is a series the server keeps."""
MAX_RUN_KEYS: Final = 20_000
"""The most keys one run's history may have over all its rows (twice a row's limit): each
key is a series the server keeps and the dashboard may chart."""
MAX_BATCH_BYTES: Final = MAX_RECORD_BYTES
"""The largest batch the server takes in one message or request; a client's batches
(``batch_max_bytes``) may not be larger."""
MAX_BATCH_RECORDS: Final = 100_000
"""The most records one batch may hold."""
MAX_CONFIG_VALUE_BYTES: Final = 10 * 2**20
"""The largest encoded config value, as in W&B's v0.18 reference (10 MB)."""
MAX_JSON_BYTES: Final = 2**20
"""The largest JSON request body (a handshake, a run update)."""
MAX_FILE_BYTES: Final = 512 * 2**20
"""The largest file stored with a run."""
MAX_FILE_NAME_CHARS: Final = 512
"""The longest stored file name (a relative path)."""
MAX_NAME_CHARS: Final = 128
"""The longest entity, project or run id."""
MAX_TAG_CHARS: Final = 64
"""The longest tag, as in W&B."""
MAX_EDITED_TAG_CHARS: Final = 256
"""The longest tag a run edit (``PATCH``, the dashboard) may set."""
MAX_PAGE: Final = 1000
"""The most runs one page of a runs listing holds."""
MAX_STREAM_PAGE: Final = 10_000
"""The most records one read of a run's stream returns (a day of system samples every
15 s: 5,760)."""
MAX_HEARTBEAT_SECONDS: Final = 86_400.0
"""The longest heartbeat interval a client may announce."""
