#!/usr/bin/env python3
"""JSON plumbing of drctl.sh (the drctl side of the failover benchmark).

Subcommands (all small; drctl.sh calls them with the virtualenv's python):

  labinfo DIR SERVICE          shell assignments describing the lab (eval them)
  health SERVICE SINCE_EPOCH   reads `drctl status -o json` on stdin; prints
                               "PRIMARY STANDBY ok" when the daemon's sample
                               (taken after SINCE_EPOCH) shows the standby
                               streaming and caught up, else "PRIMARY STANDBY wait REASON"
  opids                        reads `drctl operations list -o json`, prints the ids
  newop IDS_FILE [KIND]        reads the list, prints "ID KIND STATUS" of the newest
                               operation not in IDS_FILE (of KIND if given)
  last_auto_end                reads the list, prints the epoch (s) at which the newest
                               failover operation ended, or 0
  lost ACKED_FILE HOST PORT DBNAME [IDS_OUT]
                               acknowledged ids missing on HOST:PORT: prints
                               the count, writes the ids (JSON list) to IDS_OUT
  record ...                   one run as a JSON line (see cmd_record)
  summarize RUNS OUT N META    results JSON to OUT, markdown tables on stdout
  field A.B.C                  reads JSON on stdin, prints that field ("" if missing)
  duration 10s                 a drctl duration in seconds
"""

import json
import re
import shlex
import sys
import time
from urllib.parse import urlsplit
from datetime import datetime, timezone

STEP_ORDER = ["plan", "lease", "fence_source", "source_position", "catch_up",
              "promote_target", "write_probe", "dns_flip", "dns_confirm",
              "service_health", "record"]


def ts(s):
    """RFC 3339 (nanoseconds, Z) -> epoch seconds (float)."""
    if s is None:
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        raise ValueError(f"unparsable timestamp {s!r}")
    base, frac, tz = m.groups()
    tz = "+00:00" if tz == "Z" else tz
    t = datetime.fromisoformat(base + tz).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def pct(xs, p):
    """Linear interpolation between closest ranks (numpy's default), as patroni.sh."""
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return round(xs[f] + (xs[c] - xs[f]) * (k - f), 3)


def stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"n": 0, "p50": None, "p95": None, "min": None, "max": None, "mean": None, "values": []}
    return {"n": len(xs), "p50": pct(xs, 50), "p95": pct(xs, 95), "min": min(xs), "max": max(xs),
            "mean": round(sum(xs) / len(xs), 3), "values": xs}


# ------------------------------------------------------------------ labinfo --
def cmd_labinfo(d, service):
    import tomllib
    lab = json.load(open(f"{d}/lab.json"))
    cfg = tomllib.load(open(lab["config_path"], "rb"))
    svc = next(s for s in cfg["services"] if s["name"] == service)
    front = next(f for f in lab["fronts"] if f["service"] == service)
    out = {
        "DNS_SERVER": lab["dns_server"],
        "DNS_RECORD": front["record"],
        "FRONT_PORT": front["front_port"],
        "API_URL": lab["api_url"],
        "PG_BIN": lab["pg_bin"],
        "COOLDOWN": svc.get("failover", {}).get("cooldown", ""),
        "PROBE_INTERVAL": cfg.get("monitor", {}).get("interval", ""),
        "DBNAME": svc["postgres"][svc["regions"][0]]["dsn"].rsplit("/", 1)[-1],
    }
    lines = [f"{k}={shlex.quote(str(v))}" for k, v in out.items()]
    regions = []
    for c in lab["clusters"]:
        if c["service"] != service:
            continue
        r = c["region"]
        regions.append(r)
        lines.append(f"PG_PORT[{r}]={c['port']}")
        # The host a client in this namespace reaches the cluster on:
        # 127.0.0.1, or the region's site address in a namespaced lab.
        host = urlsplit(svc["postgres"][r]["dsn"]).hostname or "127.0.0.1"
        lines.append(f"PG_HOST[{r}]={shlex.quote(host)}")
        lines.append(f"DATA_DIR[{r}]={shlex.quote(c['data_dir'])}")
        lines.append(f"FRONT[{r}]={shlex.quote(svc['dns']['targets'][r] + ':' + str(front['front_port']))}")
    lines.append(f"REGIONS=({' '.join(regions)})")
    print("\n".join(lines))


def duration_s(s):
    """'10s', '1s', '500ms', '1m' -> seconds."""
    m = re.match(r"^\s*([\d.]+)\s*(ms|s|m|h)?\s*$", str(s))
    if not m:
        return None
    v = float(m.group(1))
    return v * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


