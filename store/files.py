"""Where a result store lives: a local folder, or any filesystem pyarrow supports (S3, GCS, ...).

A `Location` gives the store the few operations it needs, each with the same guarantee on every
filesystem: a file appears whole under its final name or not at all.

- Local folders (and NFS mounts): write a hidden temporary name, fsync, rename.
- Object stores: the file is written locally first, then uploaded under its final name in one
  call (one PUT for small files; S3 publishes an object only once its upload completes); there is
  no rename.

Every Parquet file is sealed: the CRC-32 of its bytes goes into its final name
(`<stem>.crc32-<8 hex digits>.parquet`), and pages carry Parquet's own CRC-32 checksums. DuckDB
reads pages without checking those, and a Parquet footer has no checksum at all (a flipped bit in
it can change a value, or the statistics that let a query skip a row group), so a reader checks the
seal of each file, once per process, before any query sees the file: any change to a file's bytes
is found (CRC-32 finds every error of up to 3 bits, and all but 1 in 2^32 of the rest). Checking
costs one read of the file: CRC-32 runs at about 6.7 GB/s on the development machine.

It also keeps, per process, what the footer of each Parquet file says (its schema, or why it cannot
be read), keyed by (path, size): files are immutable, so a file is opened once per process.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from paretolab.vocabulary.errors import SHOWN_CHARS, StoreError, clipped, shown

SEALED = re.compile(r"\.crc32-([0-9a-f]{8})\.parquet$")
CHUNK_BYTES = 1 << 20


class StoreWarning(UserWarning):
    """Something in the store was skipped; `paretolab doctor` repairs it."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a table folder."""

    name: str
    path: str  # in the location's filesystem
    size: int
    mtime_s: float


