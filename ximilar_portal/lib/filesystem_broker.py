"""The embedded Celery broker: kombu's filesystem transport, made safe to share.

kombu 5.7's own transport creates a message file and then writes it, while a
consumer renames and reads any file it finds, so a consumer can read an empty or
half-written file. The JSONDecodeError escapes `_get`, Celery calls it an
unrecoverable error, the worker dies and the message is lost (kombu issue #1551).
Its exchange tables are truncated and rewritten in place the same way, a binding
another thread recorded first is not written at all, and the folder of processed
messages grows for ever.

This subclass keeps kombu's folder and file names (`<time>_<uuid>.<queue>.msg`
in one folder that every process shares) and changes how files move:

- a message is written under `tmp/` and renamed into the queue folder, so it is
  complete from the moment a consumer can see it;
- a consumer claims a message by renaming it into `claimed/` (atomic on one
  filesystem: exactly one consumer wins), reads it and deletes it;
- a file that cannot be read or decoded as a message is moved to the quarantine
  folder and logged at ERROR, and the consumer goes on with the next message;
- exchange tables (which queue a published message goes to; fanout, Celery's
  remote control) are replaced whole, under a lock file, instead of being
  truncated and rewritten, and every bind makes sure its entry is there.
"""

import contextlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from queue import Empty

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

# A staged or claimed file this old was left by a process that died between two
# renames (each takes microseconds); found when a process opens the broker.
# Transport option "stale_seconds".
STALE_SECONDS = 300

# Everything a file that is not a kombu message can raise while it is read,
# decoded (JSON, UTF-8, base64) and checked.
UNREADABLE = (OSError, ValueError, TypeError, KeyError, AttributeError)

_housekept: set[tuple[int, str]] = set()
_housekept_lock = threading.Lock()


def write_whole(target: Path, data: bytes, staging: Path) -> None:
    """Write `data` under `staging` (same filesystem) and rename it to `target`:
    a reader finds the old file or the new one, never a part of either."""
    staged = staging / f"{uuid.uuid4().hex}.tmp"
    try:
        with open(staged, "wb") as file:
            file.write(data)
        os.replace(staged, target)
    except OSError:
        staged.unlink(missing_ok=True)
        raise


