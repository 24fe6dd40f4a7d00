#!/usr/bin/env python3
"""Samples the WAL archive's lags from a drctl daemon's API and summarises
them (bench/archive-lag.sh).

    lag.py sample API SECONDS PHASE   # one TSV line per service and monitor sample
    lag.py summary FILE...            # a markdown table: p50 / p99 / max per phase and service
"""
import json
import sys
import time
import urllib.request


def sample(api, seconds, phase):
    seen = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"{api}/api/v1/rpo-rto", timeout=5) as r:
                report = json.load(r)
        except OSError as e:
            print(f"# {e}", file=sys.stderr)
            time.sleep(0.5)
            continue
        for s in report.get("services", []):
            w = s.get("wal_archive") or {}
            at = w.get("sampled_at")
            key = (s["service"], at)
            if at is None or key in seen:
                continue
            seen.add(key)
            print("\t".join(str(x) for x in (
                phase, s["service"], at,
                w.get("receive_lag_s"), w.get("archive_lag_s"), w.get("receiver"),
            )), flush=True)
        time.sleep(0.25)


def percentile(values, p):
    values = sorted(values)
    if not values:
        return None
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def summary(files):
    rows = {}
    for name in files:
        with open(name) as f:
            for line in f:
                if line.startswith("#"):
                    continue
                phase, service, _, receive, archive, _ = line.rstrip("\n").split("\t")
                r = rows.setdefault((phase, service), ([], []))
                if receive != "None":
                    r[0].append(float(receive))
                if archive != "None":
                    r[1].append(float(archive))
    fmt = lambda v: "-" if v is None else f"{v:.2f} s"
    print("| phase | service | samples | receive lag p50 / p99 / max | archive lag p50 / p99 / max |")
    print("|---|---|---|---|---|")
    for (phase, service), (receive, archive) in rows.items():
        print(f"| {phase} | {service} | {len(archive)} | "
              f"{fmt(percentile(receive, 50))} / {fmt(percentile(receive, 99))} / {fmt(max(receive, default=None))} | "
              f"{fmt(percentile(archive, 50))} / {fmt(percentile(archive, 99))} / {fmt(max(archive, default=None))} |")


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        sample(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    else:
        summary(sys.argv[2:])
