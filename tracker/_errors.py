"""The error tree of tracker, grouped by what the caller can do about it.

    Error                   base: catch this to catch everything tracker raises
    ├── UsageError          a bad argument, value or call order: fix the call
    ├── CommError           the server cannot be reached or failed: retry later, or log offline
    └── AuthenticationError the API key is missing or refused: run `tracker login`

After `init()` returns, no network problem raises in the caller; it is retried in
the background and reported by `Run.status()` and at the end of the run.
"""

from __future__ import annotations

__all__ = ["AuthenticationError", "CommError", "Error", "UsageError"]


class Error(Exception):
    """Base class of every error tracker raises."""


class UsageError(Error, ValueError):
    """A bad argument, value or call order; the message names it and says what to do."""


class CommError(Error):
    """The server could not be reached within `init_timeout`, or answered with a server error."""


class AuthenticationError(Error):
    """The API key is missing or refused; run `tracker login` or set TRACKER_API_KEY."""