class Channel(filesystem.Channel):
    """One connection's view of the shared folder; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._listed = {}  # queue -> names seen in the last listing, not yet tried
        self._make_folders()
        self._housekeep_once()

    # --- Folders ----------------------------------------------------------------

    @property
    def queue_in(self) -> Path:
        return Path(self.data_folder_in)

    @property
    def queue_out(self) -> Path:
        return Path(self.data_folder_out)

    @property
    def staging_folder(self) -> Path:
        return self.queue_out / "tmp"

    @property
    def claimed_folder(self) -> Path:
        return self.queue_in / "claimed"

    @property
    def quarantine_folder(self) -> Path:
        return Path(self.transport_options.get("quarantine_folder", self.queue_in / "quarantine"))

    def _make_folders(self):
        for folder in (self.staging_folder, self.claimed_folder, self.quarantine_folder):
            folder.mkdir(parents=True, exist_ok=True)
        self.control_folder.mkdir(parents=True, exist_ok=True)

    # --- Messages ---------------------------------------------------------------

    def _put(self, queue, payload, **kwargs):
        # Zero-padded, so the names sort in publishing order.
        name = f"{time.time_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        data = str_to_bytes(dumps(payload))
        try:
            try:
                write_whole(self.queue_out / name, data, self.staging_folder)
            except FileNotFoundError:
                self._make_folders()  # removed under a running process: once more
                write_whole(self.queue_out / name, data, self.staging_folder)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc

    def _get(self, queue):
        """The oldest message of `queue` no other consumer took. The names of one
        listing are tried in order before the folder is listed again, so a
        backlog costs one listing, not one per message."""
        pending = self._listed.get(queue)
        if pending:
            payload = self._take_first(pending)
            if payload is not None:
                return payload
        pending = self._listed[queue] = deque(self._names(queue))
        payload = self._take_first(pending)
        if payload is None:
            raise Empty()
        return payload

    def _names(self, queue):
        wanted = f"{queue}.msg"
        try:
            names = os.listdir(self.queue_in)
        except FileNotFoundError:
            self._make_folders()
            return []
        return sorted(name for name in names if name.partition(".")[2] == wanted)

    def _take_first(self, pending):
        while pending:
            claimed = self._claim(pending.popleft())
            if claimed is not None:
                payload = self._read(claimed)
                if payload is not None:
                    return payload
        return None

    def _claim(self, name, retry=True):
        source, claimed = self.queue_in / name, self.claimed_folder / name
        try:
            os.rename(source, claimed)
        except FileNotFoundError:
            if retry and source.exists():  # the claimed folder was removed: once more
                self._make_folders()
                return self._claim(name, retry=False)
            return None  # another consumer took it
        except OSError as exc:
            log.error("broker.claim_failed file=%s error=%r", source, exc)
            return None
        return claimed

    def _read(self, claimed: Path):
        """The message in a claimed file, which is deleted; None (and the file
        quarantined) when it is not a whole kombu message."""
        try:
            payload = loads(bytes_to_str(claimed.read_bytes()))
            self.Message(payload, channel=self)  # raises on anything but a message
        except UNREADABLE as exc:
            self._quarantine(claimed, exc)
            return None
        claimed.unlink(missing_ok=True)
        return payload

    def _quarantine(self, claimed: Path, exc: Exception):
        size = claimed.stat().st_size if claimed.is_file() else None
        target = self.quarantine_folder / claimed.name
        try:
            shutil.move(claimed, target)
        except OSError as move_exc:
            log.error(
                "broker.quarantine_failed file=%s error=%r (left in %s)",
                claimed.name,
                move_exc,
                self.claimed_folder,
            )
            return
        log.error(
            "broker.message_quarantined file=%s bytes=%s error=%s: %s "
            "(set aside in the quarantine folder; the consumer goes on)",
            target,
            size,
            type(exc).__name__,
            exc,
        )

    # --- Exchange tables (fanout, remote control) -------------------------------

    def get_table(self, exchange):
        file = self._exchange_file(exchange)
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc
        try:
            return [filesystem.exchange_queue_t(*entry) for entry in loads(bytes_to_str(raw))]
        except UNREADABLE as exc:
            # Left half-written by kombu's own transport; the next bind rewrites it.
            log.error("broker.exchange_table_unreadable file=%s error=%r", file, exc)
            return []

    def queue_bind(self, queue, exchange=None, routing_key="", arguments=None, **kwargs):
        super().queue_bind(queue, exchange, routing_key, arguments, **kwargs)
        # kombu skips the table when this process already recorded the binding,
        # maybe in a thread whose write has not landed: publishers would drop
        # messages for want of it. The table is what every publisher reads.
        exchange = exchange or "amq.direct"
        meta = self.typeof(exchange).prepare_bind(queue, exchange, routing_key, arguments)
        self._queue_bind(exchange, *meta)

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._table_update(exchange, lambda table: table if entry in table else [entry, *table])

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        self._purge(queue)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._table_update(exchange, lambda table: [item for item in table if item != entry])

    def _table_update(self, exchange, change):
        """Read, change and replace an exchange table, one writer at a time."""
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        try:
            with open(file.parent / f"{file.name}.lock", "a") as lock_file:
                filesystem.lock(lock_file, filesystem.LOCK_EX)  # released on close
                table = self.get_table(exchange)
                changed = change(table)
                if changed != table or not file.exists():
                    write_whole(file, str_to_bytes(dumps(changed)), self.control_folder)
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc

    # --- Start-up housekeeping ----------------------------------------------------

    def _housekeep_once(self):
        """Once per process and folder: clear what a process that died between
        two renames left behind, and the processed messages kombu's transport kept."""
        key = (os.getpid(), str(self.queue_in.resolve()))
        with _housekept_lock:
            if key in _housekept:
                return
            _housekept.add(key)
        stale = time.time() - float(self.transport_options.get("stale_seconds", STALE_SECONDS))
        for path in _files(self.staging_folder):
            if _changed_at(path) < stale:
                path.unlink(missing_ok=True)  # never visible: its publisher died writing it
        for path in _files(self.claimed_folder):
            if _changed_at(path) < stale:  # claimed by a consumer that died before reading it
                _rename_quietly(path, self.queue_in / path.name)
        # This transport never keeps a read message, whatever "store_processed" says.
        processed = self.transport_options.get("processed_folder")
        if processed:
            leftovers = _files(Path(processed))
            for path in leftovers:
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                Path(processed).rmdir()
            if leftovers:
                log.info("broker.processed_removed files=%d folder=%s", len(leftovers), processed)


def _files(folder: Path):
    try:
        return [path for path in folder.iterdir() if path.is_file()]
    except FileNotFoundError:
        return []


def _changed_at(path: Path) -> float:
    """The inode's change time: a rename sets it, a publish time in the name does not."""
    try:
        return path.stat().st_ctime
    except FileNotFoundError:
        return time.time()


def _rename_quietly(source: Path, target: Path):
    try:
        os.rename(source, target)
    except FileNotFoundError:
        pass  # another process starting at the same time put it back
    except OSError as exc:
        log.warning("broker.requeue_failed file=%s error=%r", source, exc)


class Transport(filesystem.Transport):
    """kombu's filesystem transport with the channel above."""

    Channel = Channel
    # Bindings this process declared: its own record, not the one of kombu's transport.
    global_state = virtual.BrokerState()
