"""python -m ximilar_portal.sandbox --host 127.0.0.1 --port 8001 --tokens tokA,tokB

Serves until interrupted. Prints one line with the URL, never the tokens."""

import argparse
import contextlib
import os
import signal
import sys
import threading

from .faults import Faults
from .server import DEFAULT_TOKEN, SandboxServer


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ximilar_portal.sandbox",
        description="A local server that speaks Ximilar's protocol, for development and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument(
        "--tokens",
        default=os.environ.get("XIMILAR_SANDBOX_TOKENS") or DEFAULT_TOKEN,
        help="comma-separated tokens to accept (default: $XIMILAR_SANDBOX_TOKENS)",
    )
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--rate-limit", type=float, default=None, help="requests/s per token")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500")
    parser.add_argument("--capacity", type=int, default=1000, help="records per collection")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    tokens = tuple(t.strip() for t in args.tokens.split(",") if t.strip())
    if not tokens:
        sys.exit("sandbox: give at least one token")
    faults = Faults(
        latency_ms=args.latency_ms, error_rate=args.error_rate, rate_limit_rps=args.rate_limit
    )
    server = SandboxServer(
        host=args.host, port=args.port, tokens=tokens, faults=faults, capacity=args.capacity
    ).start()
    print(f"sandbox listening on {server.url}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop
        stopped.wait()
    server.stop()


if __name__ == "__main__":
    main()