# ------------------------------------------------------------------- health --
def cmd_health(service, since):
    since = float(since)
    try:
        rep = json.load(sys.stdin)["report"]
        s = next(x for x in rep["services"] if x["service"] == service)
    except Exception as e:  # daemon not answering yet, etc.
        print(f"- - wait no status ({type(e).__name__})")
        return
    primary = s.get("primary") or "-"
    sbs = s.get("standbys") or []
    standby = sbs[0]["region"] if sbs else "-"
    why = []
    if s.get("sampled_at") is None or ts(s["sampled_at"]) < since:
        why.append("sample older than the last change")
    if s.get("status") != "ok" or s.get("error"):
        why.append(f"service status {s.get('status')} {s.get('error') or ''}".strip())
    if len(sbs) != 1:
        why.append(f"{len(sbs)} standbys")
    for sb in sbs:
        if sb.get("status") != "ok" or sb.get("wal_receiver") != "streaming" or sb.get("error"):
            why.append(f"standby {sb['region']}: {sb.get('status')}/{sb.get('wal_receiver')} {sb.get('error') or ''}".strip())
        elif sb.get("byte_lag") not in (0, None) or sb.get("replay_byte_lag") not in (0, None):
            why.append(f"standby {sb['region']} lags {sb.get('byte_lag')}/{sb.get('replay_byte_lag')} bytes")
    print(f"{primary} {standby} " + ("ok" if not why else "wait " + "; ".join(why)))


# --------------------------------------------------------------- operations --
def read_ops():
    try:
        return json.load(sys.stdin)["operations"]
    except Exception:
        return None


def cmd_opids():
    for o in read_ops() or []:
        print(o["id"])


def cmd_newop(ids_file, kind=None):
    seen = {l.strip() for l in open(ids_file) if l.strip()}
    ops = read_ops()
    if ops is None:
        return
    new = [o for o in ops if o["id"] not in seen and (kind is None or o["kind"] == kind)]
    if new:
        new.sort(key=lambda o: ts(o["started_at"]) or 0)
        o = new[-1]
        print(o["id"], o["kind"], o["status"])


def cmd_last_auto_end():
    ends = [ts(o["ended_at"]) for o in read_ops() or [] if o["kind"] == "failover" and o.get("ended_at")]
    print(f"{max(ends):.3f}" if ends else "0")


# --------------------------------------------------------------------- lost --
def cmd_lost(acked_file, host, port, dbname, ids_out=None):
    import psycopg
    ids = [int(x) for x in open(acked_file) if x.strip()]
    with psycopg.connect(host=host, port=port, user="postgres", dbname=dbname,
                         connect_timeout=3) as c:
        missing = [r[0] for r in c.execute(
            "SELECT a.id FROM unnest(%s::bigint[]) a(id) "
            "WHERE NOT EXISTS (SELECT 1 FROM bench_writes b WHERE b.id = a.id) ORDER BY a.id", [ids])]
    if ids_out:
        json.dump(missing, open(ids_out, "w"))
    print(len(missing))


# ------------------------------------------------------------------- record --
def op_summary(show_file):
    d = json.load(open(show_file))
    op = d["operation"]
    steps = d.get("steps") or op.get("steps") or []
    res = op.get("result")
    m = json.loads(res) if isinstance(res, str) else (res or {})
    started, ended = ts(op.get("started_at")), ts(op.get("ended_at"))
    out = {
        "id": op["id"], "kind": op["kind"], "status": op["status"], "error": op.get("error"),
        "started_at": op.get("started_at"), "ended_at": op.get("ended_at"),
        "orchestrated_ms": round((ended - started) * 1000) if started and ended else None,
        "rto_ms": m.get("rto_ms"), "rto_from": m.get("rto_from"),
        "write_outage_ms": m.get("write_outage_ms"),
        "rpo_bytes": m.get("rpo_bytes"), "rpo_us": m.get("rpo_us"), "rpo_basis": m.get("rpo_basis"),
        "rpo_lower_bound": m.get("rpo_lower_bound"),
        "steps_ms": m.get("steps_ms") or {},
        "steps_sum_ms": sum((m.get("steps_ms") or {}).values()) if m.get("steps_ms") else None,
    }
    for s in steps:
        if s["step"] == "plan":
            try:
                plan = json.loads(s["output"])
                out["plan_fence"] = plan.get("fence")
                out["plan_expected_loss_us"] = plan.get("expected_loss_us")
            except Exception:
                pass
        if s["step"] == "fence_source":
            try:
                out["fence_method"] = json.loads(s["output"]).get("method")
            except Exception:
                pass
    return out, started, ended


