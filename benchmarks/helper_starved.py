"""The latency the rollback rules judge for new, when the shadow helper is starved of CPU.

    python -m benchmarks.helper_starved [--rounds 3] [--duration 8]

nginx stands in for both stores (as in ``proxy_cost``); memshift runs with shadow reads
at 100%, its helper at idle priority on the proxy's own CPU, under reads at 16 in
flight, enough to keep that CPU busy: the helper gets only the time the proxy leaves.
After each round the proxy's verdict figures (``GET /status``) say what the latency
rule would compare: new's p99 (timed by the helper) against legacy's (timed by the
proxy). memshift is started with ``max_latency_ratio = 1000`` so that it does not fail
back while measured; the default is 3.
"""

from __future__ import annotations

import argparse
import json
import urllib.request

from benchmarks.harness import ADMIN_URLS, loadtest, proxy_process, static_backends


def round_figures(legacy: str, new: str, duration: float) -> dict[str, float]:
    """One proxy, one load: the verdict's figures at its end."""
    with proxy_process(legacy, new, shadow=100, cpus="1") as url:
        loadtest(url, "read=100", 16, duration, cpus="0")
        request = urllib.request.Request(
            ADMIN_URLS[url] + "/status", headers={"Authorization": "Bearer bench-admin"}
        )
        with urllib.request.urlopen(request) as answer:
            figures: dict[str, float] = json.loads(answer.read())["health_figures"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    with static_backends(2, cpus="0") as (legacy, new):
        for at in range(args.rounds):
            f = round_figures(legacy, new, args.duration)
            print(
                f"round {at + 1}: new p99 {f['new_p99_ms']:.1f} ms ({f['new_requests']:.0f} "
                f"requests) against legacy's {f['legacy_p99_ms']:.1f} ms: "
                f"{f['latency_ratio']:.1f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
