"""Output paths: checked before any work starts, written atomically, never over a source.

Every command and node that writes a file calls :func:`check_output_path` at its entry, before a
model is loaded, so a typo costs nothing; then writes through :func:`atomic_output`, so a crash or
a full disk never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
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
    cannot be created or written to. Nothing is left behind: a probe file tests the folder and is removed.
    """
    path = Path(path).expanduser()
    wanted = ", ".join(suffixes)
    if path.is_dir():
        raise InputError(f"{option} {path} is an existing folder; give a file name inside it.")
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
    if not os.access(ancestor, os.W_OK | os.X_OK) or not _can_create_in(ancestor):
        raise InputError(f"{option} {path}: the folder {ancestor} is not writable. Choose a folder you can write to.")
    return path


def _can_create_in(folder: Path) -> bool:
    """Whether a file can really be created in ``folder``: ``os.access`` says yes to root in
    /proc, /sys or a read-only mount, so a probe file is created and removed at once."""
    try:
        probe = _create_temporary(folder / ".rsedit-probe")
    except OSError:
        return False
    with contextlib.suppress(OSError):
        probe.unlink()
    return True


def _create_temporary(path: Path) -> Path:
    """A new, empty file beside ``path``, created with the mode a plain ``open(path, "w")`` gives
    (``0o666`` less the umask: the kernel applies it), not ``mkstemp``'s private ``0o600``."""
    for _ in range(100):
        name = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return name
    raise FileExistsError(f"Could not create a temporary file beside {path}: every name tried exists.")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any error the temporary file is removed and ``path`` is left as it was. The temporary name
    keeps the suffix, so writers that choose a format from the extension still work. The final file
    has the permissions ``open(path, "w")`` would give it: those of the file it replaces, else
    ``0o666`` less the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _create_temporary(path)
    try:
        yield temporary
        with contextlib.suppress(OSError):  # a file being replaced keeps its mode, as open(path, "w") keeps it
            os.chmod(temporary, os.stat(path).st_mode & 0o777)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