def rejoin_summary(f):
    d = json.load(open(f))
    op = d["operation"]
    out = {"id": op["id"], "status": op["status"]}
    # `operations show` puts the steps beside the operation, not in it.
    steps = d.get("steps") or op.get("steps") or []
    t = [ts(s["started_at"]) for s in steps if s.get("started_at")] + \
        [ts(s["ended_at"]) for s in steps if s.get("ended_at")]
    if t:
        out["took_ms"] = round((max(t) - min(t)) * 1000)
    for s in steps:
        try:
            o = json.loads(s["output"]) if s.get("output") else {}
        except Exception:
            o = {}
        if s["step"] == "stop_node":
            out["was_running"] = o.get("was_running")
        if s["step"] == "rewind":
            out["method"] = o.get("method")
            out["rewind_error"] = o.get("rewind_error")
            out["rewind_ms"] = o.get("took_ms")
    return out


def cmd_record(kind, run, frm, to, writer_out, show_file, rejoin_file, lost, to_front, extra):
    w = json.loads(open(writer_out).read().strip().splitlines()[-1])
    op, started, ended = op_summary(show_file)
    extra = json.loads(extra)
    r = {"kind": kind, "run": int(run), "from": frm, "to": to,
         "outage_s": w["max_gap_s"], "acked": w["acked"], "lost_acked": int(lost),
         "errors": w["errors"], "connects": w["connects"], "dns_failures": w["dns_failures"],
         "writes_moved_to_new_primary": bool(w["server_changes"]) and w["server_changes"][-1][1] == to_front,
         "operation": op, "rejoin": rejoin_summary(rejoin_file)}
    lost_file = writer_out.replace(".writer.json", ".lost")
    try:
        r["lost_ids"] = json.load(open(lost_file))
    except Exception:
        pass
    if r.get("lost_ids"):
        # Which of the acks before the event were lost: 1 = the last one acknowledged
        # by the old primary (acks are in order; the old primary's come first).
        acked = [int(x) for x in open(writer_out.replace(".writer.json", ".acked")) if x.strip()]
        first_server = w["server_changes"][0][1] if w["server_changes"] else None
        pre = acked[:w["per_server"].get(first_server, 0)] if first_server else []
        r["lost_rank_from_last_ack_before_event"] = [len(pre) - pre.index(i) if i in pre else None
                                                     for i in r["lost_ids"]]
    t_kill = extra.pop("t_kill", None)
    if t_kill is not None and ended:
        t_kill = float(t_kill)
        r["kill_to_op_started_ms"] = round((started - t_kill) * 1000)
        r["kill_to_op_ended_ms"] = round((ended - t_kill) * 1000)
        if op["rto_ms"] is not None and op["rto_from"] == "detection":
            detected = ended - op["rto_ms"] / 1000
            r["kill_to_detection_ms"] = round((detected - t_kill) * 1000)
            r["detection_to_op_started_ms"] = round((started - detected) * 1000)
    r.update(extra)
    r["writer"] = w
    print(json.dumps(r))


# ---------------------------------------------------------------- summarize --
LABELS = {"switchover": "switchover (drctl switchover --yes)",
          "kill9": "kill -9 of the primary's postmaster, automatic failover by the daemon"}


def fmt_s(x):
    return "–" if x is None else f"{x:.2f} s"


def fmt_ms(x):
    return "–" if x is None else f"{x:.0f} ms"


