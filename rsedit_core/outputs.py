"""Output paths: checked before any work starts, written atomically, never over a source.

Every command and node that writes a file calls :func:`check_output_path` at its entry, before a
model is loaded, so a typo costs nothing; then writes through :func:`atomic_output`, so a crash or
a full disk never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
JSON_SUFFIXES = (".json",)


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        try:
            return os.path.samefile(a, b)
        except OSError:
            return False
    return a.resolve() == b.resolve()


def check_output_path(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
    option: str = "--out",
) -> Path:
    """Refuse an output path that cannot or must not be written; returns it as a ``Path``.

    Refused: no extension or one outside ``suffixes``; the same file as any of ``inputs`` (the
    source is never overwritten); an existing folder; a parent that is a file; a folder that
    cannot be created or written to. Nothing is created here.
    """
    path = Path(path).expanduser()
    wanted = ", ".join(suffixes)
    if not path.suffix:
        raise InputError(f"{option} {path} has no file extension; name the file with one of {wanted}.")
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{option} {path}: unknown extension {path.suffix!r}; use one of {wanted}.")
    if path.is_dir():
        raise InputError(f"{option} {path} is an existing folder; give a file name inside it.")
    for source in inputs:
        if _same_file(path, Path(source)):
            raise InputError(
                f"{option} {path} is the input file {source}: RSEdit never overwrites a source. Choose another name."
            )
    ancestor = path.parent if str(path.parent) else Path(".")
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise InputError(f"{option} {path}: {ancestor} is a file, not a folder. Choose another output folder.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: the folder {ancestor} is not writable. Choose a folder you can write to.")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any error the temporary file is removed and ``path`` is left as it was. The temporary name
    keeps the suffix, so writers that choose a format from the extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
