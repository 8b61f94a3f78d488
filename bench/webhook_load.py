"""Load generator for the webhook benchmark, run as a separate process.

Reads pre-signed requests (JSON lines: path, body, signature) and posts them over
kept-alive connections: ``--rate 0`` as fast as ``--connections`` allow (closed loop),
``--rate R`` at R requests/s spread evenly (open loop, latency measured from the
scheduled send time, so queueing counts). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.0)
    args = parser.parse_args()
    with open(args.requests, encoding="utf-8") as lines:
        requests = [json.loads(line) for line in lines]
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    next_index = iter(range(len(requests)))
    started = time.perf_counter()

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        for index in next_index:
            request = requests[index]
            scheduled = started + index / args.rate if args.rate else time.perf_counter()
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            connection.request("POST", request["path"], body=request["body"].encode(), headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": request["signature"],
            })  # fmt: skip
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - scheduled
            with lock:
                latencies.append(elapsed)
                if response.status != 200:
                    failures.append(response.status)

    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    latencies.sort()
    print(json.dumps({
        "requests": len(latencies), "seconds": seconds, "rate": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
        "failures": len(failures),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
