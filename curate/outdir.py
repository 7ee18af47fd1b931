"""Build output folders: what curate may replace there, the lock, the staged swap and the repair after a kill.

    >>> from curate.outdir import staged_output
    >>> with staged_output("out/x/v1") as stage:      # doctest: +SKIP
    ...     (stage / "manifest.json").write_text("{}")

What `--out DIR` may delete (docs/contracts.md, "What --out may delete"):
- Every build folder holds a marker, `.curate-build.json` {"tool": "curate", "build_id", "created", "outputs"}:
  `outputs` are the top-level files and folders that build wrote. A rebuild replaces exactly those (and whatever
  is inside them) and keeps every other entry of the folder (notes, agreement.json, evals/ ...).
- A folder without the marker is replaced only when it is empty. A folder from before the marker existed is
  recognised by a manifest.json whose `tool.name` is "curate"; only the entries that build writes are replaced.
  Anything else: ExportError, nothing touched.
- A lock file beside the folder (`.<name>.lock`: pid, host, start time) keeps a second build out while one
  writes; the second fails naming the holder. A lock whose pid is dead on this host is taken over.
- The new outputs are written into a staging folder beside the target (`.<name>.staging-<pid>-<token>`); the
  previous export is untouched until the stage is complete (fsynced, marker written last). The swap then moves
  each old output aside (`.<name>.old-<pid>-<token>`) and the new one in, the marker last.
- A build killed at any point is repaired by the next one (`recover`): a complete stage is swapped in (the swap
  is idempotent), an incomplete one deleted, old outputs put back if the swap never committed; /dev/shm spools
  of dead builds are removed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from curate.errors import ExportError

log = logging.getLogger(__name__)

MARKER = ".curate-build.json"
SWAP_NOTE = (
    ".curate-swap.json"  # in the old-outputs folder: which build the swap commits, what it moves aside
)
# what a build wrote before the marker existed (a legacy build folder is recognised by its manifest.json)
LEGACY_OUTPUTS = (
    "sft",
    "dpo",
    "README.md",
    "manifest.json",
    "quarantine",
    "clusters.jsonl",
    "heldout.lock",
    "negatives.jsonl",
    "report.html",
)
_HELD: dict[str, int] = {}  # lock files this process holds -> nesting depth


# ---------------------------------------------------------------- small helpers


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lexists(p: Path) -> bool:
    return os.path.lexists(p)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_files(root: Path) -> None:
    """fsync every file under `root` (none when it is missing; errors suppressed)."""
    for p in root.rglob("*"):
        if p.is_file():
            with contextlib.suppress(OSError), open(p, "rb") as fh:
                os.fsync(fh.fileno())


def _fsync_tree(root: Path) -> None:
    _fsync_files(root)
    _fsync_dir(root)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- what a folder holds of curate's


def read_marker(target: Path) -> dict[str, Any] | None:
    """The folder's marker, or None when it has none (or an unreadable one)."""
    m = _read_json(Path(target) / MARKER)
    if isinstance(m, dict) and m.get("tool") == "curate" and isinstance(m.get("outputs"), list):
        return m
    return None


def _legacy(target: Path) -> bool:
    m = _read_json(target / "manifest.json")
    return isinstance(m, dict) and isinstance(m.get("tool"), dict) and m["tool"].get("name") == "curate"


def curate_outputs(target: str | Path) -> list[str]:
    """The top-level entries of `target` that curate wrote (and a rebuild replaces); [] for a missing folder."""
    target = Path(target)
    m = read_marker(target)
    if m is not None:
        return [str(x) for x in m["outputs"] if _safe_name(x)]
    if target.is_dir() and _legacy(target):
        return [n for n in LEGACY_OUTPUTS if _lexists(target / n)]
    return []


