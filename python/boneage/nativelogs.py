"""Quiet native start-up logs: TensorFlow's, XLA's and MediaPipe's C++ lines on stderr.

TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` for its own log lines, but in 2.19 XLA's CUDA
plugins log through absl while TensorFlow's shared library is being loaded, before anything
has read a setting: ``Unable to register cuDNN factory``, ``computation placer already
registered`` and absl's ``All log messages before absl::InitializeLog() is called are written
to STDERR`` appear whatever the variable says (tensorflow/tensorflow#100442). MediaPipe logs
through absl the same way when its graph first runs. No variable reaches those lines, so the
few places that load these libraries run with file descriptor 2 captured
(:func:`filtered_stderr`), and afterwards everything they wrote is written back except the
native log lines below the level the usual variable asks for: ``TF_CPP_MIN_LOG_LEVEL`` for
TensorFlow (and jax's XLA), ``GLOG_minloglevel`` for MediaPipe. Levels are TensorFlow's: 0
shows everything, 1 hides INFO, 2 also WARNING, 3 also ERROR; FATAL lines always show.

:func:`quiet` is what every command calls first: it sets both variables to 3 unless the user
has set them (a user's value wins: ``TF_CPP_MIN_LOG_LEVEL=0`` shows every line again) and
makes the first import of TensorFlow, jax or MediaPipe run under the filter, wherever in the
package it happens. Nothing is hidden from a program that uses the library without calling
:func:`quiet` and sets neither variable, and no device is hidden from anyone: the lines go,
the GPUs stay.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

TF_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
GLOG_LEVEL = "GLOG_minloglevel"

#: The top-level packages whose import loads native code that logs before reading a level,
#: and the variable that sets the level for it.
LOUD_IMPORTS = {"tensorflow": TF_LEVEL, "jax": TF_LEVEL, "mediapipe": GLOG_LEVEL}

_SEVERITY = {"I": 0, "INFO": 0, "W": 1, "WARNING": 1, "E": 2, "ERROR": 2, "F": 3, "FATAL": 3}

# absl:   E0000 00:00:1796483069.305173   17125 cuda_dnn.cc:8579] Unable to register ...
# TSL:    2026-12-05 15:06:35.296303: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] ...
# plain:  WARNING: All log messages before absl::InitializeLog() is called ... (absl, TFLite)
_NATIVE_LINE = (
    re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] "),
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) [^ \]]+:\d+\] "),
    re.compile(r"^(INFO|WARNING|ERROR): (?:All log messages before absl::|Created TensorFlow)"),
)


def quiet() -> None:
    """Silences the native start-up lines of the libraries a command loads (see the module)."""
    os.environ.setdefault(TF_LEVEL, "3")
    os.environ.setdefault(GLOG_LEVEL, "3")
    with _LOCK:
        if not any(isinstance(f, _QuietImports) for f in sys.meta_path):
            sys.meta_path.insert(0, _QuietImports())


def min_level(variable: str) -> int:
    """The level ``variable`` asks for, 0 to 3 (0 when unset or not a number)."""
    try:
        return min(max(int(os.environ.get(variable, "0")), 0), 3)
    except ValueError:
        return 0


def is_hidden(line: str, level: int) -> bool:
    """Whether ``line`` is a native log line below ``level`` (FATAL lines never are)."""
    for pattern in _NATIVE_LINE:
        m = pattern.match(line)
        if m:
            return _SEVERITY[m.group(1)] < min(level, 3)
    return False


def keep_lines(text: str, level: int) -> str:
    """``text`` without its native log lines below ``level``.

    TensorFlow's CPU-feature notice continues on a second line without a prefix; it goes with
    its first line.
    """
    out: list[str] = []
    dropped = False
    for line in text.splitlines(keepends=True):
        if is_hidden(line, level):
            dropped = True
            continue
        if dropped and line.startswith("To enable the following instructions:"):
            continue
        dropped = False
        out.append(line)
    return "".join(out)


_LOCK = threading.Lock()
_depth = 0
_saved_fd = -1
_capture: Any = None
_capture_level = 3


@contextlib.contextmanager
def filtered_stderr(variable: str) -> Iterator[None]:
    """Runs the body with file descriptor 2 captured, then writes back what it wrote except
    the native log lines below the level ``variable`` asks for.

    Process-wide, as file descriptors are: a line another thread writes meanwhile is held
    back until the window closes, never lost. Windows may nest or overlap across threads; the
    descriptor is restored when the last one closes, under the most lenient level of those
    that were open, so that no window hides more than its own variable asks.
    """
    if not _open(min_level(variable)):
        yield
        return
    try:
        yield
    finally:
        _close()


def _open(level: int) -> bool:
    global _depth, _saved_fd, _capture, _capture_level
    with _LOCK:
        if _depth == 0:
            if level == 0:
                return False  # nothing to hide
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError, AttributeError):
                return False  # no usable stderr (closed, or replaced by a non-file): nothing to do
            capture = tempfile.TemporaryFile()
            try:
                os.dup2(capture.fileno(), 2)
            except OSError:
                os.close(saved)
                capture.close()
                return False
            _saved_fd, _capture, _capture_level = saved, capture, level
        _depth += 1
        _capture_level = min(_capture_level, level)
        return True


def _close() -> None:
    global _depth, _saved_fd, _capture
    with _LOCK:
        _depth -= 1
        if _depth > 0:
            return
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        saved, capture = _saved_fd, _capture
        _saved_fd, _capture = -1, None
        os.dup2(saved, 2)
        os.close(saved)
        try:
            capture.seek(0)
            kept = keep_lines(capture.read().decode("utf-8", "replace"), _capture_level)
        finally:
            capture.close()
        data = kept.encode("utf-8", "replace")
        with contextlib.suppress(OSError):
            while data:
                data = data[os.write(2, data) :]


class _QuietImports(importlib.abc.MetaPathFinder):
    """Makes the first import of each of :data:`LOUD_IMPORTS` run under
    :func:`filtered_stderr`; every other import passes straight through."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        variable = LOUD_IMPORTS.get(fullname)
        if variable is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is not None:

            def quiet_exec(module: ModuleType) -> None:
                with filtered_stderr(variable):
                    exec_module(module)

            # This loader instance serves this one module: its own attribute is enough.
            setattr(loader, "exec_module", quiet_exec)  # noqa: B010
        return spec
