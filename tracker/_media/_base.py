"""What every media value shares: the file it becomes, and the reference a row keeps.

A media value (`tracker.Image`, `Table`, `Video`, `Audio`, `Html`) is stored as a run
file under ``media/`` and the history row holds W&B's reference to it, e.g.
``{"_type": "image-file", "path": "media/images/key_STEP_HASH.png", "sha256", "size",
...}``; a `tracker.Histogram` is inline. Each value encodes itself when it is made (a
snapshot: changing the array afterwards changes nothing); `log()` binds it to a key and
a step (`MediaBinder`), and only then is its file named and written.
"""

from __future__ import annotations

import abc
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from tracker._errors import UsageError

__all__ = [
    "FileMedia",
    "Media",
    "MediaFile",
    "array_of",
    "check_caption",
    "file_reference",
    "media_key",
    "read_source",
]

_KEY_CHARS: Final = 200
"""The most characters of a key a media file name keeps (names hold 512 at most)."""


@dataclass(frozen=True)
class MediaFile:
    """A file a media value adds to the run: its stored name and its bytes."""

    name: str
    content: bytes


class Media(abc.ABC):
    """A value of `log()` that W&B stores as a file (or, for a histogram, inline).

    Subclasses encode their data when made and say, given the key and step they are
    logged at, what the row holds and which files go with it.
    """

    @abc.abstractmethod
    def _reference(self, key: str, step: int) -> tuple[dict[str, Any], list[MediaFile]]:
        """What the row holds for this value logged at ``key`` and ``step``, and the files
        to store with it."""


class FileMedia(Media):
    """A media value stored as one file: its W&B ``_type``, its folder under ``media/``,
    and the fields its reference adds (`_fields`)."""

    _log_type: ClassVar[str]
    _folder: ClassVar[str]
    _content: bytes
    _format: str
    """The file's extension."""

    def _fields(self) -> dict[str, Any]:
        """The reference's fields besides the file's (None values are left out)."""
        return {}

    def _reference(self, key: str, step: int) -> tuple[dict[str, Any], list[MediaFile]]:
        return file_reference(
            self._log_type, self._folder, key, step, self._content, self._format, **self._fields()
        )


def media_key(path: list[str | int]) -> str:
    """The key part of a media file's name: the logged key's path, ``/`` between levels
    (a ``/`` in a key makes folders too, as in W&B), each level a safe file name part."""
    parts = []
    for part in "/".join(str(level) for level in path).split("/"):
        text = "".join(c if c.isprintable() and c != "\\" else "_" for c in part)
        parts.append("_" if text in ("", ".", "..") else text)
    key = parts[0][:_KEY_CHARS]
    for part in parts[1:]:
        if len(key) + 1 + len(part) > _KEY_CHARS:
            break
        key = f"{key}/{part}"
    return key


def file_reference(
    log_type: str,
    folder: str,
    key: str,
    step: int,
    content: bytes,
    extension: str,
    **fields: Any,
) -> tuple[dict[str, Any], list[MediaFile]]:
    """The W&B reference of a file-backed value and its file, named as W&B names it:
    ``media/FOLDER/KEY_STEP_SHA256[:20].EXT``; ``fields`` that are not None are added."""
    digest = hashlib.sha256(content).hexdigest()
    name = f"media/{folder}/{key}_{step}_{digest[:20]}.{extension}"
    reference = {"_type": log_type, "path": name, "sha256": digest, "size": len(content)}
    reference.update({field: value for field, value in fields.items() if value is not None})
    return reference, [MediaFile(name, content)]


def read_source(source: str | os.PathLike[str], what: str) -> tuple[bytes, str]:
    """The bytes of a file given by path, and its extension (lowercase, without the dot).

    Raises:
        UsageError: the file does not exist or cannot be read.
    """
    path = Path(source)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what}({str(source)!r}): no such file; check the path") from None
    except OSError as exc:
        raise UsageError(f"{what}({str(source)!r}): cannot read it: {exc}") from None
    return content, path.suffix.lower().lstrip(".")


def check_caption(caption: object, what: str) -> str | None:
    """``caption`` if it is a str or None.

    Raises:
        UsageError: it is something else.
    """
    if caption is not None and not isinstance(caption, str):
        raise UsageError(f"{what}(caption={caption!r}): a caption is a str")
    return caption


def array_of(value: Any, what: str, expected: str) -> Any:
    """``value`` as a numpy array when it is one or a torch tensor (detached, on the CPU).

    Raises:
        UsageError: it is neither; the message says what ``what`` takes (``expected``).
    """
    module = type(value).__module__
    if module.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if module == "numpy" and hasattr(value, "ndim"):
        return value
    raise UsageError(f"{what}() got a {type(value).__qualname__}; pass {expected}")
