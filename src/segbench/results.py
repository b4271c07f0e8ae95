"""The record schema and the results files that hold records.

A file is ``results/<benchmark>/<machine-slug>.json`` (``.quick.json`` for smoke runs): one
machine block and a list of records. It is rewritten atomically after every cell, so an
interrupted run keeps every cell it finished and never leaves a half-written file; a file that
exists but cannot be read is reported and left alone.

One writer at a time, nothing lost (:func:`update`): a run does not write the copy of the file
it read at its start. It takes the file's lock (``fcntl.flock`` on the sidecar
``<file>.lock``), re-reads the file inside the lock, upserts its own new records by key into
what the file holds now, writes atomically and lets go. Two runs writing one file (a second
benchmark started in another terminal, a cluster job array writing into one folder) therefore
both keep their records; a cell both of them ran keeps the record written last. Merging was
chosen over refusing the second run because both runs' records are wanted and a cell takes
seconds to minutes while a merge takes milliseconds: neither run waits noticeably. The lock is
advisory (it binds the writers that take it, i.e. this code), is released by the kernel when
its holder dies however it dies, and works on local file systems and on NFS (where Linux maps
``flock`` onto byte-range locks). The lock file is left in place (removing it would race with a
writer that has just opened it); ``*.json.lock`` is git-ignored.

Schema 2 declares the keys of ``Record.extra`` (``segbench.fields``): :func:`save` refuses a
record with an undeclared key or a value of another type, so a misspelt key fails where it is
written. :func:`load` reads schema 1 and 2 files; :func:`upgrade` maps an older file's records
to the current schema (no number changes, only where a value is kept), so old results still
render.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

from segbench import fields as extra_fields

SCHEMA = 2  # 2: Record.extra keys declared in segbench.fields; "parts" renamed (see upgrade)
READABLE = (1, 2)  # older files are upgraded as they are read (see upgrade)
STATUSES = ("ok", "failed", "timeout", "skipped")


class ResultsError(Exception):
    """A results file that exists but cannot be used."""


@dataclass
class Record:
    """One measured cell. Speed, footprint, fidelity and provenance side by side."""

    benchmark: str
    key: str  # identifies the cell inside its benchmark; a rerun replaces the same key
    model: str
    runtime: str
    shape: list[int]
    batch: int
    threads: int
    classes: int | None = None
    family: str = ""
    name: str = ""  # the network's name inside its family (ModelSpec.name)
    options: dict[str, Any] = field(default_factory=dict)  # ModelSpec.options (width, training)
    weights: str = "random"
    quick: bool = False
    status: str = "ok"
    reason: str = ""
    params: int | None = None
    gflops: float | None = None
    prepare_s: float | None = None
    timing: dict[str, Any] | None = None
    # timings of the model's submodules timed alone (Cell.submodules), e.g. {"encoder": {...}}
    submodules: dict[str, dict[str, Any]] = field(default_factory=dict)
    fidelity: dict[str, Any] | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    runtime_info: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # keys declared in segbench.fields
    protocol: dict[str, Any] = field(default_factory=dict)
    commit: str = ""
    packages: dict[str, str] = field(default_factory=dict)  # versions this record ran with
    date: str = ""
    elapsed_s: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def precision(self) -> str | None:
        """The precision its runtime declared (fp32 / bf16 / int8)."""
        return self.extra.get(extra_fields.PRECISION)

    @property
    def throughput(self) -> float | None:
        return self.timing["throughput"] if self.timing else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ResultsFile:
    benchmark: str
    machine: dict[str, Any]
    records: list[Record] = field(default_factory=list)
    path: Path | None = field(default=None, compare=False)  # where it was read from

    def sibling(self, benchmark: str) -> "ResultsFile | None":
        """The same machine's results of another benchmark, if that file exists."""
        if self.path is None:
            return None
        other = self.path.parent.parent / benchmark / self.path.name
        return load(other) if other.exists() else None

    def upsert(self, record: Record) -> None:
        """Add a record, replacing an earlier record of the same cell."""
        self.records = [r for r in self.records if r.key != record.key] + [record]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "benchmark": self.benchmark, "machine": self.machine,
                "records": [r.to_dict() for r in self.records]}