class Location:
    """A store's root on some filesystem. Build one with `Location.parse(text)`."""

    def __init__(self, uri: str, fs: pafs.FileSystem, base: str):
        self.uri = uri
        self.fs = fs
        self.base = base.rstrip("/")
        self.local = isinstance(fs, pafs.LocalFileSystem)

    @classmethod
    def parse(cls, root: str | Path) -> Location:
        """A local path, or a URI such as `s3://bucket/prefix` or `gs://bucket/prefix`.

        On S3, small files are written with one PUT (`allow_delayed_open=true`, unless the URI sets it).

        Raises:
            StoreError: the URI names no filesystem pyarrow supports, or is malformed.
        """
        text = str(root)
        if "://" not in text:
            return cls(text, pafs.LocalFileSystem(), str(Path(text).absolute()))
        parts = urlsplit(text)
        query = dict(parse_qsl(parts.query))
        if parts.scheme == "s3":
            query.setdefault("allow_delayed_open", "true")
        try:
            fs, base = pafs.FileSystem.from_uri(urlunsplit(parts._replace(query=urlencode(query))))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
            reason = clipped(" ".join(str(e).split()), 2 * SHOWN_CHARS)
            raise StoreError(f"cannot open the store {shown(text)}: {reason} (give a folder, or a URI such as "
                             "s3://bucket/prefix)") from None
        return cls(text, fs, base)

    @property
    def root(self) -> Path | None:
        """The folder of a local store (None on an object store)."""
        return Path(self.base) if self.local else None

    def path(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def exists(self) -> bool:
        """Whether the store has been created (on an object store: holds any object)."""
        return self.names() is not None

    def names(self) -> list[str] | None:
        """The names in the root folder; None when there is no such folder (on an object store: no object)."""
        try:
            if self.local:
                return sorted(os.listdir(self.base)) if Path(self.base).is_dir() else None
            info = self.fs.get_file_info(pafs.FileSelector(self.base, allow_not_found=True, recursive=False))
        except OSError as e:  # the first call that reaches an object store: an endpoint down, bad credentials
            raise self.unreachable(e) from None
        return sorted(i.base_name for i in info) or None

    def unreachable(self, e: OSError) -> StoreError:
        """The error for a store that cannot be reached or read, naming the store and the fix."""
        reason = clipped(" ".join(str(e).split()), 2 * SHOWN_CHARS)  # pyarrow's messages may span lines
        if self.local:
            return StoreError(f"cannot read the store {self.uri}: {reason} (pass --store a folder you can read)")
        return StoreError(f"cannot reach the store {self.uri}: {reason} (check the endpoint, the network and the "
                          "credentials, or pass --store another folder or URI)")

    def list(self, folder: str, suffix: str = ".parquet") -> list[FileEntry]:
        """The files of `folder` whose names end with `suffix`, sorted by name."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path(folder), allow_not_found=True))
        except OSError as e:
            raise self.unreachable(e) from None
        return sorted((FileEntry(i.base_name, i.path, i.size or 0, i.mtime.timestamp() if i.mtime else 0.0)
                       for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(suffix)),
                      key=lambda e: e.name)

    def read_bytes(self, *parts: str) -> bytes | None:
        """The content of a file, or None when it does not exist."""
        try:
            with self.fs.open_input_stream(self.path(*parts)) as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self.unreachable(e) from None

    def put(self, parts: tuple[str, ...], write: Callable[[pa.NativeFile], None], seal: bool = False) -> str:
        """Create the file `parts` whole, with `write(stream)` writing its content; returns its path.

        Raises:
            StoreError: the file cannot be written; no partial file is left under its name.
        """
        def write_to(path: str) -> None:
            with pa.OSFile(path, "wb") as out:
                write(out)

        return self.put_path(parts, write_to, seal)

    def put_path(self, parts: tuple[str, ...], write_to: Callable[[str], None], seal: bool = False) -> str:
        """Create the file `parts` whole, with `write_to(path)` writing it at a temporary local path;
        returns its path. With `seal`, the file's CRC-32 goes into its name (`sealed_name`).

        Locally the temporary file (`.<name>.tmp`) is beside the final one, fsynced, renamed, and
        the folder fsynced, so the file is durable before this returns: a caller that writes one
        file after another (curves before the results that count them) has them durable in that
        order. For an object store the file is written in the system's temporary folder and goes up
        in one call once complete: an object store publishes whatever a stream held when it closes,
        so nothing is streamed to it that could be cut short by an exception.

        Raises:
            StoreError: the file cannot be written; no partial file is left under its name.
        """
        final = self.path(*parts)
        try:
            if self.local:
                return self._put_local(Path(final), write_to, seal)
            with tempfile.TemporaryDirectory(prefix="paretolab-") as folder:
                tmp = os.path.join(folder, parts[-1])
                write_to(tmp)
                if seal:
                    final = self.path(*parts[:-1], sealed_name(parts[-1], crc32_of(tmp)))
                pafs.copy_files(tmp, final, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs)
                return final
        except OSError as e:
            raise StoreError(f"cannot write to the result store at {self.uri}: {e}") from None

    @staticmethod
    def _put_local(path: Path, write_to: Callable[[str], None], seal: bool) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            write_to(str(tmp))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            return str(publish(tmp, path.with_name(sealed_name(path.name, crc32_of(str(tmp)))) if seal else path))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def restore(self, tmp: FileEntry) -> str:
        """Publish a complete temporary file left by a killed writer under its final, sealed name
        (local stores only: an object store leaves no temporary file); returns the new path."""
        name = tmp.name[1:-len(".tmp")]
        return str(publish(Path(tmp.path), Path(tmp.path).with_name(sealed_name(name, crc32_of(tmp.path)))))

    def delete(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass

    def move(self, path: str, *parts: str) -> str:
        """Move the file at `path` to `parts` (under the root); returns the new path."""
        dest = self.path(*parts)
        if self.local:
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
        self.fs.move(path, dest)  # on an object store: copy, then delete
        return dest

    def show(self, path: str) -> str:
        """`path` as a user would type it."""
        if self.local:
            return path
        return f"{urlsplit(self.uri).scheme}://{path}"


def publish(tmp: Path, final: Path) -> Path:
    """Rename `tmp` (written and fsynced) to `final`, then fsync the folder so the rename is durable."""
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


def sealed_name(name: str, crc: int) -> str:
    """`<stem>.parquet` -> `<stem>.crc32-<crc>.parquet`."""
    return f"{name.removesuffix('.parquet')}.crc32-{crc:08x}.parquet"


def crc32_of(path: str, fs: pafs.FileSystem | None = None) -> int:
    """The CRC-32 of a file's bytes."""
    crc = 0
    with (fs or pafs.LocalFileSystem()).open_input_stream(path) as f:
        while chunk := f.read(CHUNK_BYTES):
            crc = zlib.crc32(chunk, crc)
    return crc


def seal_error(loc: Location, entry: FileEntry) -> str | None:
    """Why the bytes of a sealed file differ from those it was sealed with, or None (also for a
    file written before files were sealed)."""
    m = SEALED.search(entry.name)
    if m is None:
        return None
    crc = crc32_of(entry.path, loc.fs)
    return None if crc == int(m.group(1), 16) else f"checksum mismatch: the file's bytes have CRC-32 {crc:08x}"


# (location uri, path, size) -> the file's schema, or the error that made its footer unreadable
_FOOTERS: dict[tuple[str, str, int], pa.Schema | str] = {}
_WARNED: set[tuple[str, str, int]] = set()


def footer(loc: Location, entry: FileEntry) -> pa.Schema | str:
    """The schema in the Parquet footer of `entry`, or why it cannot be read (cached per process)."""
    key = (loc.uri, entry.path, entry.size)
    if key not in _FOOTERS:
        try:
            _FOOTERS[key] = seal_error(loc, entry) or _schema(loc, entry)
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as e:
            _FOOTERS[key] = str(e).splitlines()[0] or type(e).__name__
    return _FOOTERS[key]


def _schema(loc: Location, entry: FileEntry) -> pa.Schema:
    with loc.fs.open_input_file(entry.path) as f:
        return pq.ParquetFile(f).schema_arrow


def mark_unreadable(loc: Location, entry: FileEntry, reason: str) -> None:
    """Remember that `entry` cannot be read even though its footer can (a corrupt page)."""
    _FOOTERS[(loc.uri, entry.path, entry.size)] = reason


def readable(loc: Location, entries: list[FileEntry]) -> list[FileEntry]:
    """The entries whose footer reads; warns once per process about each one that does not."""
    good = []
    for e in entries:
        try:
            result = footer(loc, e)
        except FileNotFoundError:  # removed by a compaction since it was listed: it is merged elsewhere
            continue
        if isinstance(result, pa.Schema):
            good.append(e)
        elif (loc.uri, e.path, e.size) not in _WARNED:
            _WARNED.add((loc.uri, e.path, e.size))
            warnings.warn(f"skipping unreadable file {loc.show(e.path)} ({result}); run `paretolab doctor"
                          f"{'' if loc.uri == 'results' else ' --store ' + loc.uri}` to move it aside",
                          StoreWarning, stacklevel=2)
    return good


def full_read_error(loc: Location, entry: FileEntry) -> str | None:
    """Why `entry` cannot be read in full, or None when every row reads: its seal, then every page
    through pyarrow (with page checksums checked), then, on a local store, through DuckDB, the
    engine of the queries there (a file may be one that pyarrow reads and DuckDB does not)."""
    try:
        if (reason := seal_error(loc, entry)) is not None:
            return reason
        with loc.fs.open_input_file(entry.path) as f:
            pq.read_table(f, page_checksum_verification=True)
        if loc.local:
            _duckdb_read(entry.path)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow, DuckDB and the OS: any failure is the reason
        return str(e).splitlines()[0] or type(e).__name__
    return None


def _duckdb_read(path: str) -> None:
    """Read every value of a Parquet file through DuckDB (a count would not decode the pages)."""
    import duckdb

    with duckdb.connect() as con:
        reader = con.sql("SELECT * FROM read_parquet($path)", params={"path": path}).to_arrow_reader(65_536)
        for _ in reader:
            pass

