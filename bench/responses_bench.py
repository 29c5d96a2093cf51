"""The Responses API's cost over a chat completion, side by side in one run.

On a server started with no training worker, ftserve-tiny answers the same short prompt (16 new
tokens, greedy) through ``/v1/chat/completions`` (the baseline) and through ``/v1/responses``
unstored, stored, and continuing a stored response with ``previous_response_id``. The kinds
alternate in rounds so the machine's drift falls on all of them alike; each line prints its
median and p90 and the median's ratio to the chat completion's.

Run: .venv/bin/python bench/responses_bench.py [--requests 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import Server  # the suite's real-server harness

MODEL = "ftserve-tiny"
PROMPT = "Hello there"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="requests per kind per round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    server = Server(Path(tempfile.mkdtemp()) / "data", env={"FTSERVE_WORKERS": "0"})
    server.start()
    try:
        client = server.client()
        message = [{"role": "user", "content": PROMPT}]
        client.chat.completions.create(model=MODEL, messages=message, max_tokens=1)  # warm up
        first = client.responses.create(
            model=MODEL, input=PROMPT, max_output_tokens=16, temperature=0
        )

        def chat() -> None:
            client.chat.completions.create(
                model=MODEL, messages=message, max_tokens=16, temperature=0
            )

        def respond(store: bool, previous: str | None = None) -> Callable[[], None]:
            def run() -> None:
                client.responses.create(
                    model=MODEL,
                    input=PROMPT,
                    max_output_tokens=16,
                    temperature=0,
                    store=store,
                    previous_response_id=previous,
                )

            return run

        kinds: dict[str, Callable[[], None]] = {
            "chat completion (baseline)": chat,
            "responses, store=false": respond(False),
            "responses, store=true": respond(True),
            "responses, previous_response_id": respond(False, first.id),
        }
        times: dict[str, list[float]] = {name: [] for name in kinds}
        for _ in range(args.rounds):
            for name, run in kinds.items():
                for _ in range(args.requests):
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
        base = statistics.median(times["chat completion (baseline)"])
        print(f"{MODEL}, 16 new tokens, {args.rounds} rounds x {args.requests} requests per kind")
        for name, values in times.items():
            median = statistics.median(values)
            p90 = sorted(values)[int(len(values) * 0.9)]
            print(
                f"{name:34s} median {median * 1e3:6.1f} ms  p90 {p90 * 1e3:6.1f} ms  "
                f"{median / base:5.2f}x the chat completion"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
