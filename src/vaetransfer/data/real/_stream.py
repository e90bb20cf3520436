"""Reading exact byte counts from decompressing streams (gzip members, zip members), which may
return fewer bytes than asked per call."""

from __future__ import annotations

import zipfile
import zlib
from typing import BinaryIO


def read_exactly(stream: BinaryIO, nbytes: int, what: str) -> bytes:
    """``nbytes`` bytes of ``stream``; ValueError naming ``what`` when it is corrupt or ends early
    (callers prefix the file)."""
    parts, left = [], nbytes
    while left:
        try:
            block = stream.read(left)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
            raise ValueError(f"cannot read the {what} ({type(err).__name__}: {err})") from None
        if not block:
            raise ValueError(f"the {what} is truncated: it needs {nbytes} bytes, only {nbytes - left} were there")
        parts.append(block)
        left -= len(block)
    return b"".join(parts)
