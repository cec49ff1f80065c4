"""A fault-injecting `tf.io.gfile`: chosen operations on chosen paths raise.

Only ever makes the filesystem behave worse than the real one: a fault raises
before the real operation runs, every other call goes to the real function.

    faults = FaultyGfile(monkeypatch)
    listing = faults.fail("listdir", path_contains="/export/", times=1)
    ...
    assert listing.hits == 1

Operations are the names of `tf.io.gfile` functions (`listdir`, `exists`,
`isdir`, `stat`, `glob`, `rename`, `rmtree`, `remove`, `makedirs`, `copy`) and
`open`, which fails `tf.io.gfile.GFile(path, mode)` when it is created. Phases
of an export are told apart by path (`saved_model.pb` is checked after an export,
`eval_result.json` read at restore) and by `skip` (let the first n calls pass).
"""

import dataclasses
from typing import Any, Callable, Dict, List, Optional

import pytest
import tensorflow as tf

OPERATIONS = (
    "listdir",
    "exists",
    "isdir",
    "stat",
    "glob",
    "rename",
    "rmtree",
    "remove",
    "makedirs",
    "copy",
    "open",
)


def unavailable(message: str = "injected: service unavailable (503)") -> Exception:
    """The error of a GCS 503, as TensorFlow raises it."""
    return tf.errors.UnavailableError(None, None, message)


@dataclasses.dataclass
class Fault:
    """One injected fault.

    Attributes:
      operation: the `tf.io.gfile` function that fails.
      make_error: builds the exception to raise.
      path_contains: only paths containing this fail.
      times: how many calls fail; None for all.
      skip: how many matching calls pass before the first failure.
      hits: how many calls failed so far.
      seen: how many matching calls there were.
    """

    operation: str
    make_error: Callable[[], Exception]
    path_contains: str = ""
    times: Optional[int] = None
    skip: int = 0
    hits: int = 0
    seen: int = 0

    def should_fail(self, path: str) -> bool:
        if self.path_contains not in path:
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


class FaultyGfile:
    """Installs faults into `tf.io.gfile` for one test (undone by monkeypatch).

    Args:
      monkeypatch: the test's monkeypatch fixture.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self._monkeypatch = monkeypatch
        self._faults: Dict[str, List[Fault]] = {}

    def fail(
        self,
        operation: str,
        error: Any = None,
        path_contains: str = "",
        times: Optional[int] = None,
        skip: int = 0,
    ) -> Fault:
        """Makes `operation` raise on paths containing `path_contains`.

        Args:
          operation: one of OPERATIONS.
          error: an exception class (built as TensorFlow builds its errors) or a
            callable returning an exception; UnavailableError by default.
          path_contains: a substring of the paths that fail.
          times: how many calls fail; None for every call.
          skip: how many matching calls pass first.

        Returns:
          The fault, which counts its hits.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {OPERATIONS}")
        fault = Fault(operation, _error_factory(error), path_contains, times, skip)
        if operation not in self._faults:
            self._faults[operation] = []
            self._install(operation)
        self._faults[operation].append(fault)
        return fault

    def clear(self) -> None:
        """Lets every operation succeed again (the wrappers stay, doing nothing)."""
        for faults in self._faults.values():
            faults.clear()

    def _raise_if_failing(self, operation: str, path: Any) -> None:
        text = tf.compat.as_str_any(path)
        for fault in self._faults[operation]:
            if fault.should_fail(text):
                raise fault.make_error()

    def _install(self, operation: str) -> None:
        if operation == "open":
            real_gfile = tf.io.gfile.GFile

            def gfile(name, mode="r"):
                self._raise_if_failing("open", name)
                return real_gfile(name, mode)

            self._monkeypatch.setattr(tf.io.gfile, "GFile", gfile)
            return
        real = getattr(tf.io.gfile, operation)

        def wrapper(path, *args, **kwargs):
            self._raise_if_failing(operation, path)
            return real(path, *args, **kwargs)

        self._monkeypatch.setattr(tf.io.gfile, operation, wrapper)


def _error_factory(error: Any) -> Callable[[], Exception]:
    if error is None:
        return unavailable
    if isinstance(error, type) and issubclass(error, tf.errors.OpError):
        return lambda: error(None, None, f"injected {error.__name__}")
    if isinstance(error, type) and issubclass(error, BaseException):
        return lambda: error(f"injected {error.__name__}")
    if isinstance(error, BaseException):
        raise TypeError("pass an exception class or a factory, so each call raises afresh")
    return error
