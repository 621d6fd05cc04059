"""What the commands share: usage errors, name lookup, output paths written atomically,
and the progress bar on stderr.

Every problem a user can fix (an unknown name, an impossible size, an unwritable path,
conflicting options) is a :class:`UsageError`: the command prints its one-line message on
stderr and exits with status 2, before computing anything and without creating a file.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TextIO

from .._validate import checked, close_matches, integer

__all__ = ["UsageError", "resolve_names", "check_positive", "OutputPath", "Progress",
           "FILE_FORMATS"]

#: Formats a file can be written in, by suffix (``--out``).
FILE_FORMATS = {
    ".html": "html", ".htm": "html", ".json": "json", ".md": "markdown",
    ".markdown": "markdown", ".txt": "table", ".png": "png", ".svg": "svg", ".pdf": "pdf",
    ".npy": "npy",
}


class UsageError(Exception):
    """A mistake in the command line: one line on stderr, exit status 2."""


def resolve_names(kind: str, given: Sequence[str], valid: Sequence[str],
                  resolve: Callable[[str], str] | None = None,
                  aliases: Iterable[str] = ()) -> list[str]:
    """Canonical names for ``given``, in order and without repeats.

    ``resolve`` (e.g. the initializer registry's) maps accepted spellings to canonical
    names; without it a name must be in ``valid`` (case-insensitive). Unknown names raise
    a :class:`UsageError` that suggests the close matches.
    """
    out: list[str] = []
    lookup = {v.lower(): v for v in valid}
    for raw in given:
        name = raw.strip()
        canonical = None
        if resolve is not None:
            try:
                canonical = resolve(name)
            except (ValueError, TypeError):
                canonical = None
        elif name.lower() in lookup:
            canonical = lookup[name.lower()]
        if canonical is None:
            pool = list(dict.fromkeys([*valid, *aliases]))
            close = close_matches(name, pool, ignore_case=True)
            if resolve is not None:  # aliases of one scheme count once, by canonical name
                close = list(dict.fromkeys(_safe(resolve, c) for c in close))
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else \
                f"; choose from {', '.join(valid)}"
            raise UsageError(f"unknown {kind} {raw!r}{hint}")
        if canonical not in out:
            out.append(canonical)
    return out


def check_positive(name: str, value: int, *, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum`` (:func:`varprop._validate.integer`), else
    a :class:`UsageError` with the check's message."""
    return checked(integer, UsageError, name, value, minimum=minimum)


def _safe(resolve: Callable[[str], str], name: str) -> str:
    try:
        return resolve(name)
    except (ValueError, TypeError):
        return name


class OutputPath:
    """A file the command will write at the very end, checked up front.

    The format comes from the suffix (:data:`FILE_FORMATS`); the directory must exist and
    be writable. :meth:`write` writes a temporary file next to the target and renames it
    over the target, so an interrupted or failed run never leaves a partial file.
    """

    def __init__(self, path: str, option: str = "--out",
                 allowed: Sequence[str] = ("html", "json", "markdown", "table", "png", "svg")):
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise UsageError(f"{option} {path!r} is a directory; give a file name")
        suffix = self.path.suffix.lower()
        fmt = FILE_FORMATS.get(suffix)
        if fmt is None or fmt not in allowed:
            suffixes = sorted(s for s, f in FILE_FORMATS.items() if f in allowed)
            raise UsageError(f"{option} {path!r}: cannot tell the file format from "
                             f"{'its suffix ' + repr(suffix) if suffix else 'a name without suffix'}"
                             f"; use one of {', '.join(suffixes)}")
        self.format = fmt
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise UsageError(f"{option} {path!r}: directory {str(parent)!r} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {path!r}: directory {str(parent)!r} is not writable")
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise UsageError(f"{option} {path!r}: the file exists and is not writable")

    def __str__(self) -> str:
        return str(self.path)

    def write_path(self, writer: Callable[[str], Any]) -> None:
        """Like :meth:`write` for a writer that takes a path (it gets a temporary one
        with the same suffix)."""
        self._replace(f".{self.path.stem}.", self.path.suffix, writer)

    def write(self, data: "str | bytes | Callable[[Any], None]") -> None:
        """Write ``data`` (text, bytes, or a function writing to a binary file object)."""
        def fill(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                if isinstance(data, str):
                    fh.write(data.encode("utf-8"))
                elif isinstance(data, bytes):
                    fh.write(data)
                else:
                    data(fh)

        self._replace(f".{self.path.name}.", ".tmp", fill)

    def _replace(self, prefix: str, suffix: str, fill: Callable[[str], Any]) -> None:
        """``fill`` a temporary file beside the target, then rename it over the target:
        the target is never half-written, and a failure leaves no temporary behind."""
        parent = self.path.parent if str(self.path.parent) else Path(".")
        tmp: str | None = None
        try:
            # a signal (SIGINT, or SIGTERM turned into an exception by the command) must
            # not land between the temporary's creation and ``tmp`` naming it
            with _signals_deferred():
                fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
            os.close(fd)
            fill(tmp)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, self.path)
            tmp = None
        except BaseException as exc:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            if isinstance(exc, OSError):
                raise UsageError(f"cannot write {str(self.path)!r}: {_os_message(exc)}") from None
            raise


def _os_message(exc: OSError) -> str:
    """The reason of an OSError without the temporary file's name."""
    return exc.strerror or str(exc) or type(exc).__name__


class _signals_deferred:
    """Hold SIGINT and SIGTERM (delivered on leaving) where the platform and thread allow."""

    _SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM") if hasattr(signal, n))

    def __enter__(self) -> None:
        self._old = None
        if hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread():
            self._old = signal.pthread_sigmask(signal.SIG_BLOCK, self._SIGNALS)

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Progress:
    """A one-line progress bar on stderr.

    It draws only when enabled (stderr is a terminal and ``--quiet`` was not given) and
    only once the run has lasted ``delay`` seconds (default 1, or the environment
    variable ``VARPROP_PROGRESS_DELAY``), so short runs print nothing; it redraws at most
    ten times a second and erases itself at the end.
    """

    def __init__(self, total: float, label: str = "", *, enabled: bool | None = None,
                 stream: TextIO | None = None, delay: float | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            enabled = _isatty(self.stream)
        self.enabled = bool(enabled)
        self.total = max(float(total), 1e-12)
        self.done = 0.0
        self.label = label
        self.delay = _default_delay() if delay is None else delay
        self.start = time.perf_counter()
        self._last = 0.0
        self._drawn = False

    def advance(self, amount: float = 1.0, label: str | None = None) -> None:
        self.done = min(self.total, self.done + amount)
        if label is not None:
            self.label = label
        self._maybe_draw()

    def set_label(self, label: str) -> None:
        self.label = label
        self._maybe_draw()

    def _maybe_draw(self) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.start < self.delay or now - self._last < 0.1:
            return
        self._last = now
        frac = self.done / self.total
        width = 28
        filled = int(round(frac * width))
        elapsed = now - self.start
        eta = "" if frac <= 0.02 else f" ~{_seconds(elapsed * (1 - frac) / frac)} left"
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {100 * frac:3.0f}%{eta}  {self.label}"
        cols = _columns()
        self.stream.write(line[: cols - 1].ljust(min(cols - 1, 100)))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * (min(_columns(), 101) - 1) + "\r")
            self.stream.flush()
            self._drawn = False


def _default_delay() -> float:
    """1 s, or the environment variable VARPROP_PROGRESS_DELAY (seconds, e.g. 0)."""
    try:
        return max(0.0, float(os.environ.get("VARPROP_PROGRESS_DELAY", "1")))
    except ValueError:
        return 1.0


def _seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    return f"{s:.0f}s" if s < 90 else f"{s / 60:.1f}min"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _columns() -> int:
    try:
        return max(40, os.get_terminal_size(sys.stderr.fileno()).columns)
    except (OSError, ValueError, AttributeError):
        return 100
