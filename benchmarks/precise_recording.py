"""What recording a latency costs the load generator, with hdrh's public API and without.

Every request's latency goes into two HDR histograms (its stats row and the per-second
timeline; a third, the measurement window, during searches), in the generator's only thread.
This compares hdrh's public ``record_value`` with a vectorised bulk insert that writes hdrh's
internal count array directly (the approach tfsload used until this measurement), and relates
the difference to the generator's CPU per request (``--per-request-us``, from
benchmarks/generator_ceiling.py). A private API stays only if it buys 5 % or more.

    .venv/bin/python benchmarks/precise_recording.py [--values 200000] [--per-request-us 54]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from tfsload.generator.precise import HIGHEST_US, new_histogram


def bulk_insert(histogram, values: list[int]) -> None:
    """The private-API variant that was measured: hdrh's bucket arithmetic in numpy."""
    h = histogram
    v = np.asarray(values, dtype=np.int64)
    bits = np.frexp((v | h.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = bits - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub_bucket = v >> (bucket + h.unit_magnitude)
    index = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub_bucket
    index -= h.sub_bucket_half_count
    counts = np.ctypeslib.as_array(h.counts)
    counts += np.bincount(index, minlength=h.counts_len).astype(counts.dtype)
    h.total_count += len(values)


def per_value_us(record, values: list[int], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        record(values)
        best = min(best, (time.perf_counter() - started) / len(values) * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--values", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--histograms", type=int, default=2, help="histograms per request")
    parser.add_argument("--per-request-us", type=float, default=54.0, help="generator CPU/request")
    args = parser.parse_args()
    rng = random.Random(0)
    values = [int(rng.lognormvariate(8, 1)) % HIGHEST_US for _ in range(args.values)]

    def public(chunk: list[int]) -> None:
        histogram = new_histogram()
        for value in chunk:
            histogram.record_value(value)

    def private(chunk: list[int]) -> None:
        histogram = new_histogram()
        pending: list[int] = []
        for value in chunk:  # the list append each request paid before the bulk insert
            pending.append(value)
            if len(pending) >= 4096:
                bulk_insert(histogram, pending)
                pending = []
        bulk_insert(histogram, pending)

    public_us = per_value_us(public, values, args.rounds)
    private_us = per_value_us(private, values, args.rounds)
    saved = (public_us - private_us) * args.histograms
    share = saved / args.per_request_us
    print(f"record_value (public): {public_us:.3f} us per value")
    print(f"bulk insert (private): {private_us:.3f} us per value")
    print(
        f"saved per request ({args.histograms} histograms): {saved:.2f} us = {share:.1%} of "
        f"{args.per_request_us:g} us of generator CPU per request"
    )
    print("verdict:", "keep the private API" if share >= 0.05 else "public API (gain below 5 %)")


if __name__ == "__main__":
    main()