def _safe_name(name: Any) -> bool:
    """A marker entry curate may touch: one plain name inside the folder (a tampered marker cannot reach out)."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..", MARKER)
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
    )


def check_target(target: str | Path) -> None:
    """Refuse a target curate did not make: anything but a missing folder, an empty one or a curate build."""
    target = Path(target)
    if not _lexists(target):
        return
    if not target.is_dir():
        raise ExportError(f"{target}: exists and is not a folder; choose another --out")
    if read_marker(target) is not None or _legacy(target):
        return
    if any(target.iterdir()):
        raise ExportError(
            f"{target}: exists, is not empty and is not a curate build folder (no {MARKER}); "
            "curate replaces only folders it built: choose another --out or empty it"
        )


# ---------------------------------------------------------------- the lock


def lock_path(target: str | Path) -> Path:
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def _holder(info: Any) -> str:
    if not isinstance(info, dict):
        return "an unknown process (unreadable lock file)"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}"


def _stale(info: Any) -> bool:
    if not isinstance(info, dict) or info.get("host") != socket.gethostname():
        return False
    pid = info.get("pid")
    return isinstance(pid, int) and not _pid_alive(pid)


def _acquire(target: Path) -> Path:
    path = lock_path(target)
    key = os.path.abspath(path)
    if key in _HELD:
        _HELD[key] += 1
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "tool": "curate",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": _now(),
        "target": str(target),
    }
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.write_bytes(orjson.dumps(info))
    try:
        for _ in range(5):
            try:
                os.link(tmp, path)  # creates the lock with its content at once, or fails when it exists
                break
            except FileExistsError:
                held = _read_json(path)
                if held is None and _lexists(path):  # being written by a curate without link(): look again
                    import time

                    time.sleep(0.05)
                    held = _read_json(path)
                if _stale(held):
                    log.warning("taking over the lock of a dead build (%s): %s", _holder(held), path)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    continue
                if not _lexists(path):
                    continue
                raise ExportError(
                    f"{target}: another curate build is writing this folder ({_holder(held)}); "
                    f"wait for it to finish, or delete {path} if that process is gone"
                ) from None
        else:  # pragma: no cover - five lost races in a row
            raise ExportError(f"{target}: could not take the lock {path}; try again")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _HELD[key] = 1
    return path


def _release(path: Path) -> None:
    key = os.path.abspath(path)
    _HELD[key] -= 1
    if _HELD[key] == 0:
        del _HELD[key]
        held = _read_json(path)
        if isinstance(held, dict) and held.get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


@contextlib.contextmanager
def output_lock(target: str | Path) -> Iterator[Path]:
    """Hold `target`'s lock for the block (re-entrant in one process); ExportError names the holder when another
    live process has it. A build should hold it from the start, so a second build fails before doing work."""
    path = _acquire(Path(target))
    try:
        yield path
    finally:
        _release(path)


class OutputLock:
    """`target`'s lock held from construction to `close()`, for a build to take before it computes anything:
    a second build fails at once naming the holder, leftovers of killed builds are repaired, and a folder curate
    did not make is refused before any work (staged_output takes the same lock again, re-entrantly)."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        self.path: Path | None = _acquire(self.target)
        try:
            recover(self.target)
            check_target(self.target)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.path is not None:
            _release(self.path)
            self.path = None


# ---------------------------------------------------------------- leftovers of killed builds


def _leftovers(target: Path, kind: str) -> list[tuple[Path, int, str]]:
    """(path, pid, token) of `.<name>.<kind>-<pid>-<token>` folders beside the target."""
    out = []
    for p in target.parent.glob(f".{target.name}.{kind}-*"):
        rest = p.name[len(f".{target.name}.{kind}-") :]
        pid_s, _, token = rest.partition("-")
        if pid_s.isdigit():
            out.append((p, int(pid_s), token))
    return out