def results_path(out_dir: Path, benchmark: str, machine_slug: str, quick: bool) -> Path:
    suffix = ".quick.json" if quick else ".json"
    return Path(out_dir) / benchmark / f"{machine_slug}{suffix}"


def full_results_files(results_dir: Path, benchmark: str) -> list[Path]:
    """Full-run files of a benchmark, one per machine; quick smoke files are left out."""
    folder = Path(results_dir) / benchmark
    return sorted(p for p in folder.glob("*.json") if not p.name.endswith(".quick.json"))


def full_results_this_machine_first(results_dir: Path, benchmark: str, slug: str | None
                                    ) -> list["ResultsFile"]:
    """The readable full-run files of a benchmark: this machine's (``slug``) first, then the
    others newest first (by their newest record). For what does not depend on the CPU's speed
    (a configuration chosen, a Dice measured), another machine's file may answer; a caller
    that quotes it names that machine. Unreadable files are left out."""
    found = []
    for path in full_results_files(results_dir, benchmark):
        try:
            found.append(load(path, benchmark))
        except ResultsError:
            continue
    newest = sorted(found, key=lambda f: max((r.date for r in f.records), default=""),
                    reverse=True)
    return sorted(newest, key=lambda f: f.path is None or f.path.stem != slug)


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A results file's data in the current schema; no value changes, only where it is kept.

    Schema 1 -> 2: the extra keys became declared (none renamed), and ``parts`` means one
    thing: a record's ``parts`` (submodules timed alone) is now ``submodules``, a peer
    record's ``parts`` (the tool's logged stages) is now ``extra["tool_stages"]``, and the
    champion row's ``parts`` flag (``extra["row"]``) is now ``breakdown``; own_model's model
    folder facts are nested under ``extra["nnunet_model"]``."""
    schema = data.get("schema")
    if schema not in READABLE:
        raise ResultsError(f"results schema {schema!r}, this code reads "
                           f"{', '.join(map(str, READABLE))}")
    if schema == 1:
        data = {**data, "records": [_record_from_schema_1(r) for r in data["records"]]}
    return {**data, "schema": SCHEMA}


def _record_from_schema_1(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    parts = r.pop("parts", None) or {}
    extra = dict(r.get("extra") or {})
    if r.get("family") == "peer":  # the tool's stages from its log, never submodules
        if parts:
            extra[extra_fields.TOOL_STAGES] = parts
        parts = {}
    row = extra.get(extra_fields.ROW)
    if isinstance(row, dict) and "parts" in row:
        row = dict(row)
        row["breakdown"] = row.pop("parts")
        extra[extra_fields.ROW] = row
    if r.get("benchmark") == "own_model":  # its first run spread the model folder's facts
        extra = _nest_model_folder(extra)
    r["extra"] = extra
    r["submodules"] = parts
    return r


# the model folder's facts an own_model record of schema 1 kept at the top of extra (a cell's,
# from the model family) or under "model_folder" (a command's); schema 2 nests them as
# extra["nnunet_model"], whose "dataset" (a folder name) is not real_ct's data set
_MODEL_FOLDER_KEYS = ("model_folder", "dataset", "fold", "configuration", "trainer",
                      "architecture", "patch", "spacing_mm", "classes", "mirror_axes",
                      "normalisation")


def _nest_model_folder(extra: dict[str, Any]) -> dict[str, Any]:
    extra = dict(extra)
    folder = extra.get("model_folder")
    if isinstance(folder, dict):
        extra.pop("model_folder")
        extra.setdefault(extra_fields.NNUNET_MODEL, folder)
    elif isinstance(folder, str):
        nested = {k: extra.pop(k) for k in _MODEL_FOLDER_KEYS if k in extra}
        extra.setdefault(extra_fields.NNUNET_MODEL, nested)
    return extra


def load(path: Path, benchmark: str | None = None) -> ResultsFile:
    """Read a results file; ResultsError with a one-line reason if it is unusable.

    The schema version is checked (older readable ones are upgraded), and so is the
    benchmark when ``benchmark`` is given: a file of another benchmark (copied into the wrong
    folder) is refused, not mixed in.
    """
    try:
        data = json.loads(Path(path).read_text())
        try:
            data = upgrade(data)
        except ResultsError as exc:
            raise ResultsError(f"{path}: {exc}") from None
        if benchmark is not None and data["benchmark"] != benchmark:
            raise ResultsError(f"{path}: holds {data['benchmark']!r} results, not {benchmark!r}")
        records = [Record.from_dict(r) for r in data["records"]]
        return ResultsFile(benchmark=data["benchmark"], machine=data["machine"], records=records,
                           path=Path(path))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ResultsError(f"{path}: unreadable results file ({type(exc).__name__}: {exc})"
                           ) from exc


def load_or_new(path: Path, benchmark: str, machine: dict[str, Any]) -> ResultsFile:
    """The existing file with its records (machine block refreshed), or a new one.

    A file belongs to one machine: if the existing file was written on another CPU (vendor,
    family, model, cores or memory class differ), it is refused rather than merged, so no
    table can mix two machines.
    """
    if not Path(path).exists():
        return ResultsFile(benchmark=benchmark, machine=machine)
    existing = load(path, benchmark)
    from segbench.machine import describe, fingerprint

    if fingerprint(existing.machine) != fingerprint(machine):
        raise ResultsError(f"{path} was written on another machine ({describe(existing.machine)}"
                           f"; this one is {describe(machine)}): use --out DIR to write "
                           "this machine's results elsewhere")
    return ResultsFile(benchmark=benchmark, machine=machine, records=existing.records)


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[TextIO]:
    """A text handle whose content replaces ``path`` only if the block completes.

    Readers see the old file or the new one, never a partial one; an exception (or Ctrl-C)
    leaves the old file and no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    with atomic_writer(path) as handle:
        json.dump(data, handle, indent=1, default=_jsonable)
        handle.write("\n")