def cmd_summarize(runs_file, out, n, meta):
    runs = [json.loads(l) for l in open(runs_file)] if runs_file and open(runs_file).read().strip() else []
    meta = json.loads(meta)
    res = {"tool": "drctl", "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "outage_definition": "longest gap (s) between two consecutive acknowledged inserts of a "
                                "client inserting one row every 50 ms (autocommit) that resolves "
                                "orders.shop.lab. against the lab's DNS server before every (re)connect "
                                "and connects to that region's front with target_session_attrs=read-write",
           "runs_requested": int(n)}
    res.update(meta)
    for kind in ("switchover", "kill9"):
        rs = [r for r in runs if r["kind"] == kind]
        o = stats([r["outage_s"] for r in rs])
        k = {"description": LABELS[kind], "n": len(rs),
             "p50_s": o["p50"], "p95_s": o["p95"], "min_s": o["min"], "max_s": o["max"], "mean_s": o["mean"],
             "lost_acked_total": sum(r["lost_acked"] for r in rs),
             "all_writes_moved": all(r["writes_moved_to_new_primary"] for r in rs),
             "outages_s": o["values"],
             "drctl": {
                 "rto_ms": stats([r["operation"]["rto_ms"] for r in rs]),
                 "orchestrated_ms": stats([r["operation"]["orchestrated_ms"] for r in rs]),
                 "steps_sum_ms": stats([r["operation"]["steps_sum_ms"] for r in rs]),
                 "steps_ms": {},
             },
             "rejoin": {"took_ms": stats([r["rejoin"].get("took_ms") for r in rs]),
                        "methods": sorted({str(r["rejoin"].get("method")) for r in rs})},
             "runs": rs}
        if rs:
            k["drctl"]["rto_from"] = rs[0]["operation"]["rto_from"]
        steps = [s for s in STEP_ORDER if any(s in r["operation"]["steps_ms"] for r in rs)]
        steps += sorted({s for r in rs for s in r["operation"]["steps_ms"]} - set(steps))
        for s in steps:
            k["drctl"]["steps_ms"][s] = {x: v for x, v in stats(
                [r["operation"]["steps_ms"].get(s) for r in rs]).items() if x != "values"}
        if kind == "switchover":
            k["drctl"]["write_outage_ms"] = stats([r["operation"]["write_outage_ms"] for r in rs])
            k["drctl"]["command_s"] = stats([r.get("command_s") for r in rs])
        else:
            for f in ("kill_to_detection_ms", "detection_to_op_started_ms", "kill_to_op_started_ms",
                      "kill_to_op_ended_ms"):
                k["drctl"][f] = stats([r.get(f) for r in rs])
            k["rpo_bytes_total"] = sum(r["operation"].get("rpo_bytes") or 0 for r in rs)
        res[kind] = k
    json.dump(res, open(out, "w"), indent=2)

    build = meta.get("drctl_build", "")
    print(f"| drctl {meta.get('versions', {}).get('drctl', '')} ({build} build), 2 regions, loopback "
          "| runs | write outage p50 | p95 | min | max | acked writes lost |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("switchover", "kill9"):
        k = res[kind]
        if k["n"]:
            print(f"| {LABELS[kind]} | {k['n']} | {fmt_s(k['p50_s'])} | {fmt_s(k['p95_s'])} | "
                  f"{fmt_s(k['min_s'])} | {fmt_s(k['max_s'])} | {k['lost_acked_total']} |")
    print()
    print("| drctl's own figures | switchover p50 | p95 | kill -9 failover p50 | p95 |")
    print("|---|---|---|---|---|")
    sw, kf = res["switchover"]["drctl"], res["kill9"]["drctl"]

    def row(label, a, b):
        a = a or {}
        b = b or {}
        print(f"| {label} | {fmt_ms(a.get('p50'))} | {fmt_ms(a.get('p95'))} | "
              f"{fmt_ms(b.get('p50'))} | {fmt_ms(b.get('p95'))} |")
    row("orchestrated part (operation started → ended)", sw["orchestrated_ms"], kf["orchestrated_ms"])
    row("rto_ms (switchover: from the request; failover: from detection = first failed probe)",
        sw["rto_ms"], kf["rto_ms"])
    row("write_outage_ms as drctl reports it", sw.get("write_outage_ms"), None)
    row("kill → detection (first failed probe)", None, kf.get("kill_to_detection_ms"))
    row("detection → operation started (3 failed probes over ≥ 3 s, standby disconnected)", None,
        kf.get("detection_to_op_started_ms"))
    row("kill → operation ended", None, kf.get("kill_to_op_ended_ms"))
    for s in dict.fromkeys(list(sw["steps_ms"]) + list(kf["steps_ms"])):
        row(f"step `{s}`", sw["steps_ms"].get(s), kf["steps_ms"].get(s))
    row("rejoin of the old primary (automatic: the switchover's follow-up, the guard after a failover)",
        res["switchover"]["rejoin"]["took_ms"], res["kill9"]["rejoin"]["took_ms"])
    row("switchover command, start → old primary streaming again", sw.get("command_s") and
        {k: (v * 1000 if isinstance(v, (int, float)) else v) for k, v in sw["command_s"].items()}, None)


def cmd_field(path):
    try:
        v = json.load(sys.stdin)
        for k in path.split("."):
            v = v[int(k)] if isinstance(v, list) else v[k]
    except Exception:
        v = ""
    print("" if v is None else (v if isinstance(v, str) else json.dumps(v)))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {"labinfo": cmd_labinfo, "health": cmd_health, "opids": cmd_opids, "newop": cmd_newop,
     "last_auto_end": cmd_last_auto_end, "lost": cmd_lost, "record": cmd_record,
     "summarize": cmd_summarize, "field": cmd_field, "duration": lambda s: print(duration_s(s))}[cmd](*args)


if __name__ == "__main__":
    main()
