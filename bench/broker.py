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


def connection(transport, options):
    return Connection("filesystem://", transport=transport, transport_options=options)


def consume(transport, options, queue_name, still_producing, take):
    """Read the queue until it stays empty once `still_producing()` is false;
    each message's id goes to `take`."""
    with connection(transport, options) as conn:
        queue = conn.SimpleQueue(queue_name)
        while True:
            try:
                message = queue.get(block=True, timeout=0.5)
            except queue.Empty:
                if still_producing():
                    continue
                return
            take(message.payload["id"])
            message.ack()


def stress(transport, options, queue_name, producers, consumers, per_producer):
    """Producer and consumer threads on one queue at once: the ids received with
    how often each came, the threads' errors, and the seconds it took."""
    received, errors, lock = collections.Counter(), [], threading.Lock()
    producing = threading.Event()
    producing.set()

    def produce(number):
        with connection(transport, options) as conn:
            queue = conn.SimpleQueue(queue_name)
            for sequence in range(per_producer):
                queue.put({"id": f"{number}-{sequence}"})

    def take(message_id):
        with lock:
            received[message_id] += 1

    def guarded(work, *args):
        try:
            work(*args)
        except Exception as exc:
            errors.append(f"{type(exc).__name__} after {time.monotonic() - started:.2f} s")

    started = time.monotonic()
    reader = (consume, transport, options, queue_name, producing.is_set, take)
    threads = [threading.Thread(target=guarded, args=reader) for _ in range(consumers)]
    threads += [threading.Thread(target=guarded, args=(produce, n)) for n in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads[consumers:]:
        thread.join()
    producing.clear()
    for thread in threads[:consumers]:
        thread.join()
    return received, errors, time.monotonic() - started


def run(transport, producers, consumers, per_producer):
    folder = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.01,
    }
    try:
        received, errors, elapsed = stress(
            transport, options, "bench", producers, consumers, per_producer
        )
        left = list(folder.glob("*.msg"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    twice = sum(1 for count in received.values() if count > 1)
    return len(received), twice, len(left), errors, elapsed


def main():
    producers, consumers, per_producer = (int(arg) for arg in (sys.argv[1:4] or [4, 4, 2000]))
    chosen = sys.argv[4:] or list(TRANSPORTS)
    sent = producers * per_producer
    print(f"{producers} producers, {consumers} consumer threads, {sent} messages", flush=True)
    lost = {}
    for name in chosen:
        transport = TRANSPORTS[name]
        arrived, twice, left, errors, elapsed = run(transport, producers, consumers, per_producer)
        lost[name] = sent - arrived + twice
        print(
            f"{name:>7}: {arrived}/{sent} arrived, {twice} twice, {left} left in the queue, "
            f"{elapsed:.1f} s, "
            f"{len(errors)} consumers died" + (f" (first: {errors[0]})" if errors else ""),
            flush=True,
        )
    # The headline: messages the portal's transport lost or delivered twice.
    print(f"broker_lost_or_twice: {lost.get('portal', 'not run')}")


if __name__ == "__main__":
    main()
