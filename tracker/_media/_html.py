"""`tracker.Html`: an HTML document, stored as a run file as W&B stores it."""

from __future__ import annotations

import os
from typing import Any

from tracker._errors import UsageError
from tracker._media._base import FileMedia, read_source

__all__ = ["Html"]


class Html(FileMedia):
    """HTML to log: ``run.log({"report": tracker.Html("<h1>Done</h1>")})``.

    Args:
        data: the HTML text, a file object to read it from, or the path of an ``.html``
            file.
        inject: accepted for W&B compatibility (W&B adds its style sheet); the document
            is stored as given.
        data_is_not_path: with True, a str is always HTML text, never a path.

    Raises:
        UsageError: the data is not text, a readable file object or an existing path.
    """

    _log_type = "html-file"
    _folder = "html"

    def __init__(self, data: Any, inject: bool = True, data_is_not_path: bool = False) -> None:
        self._format = "html"
        if isinstance(data, os.PathLike) or (
            isinstance(data, str)
            and not data_is_not_path
            and data.lower().endswith((".html", ".htm"))
            and os.path.isfile(data)
        ):
            self._content, _ = read_source(data, "Html")
        elif isinstance(data, str):
            self._content = data.encode("utf-8", "replace")  # a lone surrogate becomes "?"
        elif callable(getattr(data, "read", None)):
            text = data.read()
            self._content = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        else:
            raise UsageError(
                f"Html() got a {type(data).__qualname__}; pass HTML text, a file object, or "
                "the path of an .html file"
            )

    def __repr__(self) -> str:
        return f"<tracker.Html {len(self._content)} bytes>"
