"""The filesystem broker under concurrent publishers and consumers: kombu's own
transport against the portal's (ximilar_portal/lib/filesystem_broker.py).

Threads publish PER_PRODUCER messages each while consumer threads read the same
queue on a temporary folder; prints, per transport, how many messages arrived,
how many twice, the consumers' errors and the time taken.

    .venv/bin/python bench/broker.py [producers consumers per-producer [kombu|portal]]

kombu's transport lists and sorts the whole folder for every message it reads, so
its time grows with the square of the backlog; the default stays small for it.
"""

import collections
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from kombu import Connection

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the portal's transport, imported by name

TRANSPORTS = {
    "kombu": "kombu.transport.filesystem:Transport",
    "portal": "ximilar_portal.lib.filesystem_broker:Transport",
}


def run(transport, producers, consumers, per_producer):
    folder = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.01,
    }
    received, errors, lock = collections.Counter(), [], threading.Lock()
    producing = threading.Event()
    producing.set()

    def produce(number):
        with Connection("filesystem://", transport=transport, transport_options=options) as conn:
            queue = conn.SimpleQueue("bench")
            for sequence in range(per_producer):
                queue.put({"id": f"{number}-{sequence}"})

    def consume():
        with Connection("filesystem://", transport=transport, transport_options=options) as conn:
            queue = conn.SimpleQueue("bench")
            while True:
                try:
                    message = queue.get(block=True, timeout=0.5)
                except queue.Empty:
                    if producing.is_set():
                        continue
                    return
                with lock:
                    received[message.payload["id"]] += 1
                message.ack()

    def guarded(work, *args):
        try:
            work(*args)
        except Exception as exc:
            errors.append(f"{type(exc).__name__} after {time.monotonic() - started:.2f} s")

    started = time.monotonic()
    threads = [threading.Thread(target=guarded, args=(consume,)) for _ in range(consumers)]
    threads += [threading.Thread(target=guarded, args=(produce, n)) for n in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads[consumers:]:
        thread.join()
    producing.clear()
    for thread in threads[:consumers]:
        thread.join()
    elapsed = time.monotonic() - started
    left = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    print(f"left in {folder}: {len(left)} files {left[:3]}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    twice = sum(1 for count in received.values() if count > 1)
    return len(received), twice, errors, elapsed


def main():
    producers, consumers, per_producer = (int(arg) for arg in (sys.argv[1:4] or [4, 4, 2000]))
    chosen = sys.argv[4:] or list(TRANSPORTS)
    sent = producers * per_producer
    print(f"{producers} producers, {consumers} consumer threads, {sent} messages", flush=True)
    for name in chosen:
        transport = TRANSPORTS[name]
        arrived, twice, errors, elapsed = run(transport, producers, consumers, per_producer)
        print(
            f"{name:>7}: {arrived}/{sent} arrived, {twice} twice, {elapsed:.1f} s, "
            f"{len(errors)} consumers died" + (f" (first: {errors[0]})" if errors else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
