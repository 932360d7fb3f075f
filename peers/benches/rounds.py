#!/usr/bin/env python3
"""Alternating rounds: runs one criterion bench R times, short, and prints
for each pair of benchmark IDs the ratio of each round (peer's median time
divided by converse's: above 1 means converse is faster), then the median
ratio and its spread. On a shared machine the drift between two
measurements taken minutes apart is larger than the difference being
measured; a ratio taken within one round, many times, is steadier.

    python3 benches/rounds.py BENCH FILTER ROUNDS CONVERSE_ID:PEER_ID ...

e.g.

    python3 benches/rounds.py tls 'tls_stream' 5 \\
        tls_stream/converse/65536:tls_stream/rustls/65536

Run it from the crate's root; IDs are criterion's GROUP/IMPL/SIZE.
"""
import json
import os
import statistics
import subprocess
import sys


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    bench, filt, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pairs = [tuple(p.split(":")) for p in sys.argv[4:]]
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    crit = os.path.join(target, "criterion")
    results = {p: [] for p in pairs}
    for r in range(rounds):
        out = subprocess.run(
            ["cargo", "bench", "--bench", bench, "--", filt, "--noplot",
             "--warm-up-time", "0.5", "--measurement-time", "1.5",
             "--sample-size", "20"],
            capture_output=True, text=True)
        if out.returncode != 0:
            print(f"round {r + 1} failed:\n{out.stderr[-2000:]}", flush=True)
            continue
        line = []
        for conv, peer in pairs:
            times = []
            for bid in (conv, peer):
                with open(os.path.join(crit, bid, "new", "estimates.json")) as f:
                    times.append(json.load(f)["median"]["point_estimate"])
            ratio = times[1] / times[0]
            results[(conv, peer)].append((times[0], times[1], ratio))
            line.append(f"{conv} {times[0]:.1f} ns vs {peer.split('/')[1]} "
                        f"{times[1]:.1f} ns = {ratio:.2f}x")
        print(f"round {r + 1}: " + " | ".join(line), flush=True)
    for (conv, peer), v in results.items():
        if not v:
            continue
        ratios = sorted(x[2] for x in v)
        print(f"{conv} vs {peer}: converse median "
              f"{statistics.median(x[0] for x in v):.1f} ns, peer median "
              f"{statistics.median(x[1] for x in v):.1f} ns, ratio median "
              f"{statistics.median(ratios):.2f}x (min {ratios[0]:.2f}, "
              f"max {ratios[-1]:.2f}, n={len(ratios)})")


if __name__ == "__main__":
    main()
