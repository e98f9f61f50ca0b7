"""`tracker.Audio`: sound from a numpy array (stored as a WAV file) or an audio file.

Arrays become 16-bit PCM WAV with the standard library's `wave`: samples in [-1, 1]
(floats) or int16 values, one column per channel.
"""

from __future__ import annotations

import io
import os
from typing import Any, Final

from tracker._errors import UsageError
from tracker._media._base import (
    FileMedia,
    array_of,
    check_caption,
    read_source,
)

__all__ = ["Audio"]

_FILE_FORMATS: Final = frozenset({"wav", "mp3", "ogg", "flac", "m4a", "aac", "opus"})


class Audio(FileMedia):
    """Sound to log: ``run.log({"sample": tracker.Audio(wave, sample_rate=16000)})``.

    Args:
        data_or_path: samples (a numpy array or torch tensor: one value per sample, or
            one column per channel; floats in [-1, 1] or int16), or the path of an audio
            file (wav, mp3, ogg, flac, ...), stored as it is.
        sample_rate: samples a second; needed for samples.
        caption: text shown with the sound.

    Raises:
        UsageError: samples without a sample rate, another type or shape, or a file that
            cannot be read.
    """

    _log_type = "audio-file"
    _folder = "audio"

    def __init__(
        self, data_or_path: Any, sample_rate: int | None = None, caption: str | None = None
    ) -> None:
        self.caption = check_caption(caption, "Audio")
        self.sample_rate = sample_rate
        if isinstance(data_or_path, (str, os.PathLike)):
            self._content, self._format = read_source(data_or_path, "Audio")
            if self._format not in _FILE_FORMATS:
                raise UsageError(
                    f"Audio({str(data_or_path)!r}): {self._format or 'no extension'} is not an "
                    f"audio format; use one of {', '.join(sorted(_FILE_FORMATS))}"
                )
            return
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
            raise UsageError(
                f"Audio(sample_rate={sample_rate!r}): samples need their rate, a positive int "
                "(e.g. sample_rate=16000)"
            )
        samples = array_of(
            data_or_path, "Audio", "samples as a numpy array, or the path of an audio file"
        )
        self._format = "wav"
        self._content = _wav(samples, sample_rate)

    def _fields(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "caption": self.caption}

    def __repr__(self) -> str:
        return f"<tracker.Audio {self._format}>"


def _wav(samples: Any, rate: int) -> bytes:
    """16-bit PCM WAV bytes of samples (N, or N x channels)."""
    import wave

    import numpy as np

    data = np.asarray(samples)
    if data.ndim == 1:
        data = data[:, np.newaxis]
    if data.ndim != 2 or data.size == 0:
        raise UsageError(
            f"Audio(): samples of shape {tuple(data.shape)} are not N or N x channels values"
        )
    if np.issubdtype(data.dtype, np.floating):
        data = np.round(np.clip(np.nan_to_num(data), -1.0, 1.0) * 32767)
    pcm = np.ascontiguousarray(np.clip(data, -32768, 32767).astype("<i2"))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(pcm.shape[1])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()
