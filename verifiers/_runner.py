"""What runs inside one sandboxed run once it is set up: the report, the guard, the tests.

The fork server (:mod:`._harness`) loads this file by path and never registers it in
``sys.modules``; it stays standard-library only. docs/verifiers.md ("What the sandbox defends")
gives the threat model. In short, a pass must be hard to forge by code that runs in the same
process as the tests:

- **Report lines are authenticated, not secret.** Each line is ``MAC(seq, line) line`` under a
  key only the job carried; the parent keeps a line only when its MAC verifies at the next
  sequence number. Reading or intercepting the report (``/proc/self/fd``, ``dup2`` over its
  descriptor) shows MACs of lines that cannot be changed, and nothing to write new ones with.
- **The key lives in a C hash object** held by the ``report`` closure, which only a C ``map``
  drained by a C ``deque.extend`` in the test thread refers to: no Python frame the candidate
  could walk to has it in a variable, and ``report`` never calls candidate code.
- **Candidate code runs in a second thread**, so it cannot install signal handlers (CPython
  allows them in the main thread only), whose frame argument would lead into the harness.
- **An audit hook** (its state in closures nothing refers to) refuses frame access, trace and
  profile hooks, new audit hooks, ``gc`` object walks, ``ctypes``, and the interpreter's test
  and sub-interpreter modules. CPython audits neither calls through a ctypes function pointer
  (``ctypes.memmove``) nor a fresh ``_ctypes`` made with ``importlib.util.module_from_spec``,
  so ctypes leaves ``sys.modules`` and ``_imp``'s module makers are replaced by ones that load
  only the interpreter's own extension files (no candidate-built ``.so``, no ``_ctypes``).
- **Entry points return plain values**: the tests see a fresh copy built only of built-in
  types, so an object whose ``__eq__`` always says True never reaches an assert.
"""

import _imp
import _thread
import builtins
import gc
import hashlib
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

# This module's own builtins: its functions look names up here, so a candidate that patches
# the ``builtins`` module (``builtins.AssertionError = KeyError``) does not reach the harness.
__builtins__ = dict(builtins.__dict__)  # type: ignore[assignment]

MAX_MESSAGE = 600
MAC_SIZE = 16
EFBIG = 27
CANDIDATE_FILE = "candidate.py"

_FRAME_ATTRIBUTES = ("tb_frame", "gi_frame", "cr_frame", "ag_frame")
_FRAME_CALLS = ("sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys._getframemodulename")
_REFUSED = (
    "sys.settrace",  # a trace function can jump a test past its assert
    "sys.setprofile",  # a profile function sees every frame
    "sys.addaudithook",  # a hook sees the objects of every event, the harness's included
    "gc.get_objects",  # walking the heap to the harness's state
    "gc.get_referrers",
    "gc.get_referents",
)
_HIDDEN_MODULES = (
    "ctypes",
    "_ctypes",
    "_imp",  # a second _imp module would bring back the original module makers
    "_xxsubinterpreters",  # sub-interpreters run without our audit hook
    "_xxinterpchannels",
    "_xxtestfuzz",
    "_ctypes_test",
)
"""Modules a run may not import, besides every ``_test*`` one (they reach interpreter internals)."""
_FUNCTION_STATE = ("__defaults__", "__kwdefaults__")
# The replacements of _imp's module makers: defined apart, so their __globals__ lead nowhere,
# and holding the originals in positional-only defaults that the audit hook keeps unreadable
# (a caller can only replace ``make`` by passing a function it would need to have first).
_MODULE_MAKERS = """
def create_dynamic(spec, file=None, make=None, check=None, new_spec=None, /):
    name, origin = check(spec, False)
    return make(new_spec(name=name, origin=origin))

def create_builtin(spec, make=None, check=None, new_spec=None, /):
    name, origin = check(spec, True)
    return make(new_spec(name=name, origin=origin))
"""
_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_PLAIN_NOTE = (
    "only built-in values are accepted (None, bool, int, float, complex, str, bytes and lists, "
    "tuples, dicts, sets of them)"
)


