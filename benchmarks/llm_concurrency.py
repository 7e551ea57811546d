"""Speed-up of the server backend's ``max_concurrency`` over sequential requests.

The server is a local OpenAI-compatible stub that waits ``--latency`` seconds per request and then
answers, one thread per connection: its latency is waiting, not compute, so the figure measures the
client (a real model server on a 2-core CPU would measure the CPU instead). "sequential" sends one
request per ``generate`` call, as a per-row loop would; the others send all requests in one call.

    python benchmarks/llm_concurrency.py --requests 64 --latency 0.2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from fusion_datasets.chat.backends import ServerBackendConfig, ServerChatBackend
from fusion_datasets.testing.stub_chat import StubChatServer


def timed(run: Callable[[], list]) -> float:
    start = time.perf_counter()
    completions = run()
    elapsed = time.perf_counter() - start
    failed = [c.error for c in completions if not c.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, first: {failed[0]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the stub waits per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    args = parser.parse_args()
    with StubChatServer(lambda request: "A dog barks.", args.latency) as server:
        compare(server.base_url, args)


def compare(url: str, args: argparse.Namespace) -> None:
    conversations = [[{"role": "user", "content": f"Caption clip {i}."}] for i in range(args.requests)]

    def backend(concurrency: int) -> ServerChatBackend:
        return ServerChatBackend(ServerBackendConfig(model="stub", base_urls=(url,),
                                               max_concurrency=concurrency, token_env=None))

    one_by_one = backend(1)
    sequential = timed(lambda: [one_by_one.generate([c], max_new_tokens=8)[0] for c in conversations])
    print(f"{args.requests} requests, {args.latency * 1000:.0f} ms server latency each")
    print(f"{'max_concurrency':>16} {'seconds':>8} {'requests/s':>11} {'speed-up':>9}")
    print(f"{'sequential':>16} {sequential:8.2f} {args.requests / sequential:11.1f} {1.0:8.1f}x")
    for concurrency in args.concurrency:
        seconds = timed(lambda concurrency=concurrency: backend(concurrency).generate(conversations, max_new_tokens=8))
        rate, speedup = args.requests / seconds, sequential / seconds
        print(f"{concurrency:>16} {seconds:8.2f} {rate:11.1f} {speedup:8.1f}x")


if __name__ == "__main__":
    main()
