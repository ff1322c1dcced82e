"""The mix and size flags: what they accept, and the error that names what they refuse."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from memshift.errors import ConfigError
from memshift.loadtest.mix import DEFAULT_MIX, DEFAULT_SIZES, parse_mix, parse_sizes
from memshift.loadtest.stats import OpStats, percentile


def test_the_mix_is_drawn_in_proportion_to_its_weights() -> None:
    mix = parse_mix("create=20,read=60,search=15,update=5")
    rnd = random.Random(3)
    drawn = Counter(mix.draw(rnd) for _ in range(20_000))
    assert {"create", "read", "search", "update"} == set(drawn)
    assert 0.57 < drawn["read"] / 20_000 < 0.63
    assert 0.035 < drawn["update"] / 20_000 < 0.065
    assert {"create": 20.0, "read": 60.0, "search": 15.0, "update": 5.0} == mix.shares()


def test_an_operation_left_out_or_weighted_zero_is_never_run() -> None:
    rnd = random.Random(1)
    mix = parse_mix("read=1,search=0")
    assert {"read"} == {mix.draw(rnd) for _ in range(500)}
    assert {"read", "create"} == set(parse_mix("read,create").values)


def test_sizes_take_suffixes_and_optional_weights() -> None:
    assert (100, 1000, 10_000, 50_000, 100_000) == parse_sizes("100,1000,10000,50000,100000").values
    sizes = parse_sizes("100b=3,1k=1,2M=0")
    assert (100, 1000, 2_000_000) == sizes.values
    assert {"100": 75.0, "1000": 25.0, "2000000": 0.0} == sizes.shares()
    assert parse_sizes(DEFAULT_SIZES).values[-1] == 100_000
    assert parse_mix(DEFAULT_MIX).values == ("create", "read", "search", "update")


@pytest.mark.parametrize(
    ("flag", "text", "says"),
    [
        ("--mix", "read=60,delete=5", "unknown operation 'delete'"),
        ("--mix", "read=x", "is not a number"),
        ("--mix", "read=-1", "0 or more"),
        ("--mix", "read=0", "at least one weight"),
        ("--mix", "read=1,,create=1", "empty item"),
        ("--mix", "read=1,read=2", "given twice"),
        ("--mix", "read=inf", "0 or more"),
        ("--sizes", "100,abc", "not a size"),
        ("--sizes", "0", "sizes must be"),
        ("--sizes", "17M", "sizes must be"),
        ("--sizes", "1k,1000", "given twice"),
    ],
)
def test_bad_flags_are_refused_with_the_flag_named(flag: str, text: str, says: str) -> None:
    parse = parse_mix if flag == "--mix" else parse_sizes
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert flag == caught.value.key
    assert says in caught.value.message


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    random.Random(2).shuffle(values)
    assert 50.0 == percentile(values, 50)
    assert 95.0 == percentile(values, 95)
    assert 99.0 == percentile(values, 99)
    assert 100.0 == percentile(values, 100)
    assert 7.0 == percentile([7.0], 99)


def test_a_summary_counts_failures_but_times_only_successes() -> None:
    stats = OpStats()
    for ms in (1, 2, 3, 4):
        stats.ok(ms / 1000)
    stats.failed("503")
    stats.failed("503")
    stats.failed("ServerDisconnectedError")
    summary = stats.summary(elapsed_s=2.0)
    assert 7 == summary["count"]
    assert 3 == summary["errors"]
    assert {"503": 2, "ServerDisconnectedError": 1} == summary["error_kinds"]
    assert 3.5 == summary["throughput_rps"]
    assert (2.0, 4.0, 4.0) == (summary["p50_ms"], summary["p95_ms"], summary["p99_ms"])
    assert None is OpStats().summary(1.0)["p50_ms"]
