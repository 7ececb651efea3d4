"""A tiny process for tests/test_supervisor.py to supervise:

    python tests/supervised_child.py NAME DIR [PORT] [--stubborn]

Appends its pid to DIR/NAME.started when up and, with a PORT, answers HTTP GET on
127.0.0.1:PORT. On SIGTERM it appends `NAME alive=OTHER,...` to DIR/stopped, naming
the other children still running at that moment, then exits after a pause (so a
supervisor that stopped everything at once would be seen doing it). --stubborn
ignores SIGTERM. Standard library only, like the supervisor."""

import http.server
import os
import signal
import sys
import threading
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in "ZX"


def others_alive(folder: Path, name: str) -> list[str]:
    names = []
    for pids in sorted(folder.glob("*.started")):
        if pids.stem != name and any(alive(int(p)) for p in pids.read_text().split()):
            names.append(pids.stem)
    return names


def main() -> None:
    name, folder = sys.argv[1], Path(sys.argv[2])
    port = next((int(a) for a in sys.argv[3:] if a.isdigit()), None)

    def on_term(signum, frame):
        with open(folder / "stopped", "a") as out:
            out.write(f"{name} alive={','.join(others_alive(folder, name))}\n")
        time.sleep(0.5)
        os._exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if "--stubborn" in sys.argv else on_term)
    if port is not None:
        server = http.server.HTTPServer(("127.0.0.1", port), Answer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(folder / f"{name}.started", "a") as out:
        out.write(f"{os.getpid()}\n")
    print(f"{name} up", flush=True)
    while True:
        time.sleep(60)


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    main()