def reporter(key: bytes, fd: int) -> Callable[[str], None]:
    """``report(line)``: append ``MAC(seq, line) line`` to ``fd``; a forked copy exits instead.

    The key goes into the hash object and nowhere else; ``report`` calls only C functions on
    values of exact built-in types, so no candidate code ever runs while its frame is live.
    """
    base = hashlib.blake2b(key=key, digest_size=MAC_SIZE)
    del key
    write, getpid, exit_now, encode = os.write, os.getpid, os._exit, str.encode
    owner = getpid()
    sent = [0]

    def report(line: str) -> None:
        if getpid() != owner:
            exit_now(0)  # a fork of the candidate came back into the harness: it has no say
        data = encode(line, "utf-8", "replace")
        mac = base.copy()
        mac.update(b"%d " % sent[0])
        mac.update(data)
        sent[0] += 1
        write(fd, mac.hexdigest().encode("ascii") + b" " + data + b"\n")

    return report


def guard(
    allow: list[bool], test_thread: int, protected: tuple[object, ...]
) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook (it cannot be removed once added).

    ``allow[0]`` lets ``test_thread`` read traceback frames while the harness describes an
    error; ``protected`` functions keep their defaults unread and their attributes unchanged.
    Nothing but this hook and the harness ever sees either.
    """
    refused, hidden = frozenset(_REFUSED), frozenset(_HIDDEN_MODULES)
    frame_calls, frame_attributes = frozenset(_FRAME_CALLS), frozenset(_FRAME_ATTRIBUTES)
    function_state = frozenset(_FUNCTION_STATE)
    get_ident, type_of, plain_str = _thread.get_ident, type, str
    runtime_error, attribute_error, value_error, import_error = (
        RuntimeError,
        AttributeError,
        ValueError,
        ImportError,
    )

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in refused or event.startswith("ctypes."):
            raise runtime_error(f"{event} is not allowed in the sandbox")
        if event == "object.__getattr__":
            if args[1] in frame_attributes and not (allow[0] and get_ident() == test_thread):
                # AttributeError: code that probes with hasattr() (asyncio's reprs) carries on.
                raise attribute_error(f"{args[1]} is not available in the sandbox")
            if args[1] in function_state:
                for item in protected:  # by identity: nothing of the candidate's runs here
                    if args[0] is item:
                        raise attribute_error(f"{args[1]} is not available in the sandbox")
        elif event in ("object.__setattr__", "object.__delattr__"):
            for item in protected:
                if args[0] is item:
                    raise runtime_error("the sandbox's import functions cannot be changed")
        elif event in frame_calls:
            # ValueError is what sys._getframe raises past the stack's end: typing, enum,
            # namedtuple and logging catch it and carry on without the caller's module name.
            raise value_error(f"{event} is not allowed in the sandbox")
        elif event == "import":
            name = args[0]
            if type_of(name) is not plain_str:
                raise import_error("module names must be plain strings in the sandbox")
            if name in hidden or name.startswith("_test"):
                raise import_error(f"module {name!r} is not available in the sandbox")

    return hook


def guard_module_makers(directories: tuple[str, ...]) -> tuple[object, object]:
    """Replace ``_imp.create_dynamic``/``create_builtin`` with checking ones; return them.

    An extension module loads only from a file below one of ``directories`` (the interpreter's
    own, as its ``sys.path`` named them), outside any ``site-packages`` below them, through no
    symbolic link, and never one of the hidden modules. The checked name and path are passed
    on as exact strings, so nothing can change between the check and the load.
    """
    hidden, unsafe = frozenset(_HIDDEN_MODULES), frozenset(("", ".", "..", "site-packages", "dist-packages"))
    as_str, lstat, is_link, import_error = str.__str__, os.lstat, stat.S_ISLNK, ImportError
    prefixes = tuple(directory.rstrip("/") + "/" for directory in directories)

    def check(spec: Any, builtin: bool) -> tuple[str, str | None]:
        name = as_str(spec.name)
        leaf = name.rpartition(".")[2]
        if leaf in hidden or leaf.startswith("_test"):
            raise import_error(f"module {name!r} is not available in the sandbox", name=name)
        if builtin:
            return name, None
        origin = as_str(spec.origin)
        for prefix in prefixes:
            if origin.startswith(prefix):
                path = prefix[:-1]
                for part in origin[len(prefix) :].split("/"):
                    path = f"{path}/{part}"
                    if part in unsafe or is_link(lstat(path).st_mode):
                        break
                else:
                    return name, origin
        raise import_error(
            f"{origin}: only the interpreter's own extension modules load in the sandbox", name=name
        )

    # The real builtins module (reachable anyway): extension modules import through __import__.
    namespace: dict[str, Any] = {"__builtins__": builtins}
    exec(_MODULE_MAKERS, namespace)
    dynamic, builtin = namespace["create_dynamic"], namespace["create_builtin"]
    dynamic.__defaults__ = (None, _imp.create_dynamic, check, SimpleNamespace)
    builtin.__defaults__ = (_imp.create_builtin, check, SimpleNamespace)
    _imp.create_dynamic, _imp.create_builtin = dynamic, builtin
    return dynamic, builtin


def describer(allow: list[bool]) -> Callable[[BaseException, str], str]:
    """``describe(exc, filename)``: the last traceback line, plus the line of ``filename`` it was
    raised from. Walking the traceback needs ``tb_frame``, which the guard refuses unless
    ``allow[0]``; while it is set, no candidate code can run in this thread (gc is paused, and
    only C attributes of exact types are read)."""
    traceback_of = vars(BaseException)["__traceback__"].__get__  # not a subclass's override
    same, type_of, to_str, base_error = str.__eq__, type, str, BaseException
    isenabled, disable, enable, limit = gc.isenabled, gc.disable, gc.enable, MAX_MESSAGE

    def describe(exc: BaseException, filename: str) -> str:
        try:
            text = to_str(exc)
            name = type_of(exc).__name__
            line = f"{name}: {text}" if text else f"{name}"
        except base_error:
            line = "<unprintable exception>"
        where = None
        collecting = isenabled()
        disable()
        allow[0] = True
        try:
            tb = traceback_of(exc)
            while tb is not None:
                if same(tb.tb_frame.f_code.co_filename, filename) is True:
                    where = tb.tb_lineno
                tb = tb.tb_next
        finally:
            allow[0] = False
            if collecting:
                enable()
        if where is not None:
            line += f" ({filename}, line {where})"
        return line[:limit]

    return describe


def classifier() -> Callable[[BaseException], str]:
    """``classify(exc)``: the failure reason of an exception (the parent maps unknown ones to
    ``crashed``). The classes it tests against are bound now, not looked up later."""
    is_instance, assertion, memory, os_error, efbig = isinstance, AssertionError, MemoryError, OSError, EFBIG
    attribute = getattr

    def classify(exc: BaseException) -> str:
        if is_instance(exc, assertion):
            return "wrong_answer"
        if is_instance(exc, memory):
            return "memory"
        if is_instance(exc, os_error) and attribute(exc, "errno", None) == efbig:
            return "output_limit"
        return "exception"

    return classify


def plain_values() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``wrap(function)``: ``function``, returning a fresh copy of its result built only of
    built-in types.

    Types are compared by identity (``id``), so a metaclass cannot pass for ``int``; the copy
    keeps the candidate from changing the value (from another thread) after the tests got it.
    """
    scalars = frozenset(id(kind) for kind in _PLAIN_SCALARS)
    list_id, tuple_id, dict_id, set_id, frozenset_id = map(id, (list, tuple, dict, set, frozenset))
    type_of, id_of, type_error = type, id, TypeError
    make_tuple, make_frozenset, make_set = tuple, frozenset, set

    def copy(value: Any, memo: dict[int, Any]) -> Any:
        kind = id_of(type_of(value))
        if kind in scalars:
            return value
        if id_of(value) in memo:
            return memo[id_of(value)]
        if kind == list_id:
            items: list[Any] = []
            memo[id_of(value)] = items
            for item in value:
                items.append(copy(item, memo))
            return items
        if kind == dict_id:
            mapping: dict[Any, Any] = {}
            memo[id_of(value)] = mapping
            for key, item in value.items():
                mapping[copy(key, memo)] = copy(item, memo)
            return mapping
        if kind == set_id:
            members: set[Any] = make_set()
            memo[id_of(value)] = members
            for item in value:
                members.add(copy(item, memo))
            return members
        if kind in (tuple_id, frozenset_id):
            parts = [copy(item, memo) for item in value]
            made = make_tuple(parts) if kind == tuple_id else make_frozenset(parts)
            memo[id_of(value)] = made
            return made
        raise type_error(f"the candidate returned a {type_of(value).__name__} object; {_PLAIN_NOTE}")

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        def checked(*args: Any, **kwargs: Any) -> Any:
            return copy(function(*args, **kwargs), {})

        return checked

    return wrap


