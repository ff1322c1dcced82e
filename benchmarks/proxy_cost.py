"""The proxy's cost, side by side with the alternatives, in one run.

    python -m benchmarks.proxy_cost [--duration S] [--concurrency C] [--rounds N]

A fast static backend (nginx, one worker, fixed memory-service JSON) stands in for
both stores, so that what is measured is the proxy in front of it. The same load
generator (``memshift loadtest``) drives, in turn:

  a. the backend directly;
  b. a bare aiohttp pass-through proxy (``benchmarks/bare_proxy.py``), and the same
     as a dual-write proxy (each write sent to the second backend after the first);
  c. memshift at read percent 0, shadow 0 (sync mirroring);
  d. memshift with shadow reads at 100%: the shadow helper on the proxy's CPU, on the
     other CPU (sharing it, at idle priority, with nginx and the load generator), and
     shadow reads in the proxy's own process (``[compare] helper = false``);
  e. memshift mirroring writes sync and async;
  f. memshift as one process and as ``serve --workers 2``, each free to use both CPUs.

Reads are ``GET /v1/memories/{id}``, writes ``POST /v1/memories`` of 1 KB, at
``--concurrency`` in flight for throughput and at 1 in flight for latency. The
proxies run on CPU 1; nginx and the load generator share CPU 0 (f runs on both).
Each figure is the median of ``--rounds`` rounds; targets run in turn within a
round, so drift on this shared machine touches them alike. A last phase takes the
shadow reads' cost at 1 in flight from ``--pairs`` side-by-side measurements (see
``shadow_pairs``).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks.harness import (
    bare_proxy,
    compare_totals,
    cpu_kept_awake,
    measured_load,
    proxy_process,
    report,
    second_reader,
    static_backends,
)

LOAD_CPU, PROXY_CPU = "0", "1"
READ, WRITE = "read=100", "create=100"

Target = Callable[[list[str]], contextlib.AbstractContextManager[str]]


def _direct(urls: list[str]) -> contextlib.AbstractContextManager[str]:
    return contextlib.nullcontext(urls[0])


def _bare(urls: list[str]) -> contextlib.AbstractContextManager[str]:
    return bare_proxy(urls[0], cpus=PROXY_CPU)


def _bare_dual(urls: list[str]) -> contextlib.AbstractContextManager[str]:
    return bare_proxy(urls[0], mirror=urls[1], cpus=PROXY_CPU)


def _memshift(
    write_mode: str = "sync",
    shadow: int = 0,
    workers: int | None = None,
    helper: bool = True,
    helper_cpus: str = "",
) -> Target:
    """memshift pinned to the proxy's CPU; with ``workers``, free to use both CPUs.

    Its shadow helper shares the proxy's CPU unless ``helper_cpus`` says otherwise.
    """

    def start(urls: list[str]) -> contextlib.AbstractContextManager[str]:
        return proxy_process(
            urls[0],
            urls[1],
            write_mode=write_mode,
            shadow=shadow,
            cpus=PROXY_CPU if workers is None else f"{LOAD_CPU},{PROXY_CPU}",
            serve_args=("--workers", str(workers)) if workers and workers > 1 else (),
            helper=helper,
            helper_cpus=helper_cpus,
        )

    return start


# name: (how to start it, which workloads it runs)
TARGETS: dict[str, tuple[Target, tuple[str, ...]]] = {
    "a. direct (nginx)": (_direct, ("read", "read_c1", "write")),
    "b. bare aiohttp proxy": (_bare, ("read", "read_c1")),
    "b. bare dual-write proxy": (_bare_dual, ("write", "write_c1")),
    "c. memshift, shadow 0, sync": (_memshift(), ("read", "read_c1", "write", "write_c1")),
    "d. memshift, shadow 100": (_memshift(shadow=100), ("read", "read_c1")),
    "d. shadow 100, helper on CPU 0": (
        _memshift(shadow=100, helper_cpus=LOAD_CPU),
        ("read", "read_c1"),
    ),
    "d. shadow 100, in process": (_memshift(shadow=100, helper=False), ("read", "read_c1")),
    "e. memshift, async mirroring": (_memshift("async"), ("write", "write_c1")),
    # Scale-out: the proxy free to use both CPUs (shared with nginx and the load generator).
    # Shadow 0: shadow reads would double nginx's work on the CPU it shares.
    "f. memshift, 1 process": (_memshift(workers=1), ("read", "write")),
    "f. memshift, 2 workers": (_memshift(workers=2), ("read", "write")),
}


def run_round(urls: list[str], duration: float, concurrency: int) -> dict[str, Any]:
    loads = {
        "read": (READ, concurrency),
        "read_c1": (READ, 1),
        "write": (WRITE, concurrency),
        "write_c1": (WRITE, 1),
    }
    out: dict[str, Any] = {}
    for name, (start, workloads) in TARGETS.items():
        with start(urls) as url:
            for workload in workloads:
                mix, inflight = loads[workload]
                total = measured_load(url, mix, inflight, duration, cpus=LOAD_CPU)
                out.setdefault(name, {})[workload] = {
                    k: total[k]
                    for k in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "proxy_cpu_us")
                    if k in total
                }
                print(
                    f"  {name:<30} {workload:<9} {total['throughput_rps']:8.0f} req/s  "
                    f"p50 {total['p50_ms']:.3f} ms  p99 {total['p99_ms']:.3f} ms",
                    flush=True,
                )
    return out


ARMS = ("off", "awake", "reader", "on")
# Each arm in each place in turn: each rotation of ARMS, forwards then backwards.
ORDERS = [
    order
    for i in range(len(ARMS))
    for rotation in [ARMS[i:] + ARMS[:i]]
    for order in (rotation, rotation[::-1])
]


def shadow_pairs(urls: list[str], pairs: int, duration: float) -> dict[str, Any]:
    """The shadow target's figure: client p50 at 1 in flight, shadow 0 against 100.

    Both proxies stay up and the load alternates between them, in turn, ``pairs``
    times; each pair gives a ratio, and the figure is their median. On a shared
    machine whose speed drifts within seconds, a ratio of two measurements taken side
    by side is steadier than a ratio of two medians taken minutes apart.

    Each pair also measures shadow 0 twice more, to tell what the shadow reads cost
    from what their helper's work changes around them: with the proxy's CPU kept
    awake (``cpu_kept_awake``), as the helper's work keeps it, and beside a plain
    reader of the other store at the client's rate (``second_reader``), which is the
    shadow's second read with nothing of memshift in it. The arms run in turn in
    every place.
    """
    plain, shadowed = _memshift(), _memshift(shadow=100)
    with plain(urls) as off, shadowed(urls) as on:
        measured_load(on, READ, 1, 1.0, cpus=LOAD_CPU)  # warm both: connections, the helper
        # The plain second reader reads at the client's rate, as the last "off" arm found.
        rate = measured_load(off, READ, 1, 1.0, cpus=LOAD_CPU)["throughput_rps"]
        rows, reads, before = [], 0, compare_totals(on)
        for n in range(pairs):
            got: dict[str, float] = {}
            for arm in ORDERS[n % len(ORDERS)]:
                beside: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
                if arm == "awake":
                    beside = cpu_kept_awake(PROXY_CPU)
                elif arm == "reader":
                    beside = second_reader(PROXY_CPU, urls[1], rate)
                with beside:
                    total = measured_load(on if arm == "on" else off, READ, 1, duration, LOAD_CPU)
                got[arm] = total["p50_ms"]
                reads += total["count"] if arm == "on" else 0
                rate = total["throughput_rps"] if arm == "off" else rate
            rows.append({f"{arm}_p50_ms": got[arm] for arm in ARMS})
            print(
                f"  pair {n + 1}/{pairs}: shadow 0 p50 {got['off']:.3f} ms, "
                f"shadow 100 {got['on']:.3f} ms ({got['on'] / got['off'] - 1:+.1%}); "
                f"shadow 0 with its CPU kept awake {got['awake']:.3f} ms, "
                f"beside a plain second reader {got['reader']:.3f} ms",
                flush=True,
            )
        # Every shadow read done, none dropped: else the figure would flatter.
        after = compare_totals(on)

    def ratios(top: str, bottom: str) -> list[float]:
        return [r[f"{top}_p50_ms"] / r[f"{bottom}_p50_ms"] - 1 for r in rows]

    return {
        "pairs": rows,
        "client_reads": reads,
        "compared": after["compared"] - before["compared"],
        "dropped": after["dropped"] - before["dropped"],
        **_added("added_p50", ratios("on", "off")),
        **_added("awake_p50", ratios("awake", "off")),
        **_added("added_p50_awake", ratios("on", "awake")),
        **_added("reader_p50_awake", ratios("reader", "awake")),
        **_added("added_p50_reader", ratios("on", "reader")),
    }


def _added(name: str, ratios: list[float]) -> dict[str, Any]:
    """The median of ``ratios`` and their quartiles."""
    ratios = sorted(ratios)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {name: statistics.median(ratios), f"{name}_quartiles": [quartiles[0], quartiles[2]]}


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name, workloads in rounds[0].items():
        for workload, figures in workloads.items():
            merged.setdefault(name, {})[workload] = {
                key: statistics.median(r[name][workload][key] for r in rounds) for key in figures
            }
    return merged


@contextlib.contextmanager
def backends() -> Iterator[list[str]]:
    with static_backends(2, cpus=LOAD_CPU) as urls:
        yield urls


def _cpu(figures: dict[str, Any]) -> str:
    return f"{figures['proxy_cpu_us']:.0f}" if "proxy_cpu_us" in figures else "-"


def tables(result: dict[str, Any], concurrency: int) -> tuple[list[list[Any]], list[list[Any]]]:
    direct, bare, dual = (
        result["a. direct (nginx)"],
        result["b. bare aiohttp proxy"],
        result["b. bare dual-write proxy"],
    )
    reads, writes = [], []
    for name, figures in result.items():
        if "read" in figures:
            rps = figures["read"]["throughput_rps"]
            c1 = figures.get("read_c1")
            reads.append(
                [
                    name,
                    f"{rps:.0f}",
                    f"{rps / bare['read']['throughput_rps']:.2f}",
                    f"{c1['p50_ms']:.3f}" if c1 else "-",
                    f"{c1['p50_ms'] - direct['read_c1']['p50_ms']:+.3f}" if c1 else "-",
                    f"{c1['p99_ms'] - direct['read_c1']['p99_ms']:+.3f}" if c1 else "-",
                    f"{figures['read']['p50_ms']:.2f}",
                    _cpu(figures["read"]),
                ]
            )
        if "write" in figures:
            rps = figures["write"]["throughput_rps"]
            c1 = figures.get("write_c1")
            base = dual["write"]["throughput_rps"]
            writes.append(
                [
                    name,
                    f"{rps:.0f}",
                    f"{rps / base:.2f}" if name != "a. direct (nginx)" else "-",
                    f"{c1['p50_ms']:.3f}" if c1 else "-",
                    f"{c1['p99_ms']:.3f}" if c1 else "-",
                    f"{figures['write']['p50_ms']:.2f}",
                    _cpu(figures["write"]),
                ]
            )
    return reads, writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=12, help="shadow 0/100 pairs at 1 in flight")
    parser.add_argument("--pair-duration", type=float, default=4.0, help="seconds per half pair")
    args = parser.parse_args()
    rounds = []
    with backends() as urls:
        for n in range(args.rounds):
            print(f"round {n + 1}/{args.rounds}", flush=True)
            rounds.append(run_round(urls, args.duration, args.concurrency))
        print(f"shadow pairs ({args.pairs})", flush=True)
        pairs = shadow_pairs(urls, args.pairs, args.pair_duration) if args.pairs else None
    result = median_of(rounds)
    reads, writes = tables(result, args.concurrency)
    c = args.concurrency
    print(f"\nreads (GET /v1/memories/{{id}}); throughput at {c} in flight, latency at 1")
    report(
        "proxy_cost",
        [
            "target",
            "req/s",
            "vs bare",
            "p50 c=1",
            "+p50 vs a",
            "+p99 vs a",
            f"p50 c={c}",
            "proxy cpu us/req",
        ],
        reads,
        {"concurrency": c, "duration_s": args.duration, "rounds": rounds, "median": result},
    )
    print(f"\nwrites (POST /v1/memories, 1 KB); throughput at {c} in flight, latency at 1")
    report(
        "proxy_cost_writes",
        ["target", "req/s", "vs bare dual", "p50 c=1", "p99 c=1", f"p50 c={c}", "proxy cpu us/req"],
        writes,
        {"concurrency": c, "median": result},
    )
    if pairs is not None:
        print(
            f"\nshadow 100% at 1 in flight, {args.pairs} side-by-side pairs of "
            f"{args.pair_duration:g} s: the client's p50 {_spread(pairs, 'added_p50')} against "
            f"shadow 0; {_spread(pairs, 'added_p50_awake')} against shadow 0 with the proxy's "
            f"CPU kept awake (which by itself: {_spread(pairs, 'awake_p50')}); a plain second "
            f"reader beside shadow 0 with its CPU awake {_spread(pairs, 'reader_p50_awake')}; "
            f"shadow 100 against that reader {_spread(pairs, 'added_p50_reader')}; "
            f"{pairs['compared']} of {pairs['client_reads']} reads compared, "
            f"{pairs['dropped']} dropped"
        )
        report(
            "proxy_cost_shadow",
            ["pair", "shadow 0", "shadow 100", "added", "CPU awake", "2nd reader"],
            [
                [
                    n + 1,
                    r["off_p50_ms"],
                    r["on_p50_ms"],
                    f"{r['on_p50_ms'] / r['off_p50_ms'] - 1:+.1%}",
                    r["awake_p50_ms"],
                    r["reader_p50_ms"],
                ]
                for n, r in enumerate(pairs["pairs"])
            ],
            {"pair_duration_s": args.pair_duration, **pairs},
        )


def _spread(pairs: dict[str, Any], name: str) -> str:
    low, high = pairs[f"{name}_quartiles"]
    return f"{pairs[name]:+.1%} (median; quartiles {low:+.1%} to {high:+.1%})"


if __name__ == "__main__":
    main()