def clean_dead_spools() -> None:
    """Remove /dev/shm spool folders (export.Spool) of builds that are no longer running."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        return
    for old in shm.glob("curate-spool-*-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def recover(target: str | Path) -> None:
    """Repair what killed builds left beside `target` (see the module doc). Call it holding the lock."""
    target = Path(target)
    stages = {(pid, tok): p for p, pid, tok in _leftovers(target, "staging") if not _pid_alive(pid)}
    olds = {(pid, tok): p for p, pid, tok in _leftovers(target, "old") if not _pid_alive(pid)}
    for key, stage in sorted(stages.items(), key=lambda kv: kv[1].stat().st_mtime if kv[1].exists() else 0):
        new = read_marker(stage)
        if new is not None:  # complete: finish its swap
            old = olds.pop(key, None) or stage.with_name(stage.name.replace(".staging-", ".old-", 1))
            log.warning("finishing the swap of a build killed after its stage was complete: %s", stage)
            _swap(target, stage, old, new)
        else:
            shutil.rmtree(stage, ignore_errors=True)
    for old in olds.values():
        note = _read_json(old / SWAP_NOTE)
        if not isinstance(note, dict):  # the whole previous export, moved aside by an older curate
            if not _lexists(target):
                os.rename(old, target)
                continue
        elif read_marker(target) is None or read_marker(target).get("build_id") != note.get("build_id"):
            # the swap never committed: put the old outputs back where the new ones did not arrive
            target.mkdir(parents=True, exist_ok=True)
            for entry in old.iterdir():
                if entry.name != SWAP_NOTE and not _lexists(target / entry.name):
                    os.rename(entry, target / entry.name)
        shutil.rmtree(old, ignore_errors=True)
    clean_dead_spools()


# ---------------------------------------------------------------- the staged swap


def _swap(target: Path, stage: Path, old: Path, new: dict[str, Any]) -> None:
    """Move `stage`'s outputs into `target`, the outputs they replace (and the previous build's outputs the new
    one no longer writes) into `old`, the marker last; idempotent (a killed swap is finished by running it again)."""
    if not _lexists(target):
        target.mkdir(parents=True)
    previous = curate_outputs(target)
    outputs = [n for n in new["outputs"] if _safe_name(n)]
    old.mkdir(exist_ok=True)
    if not _lexists(old / SWAP_NOTE):
        _write_atomic(old / SWAP_NOTE, orjson.dumps({"build_id": new.get("build_id"), "previous": previous}))
    for name in sorted(set(previous) | set(outputs)):
        cur, src = target / name, stage / name
        if name in outputs and not _lexists(src):
            continue  # moved in already
        if _lexists(cur):
            if _lexists(old / name):
                _remove(old / name)
            os.rename(cur, old / name)
        if name in outputs:
            os.rename(src, cur)
    os.replace(stage / MARKER, target / MARKER)  # the commit point
    _fsync_dir(target)
    shutil.rmtree(stage, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_output(target: str | Path) -> Iterator[Path]:
    """Yield a fresh staging folder beside `target`; when the block succeeds, its entries replace curate's
    previous outputs in `target` (other files there are kept). Takes the lock, repairs leftovers first, refuses a
    folder curate did not make. On an error in the block the stage is deleted and `target` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target):
        recover(target)
        check_target(target)
        token = uuid.uuid4().hex[:12]
        stage = target.parent / f".{target.name}.staging-{os.getpid()}-{token}"
        stage.mkdir()
        try:
            yield stage
            outputs = sorted(p.name for p in stage.iterdir() if p.name != MARKER)
            marker = {"tool": "curate", "build_id": uuid.uuid4().hex, "created": _now(), "outputs": outputs}
            _fsync_tree(stage)
            _write_atomic(stage / MARKER, orjson.dumps(marker, option=orjson.OPT_INDENT_2) + b"\n")
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        if not _lexists(target):  # a first build: the whole folder at once
            os.rename(stage, target)
            _fsync_dir(target.parent)
            return
        _swap(target, stage, target.parent / f".{target.name}.old-{os.getpid()}-{token}", marker)
        _fsync_dir(target.parent)


__all__ = [
    "LEGACY_OUTPUTS",
    "MARKER",
    "OutputLock",
    "check_target",
    "clean_dead_spools",
    "curate_outputs",
    "lock_path",
    "output_lock",
    "read_marker",
    "recover",
    "staged_output",
]
