"""The file operations that models, checkpoints and exports share: an atomic write (of an
``.npz`` or any bytes) and a read that checks the whole archive before anything is used."""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from typing import Any, BinaryIO, Callable, Dict, Mapping

import numpy as np


def write_npz_atomic(path: str, arrays: Mapping[str, Any]) -> None:
    """Write ``arrays`` to ``path`` (no ``.npz`` appended) atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda fh: np.savez(fh, **arrays))


def write_atomic(path: str, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(fh)`` on a temporary file in ``path``'s folder, sync it and rename it to
    ``path``: an interrupted save never replaces a good file."""
    folder = os.path.dirname(os.path.abspath(path))
    # Said up front, naming path: mkstemp's errors would name the temporary file instead.
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path: the folder {folder!r} of {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"path: {path!r} is a folder, expected a file name")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would differ from an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_file(path: str) -> None:
    """Refuse, naming ``path``, what cannot be read as a file: nothing there, or a folder."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"path: {path!r} is a folder, expected a file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file: {path!r}")


def read_npz(path: str) -> Dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, read (and CRC-checked) in full, no pickles.
    Anything unreadable is a ValueError whose message says what failed."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with archive:
            return {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from e