def save(path: Path, results: ResultsFile) -> None:
    """Write ``results`` over ``path`` as it is (atomically). A run adds its records with
    :func:`update` instead, which merges them into the file under its lock.

    ValueError, and the file left as it was, if a record's ``extra`` has a key that
    ``segbench.fields`` does not declare or a value of another type (checked on the JSON that
    is written, so numpy scalars count as the numbers they become)."""
    text = json.dumps(results.to_dict(), indent=1, default=_jsonable) + "\n"
    for r in json.loads(text)["records"]:
        extra_fields.check(r.get("extra") or {}, where=f"{path}: record {r.get('key')!r}")
    with atomic_writer(path) as handle:
        handle.write(text)


LOCK_SUFFIX = ".lock"


def lock_path(path: Path) -> Path:
    """The sidecar file whose lock guards results file ``path``: ``<path>.lock``. The results
    file itself cannot carry the lock: an atomic write replaces it by another inode."""
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of results file ``path`` for the block (waits while another
    writer holds it; the kernel releases it when the block ends or its process dies)."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def update(path: Path, results: ResultsFile, records: Sequence[Record]) -> ResultsFile:
    """Add ``records`` to the file at ``path``, keeping what other runs wrote there meanwhile.

    Under the file's lock: re-read the file as it is now (or start a new one with
    ``results``'s benchmark and machine block), upsert ``records`` by key, write atomically.
    Returns the file as written. ResultsError if the file became unusable (it is then left
    untouched).
    """
    with locked(path):
        current = load_or_new(path, results.benchmark, results.machine)
        for record in records:
            current.upsert(record)
        save(path, current)
    current.path = Path(path)
    return current


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
