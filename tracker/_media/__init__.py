"""Media values of `log()`: images, histograms, tables, videos, audio and HTML.

- `_base`: what every media value shares (`Media`, its files, their names);
- `_image`, `_histogram`, `_table`, `_video`, `_audio`, `_html`: the values;
- `_png`, `_gif`: the encoders that let numpy arrays be logged without Pillow or a
  video library;
- `_bind`: binding a row's media to its step, on `log()`'s exact encoding path.

Importing this package imports neither numpy, torch nor PIL: values are recognised by
their type's module, and numpy is imported when an array is encoded.
"""

from __future__ import annotations

from tracker._media._audio import Audio
from tracker._media._base import Media, MediaFile
from tracker._media._bind import MediaBinder
from tracker._media._histogram import Histogram
from tracker._media._html import Html
from tracker._media._image import Image
from tracker._media._table import Table
from tracker._media._video import Video

__all__ = [
    "Audio",
    "Histogram",
    "Html",
    "Image",
    "Media",
    "MediaBinder",
    "MediaFile",
    "Table",
    "Video",
]
