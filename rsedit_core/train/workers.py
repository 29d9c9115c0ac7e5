"""Errors from DataLoader worker processes, told as the original error rather than torch's wrapper.

An exception inside a worker reaches the main process as ``Caught X in DataLoader worker process
N.`` followed by the worker's whole traceback, re-raised as ``X`` when ``X(text)`` can be built
and as ``RuntimeError`` otherwise. :func:`batches` iterates a loader and turns that into the
original message: our own errors (:class:`InputError` for an unreadable pair) come back as the
same class with the worker's message, anything else as a :class:`DataLoaderWorkerError` naming
the original type. A worker killed by the system (usually for memory) gets advice of its own.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterable, Iterator

from ..errors import InputError, RSEditError

logger = logging.getLogger(__name__)

_WRAPPED = re.compile(r"^Caught (?P<name>\w+) in DataLoader worker process (?P<worker>\d+)\.\s*\nOriginal ", re.S)
_DIED = re.compile(r"DataLoader worker \(pids?(?:\(s\))? [\d, ]+\) (?:is killed by signal|exited unexpectedly)[^\n]*")


class DataLoaderWorkerError(InputError):
    """A DataLoader worker process failed while it read training data."""


def _original(text: str, name: str) -> tuple[str, str]:
    """The qualified type name and message of the last (the raised) exception in a traceback."""
    found = list(re.finditer(rf"^((?:[A-Za-z_]\w*\.)*{re.escape(name)})(?:: ?(.*))?$", text, re.M))
    if not found:
        return name, text.strip().splitlines()[-1] if text.strip() else ""
    final = found[-1]
    return final.group(1), text[final.start(2) :].strip() if final.group(2) is not None else ""


def _own_class(qualified: str) -> type[RSEditError] | None:
    module, _, name = qualified.rpartition(".")
    if not module.startswith("rsedit_core"):
        return None
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return cls if isinstance(cls, type) and issubclass(cls, RSEditError) else None


def worker_error(error: BaseException) -> RSEditError | None:
    """Our error for ``error`` if it came from a DataLoader worker, else ``None``."""
    text = str(error.args[0]) if error.args else str(error)
    wrapped = _WRAPPED.match(text)
    if wrapped:
        logger.debug("DataLoader worker traceback:\n%s", text)
        qualified, message = _original(text[wrapped.end() :], wrapped.group("name"))
        where = f"data-loader worker {wrapped.group('worker')}"
        own = _own_class(qualified)
        if own is not None:
            try:
                return own(f"{message} (raised in {where})")
            except TypeError:
                pass
        return DataLoaderWorkerError(
            f"Reading the training data failed in {where}: {qualified.rpartition('.')[2]}: {message}. "
            "Check the file it names (with --skip-image-check, files are first opened during training); "
            "--dataloader-num-workers 0 reads the data in the main process and shows the full traceback."
        )
    died = _DIED.search(text)
    if died and isinstance(error, RuntimeError):
        return DataLoaderWorkerError(
            f"A data-loader worker process died ({died.group(0)}). This is most often the system running out "
            "of memory: lower --dataloader-num-workers or --train-batch-size, or give the job more RAM "
            "(shared memory in a container: docker --shm-size)."
        )
    return None


def batches(loader: Iterable) -> Iterator:
    """Iterate ``loader``; an error from one of its worker processes is raised as our own error."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as e:
            ours = worker_error(e)
            if ours is None:
                raise
            raise ours from e
        yield batch