def test_lines(job: dict[str, Any], go: Any, finished: Any, directories: tuple[str, ...]) -> Iterator[str]:
    """The report lines of a tests job, made in the test thread once ``go`` is released.

    ``finished`` is released when the lines end, however they end; ``directories`` are where
    extension modules may load from (see :func:`guard_module_makers`).
    """
    try:
        go.acquire()
        yield from _tests(job, directories)
    finally:
        finished.release()


def _hide_ctypes() -> None:
    """ctypes out of ``sys.modules``: importing it again is refused (the harness keeps its copy)."""
    for name in [name for name in sys.modules if name in ("ctypes", "_ctypes") or name.startswith("ctypes.")]:
        del sys.modules[name]


def _tests(job: dict[str, Any], directories: tuple[str, ...]) -> Iterator[str]:
    # Everything used after the candidate has run is bound here, before it runs: not even this
    # module's globals are looked up again.
    allow = [False]
    describe, reason, checked = describer(allow), classifier(), plain_values()
    run, next_step, clock, gettrace, getprofile = exec, next, time.perf_counter, sys.gettrace, sys.getprofile
    stop, base_error, is_callable, make_dict = StopIteration, BaseException, callable, dict
    candidate_file = CANDIDATE_FILE
    try:
        code = compile(job["code"], CANDIDATE_FILE, "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as e:
        yield f"syntax {describe(e, CANDIDATE_FILE)!r}"
        return
    try:
        tests = compile(job["tests"], "tests.py", "exec")
    except BaseException as e:
        yield f"testerror {describe(e, 'tests.py')!r}"
        return
    pristine = dict(builtins.__dict__)
    namespace: dict[str, Any] = {"__name__": "candidate", "__builtins__": builtins}
    sys.modules["__main__"] = type(sys)("__main__")  # the harness's globals are reachable from nothing
    _hide_ctypes()
    makers = guard_module_makers(directories)
    sys.addaudithook(guard(allow, _thread.get_ident(), makers))
    gc.freeze()  # what exists now is never collected, so gc.DEBUG_SAVEALL cannot save any of it
    try:
        run(code, namespace)
    except base_error as e:
        yield f"load {reason(e)} {describe(e, candidate_file)!r}"
        return
    yield "loaded"
    # The tests get the candidate's globals minus anything that shadows a builtin, and a
    # builtins copy taken before the candidate ran, so patching builtins cannot fake a pass.
    test_ns = {
        k: v for k, v in namespace.items() if k not in pristine or (k.startswith("__") and k.endswith("__"))
    }
    test_ns["__builtins__"] = make_dict(pristine)
    test_ns["__name__"] = "tests"
    try:
        run(tests, test_ns)
        function = test_ns[job["test_function"]]
    except base_error as e:
        yield f"testerror {describe(e, 'tests.py')!r}"
        return
    entry_point, wrapped, plain = job["entry_point"], job.get("wrap"), job.get("plain_values", True)
    if entry_point is not None:
        if entry_point not in namespace:
            yield f"load exception {f'NameError: the candidate does not define {entry_point!r}'!r}"
            return
        target = namespace[entry_point]
        steps = function(checked(target) if plain else target)
    else:
        if plain and wrapped and wrapped in test_ns and is_callable(test_ns[wrapped]):
            test_ns[wrapped] = checked(test_ns[wrapped])
        steps = function()
    count = 0
    while True:
        started = clock()
        try:
            index, error = next_step(steps)
        except stop:
            break
        except base_error as e:
            yield f"abort {reason(e)} {describe(e, candidate_file)!r}"
            return
        elapsed = clock() - started
        if gettrace() is not None or getprofile() is not None:
            yield f"abort exception {'tampering: the candidate installed a trace or profile hook'!r}"
            return
        if error is None:
            yield f"end {index} ok {elapsed:.6f} ''"
        else:
            yield f"end {index} {reason(error)} {elapsed:.6f} {describe(error, candidate_file)!r}"
        count += 1
    yield f"done {count}"


def run_program(job: dict[str, Any], report: Callable[[str], None]) -> None:
    """Run the job's code as ``__main__`` and exit with its status (never returns)."""
    exit_now, describe, classify = os._exit, describer([False]), classifier()
    filename = "solution.py"
    try:
        code = compile(job["code"], filename, "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as e:
        report(f"syntax {describe(e, filename)!r}")
        exit_now(1)
    sys.argv = [filename]
    namespace = {"__name__": "__main__", "__file__": filename, "__builtins__": builtins}
    status = 0
    try:
        exec(code, namespace)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException as e:
        report(f"error {classify(e)} {describe(e, filename)!r}")
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
        status = 1
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:  # no contextlib after the candidate ran: it may have patched it
            if stream is not None:
                stream.flush()
        except BaseException:
            pass
    report(f"exit {status}")
    exit_now(status & 0xFF)
