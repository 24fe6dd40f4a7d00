#!/usr/bin/python3
"""Driver and analysis of the partition benchmark (see README.md).

  bench.py run --side drctl|patroni ...   one pass: writers, partitions, heals (drctl.sh / patroni.sh)
  bench.py analyze --work DIR --out FILE  per-run figures and summary from a pass's raw files
  bench.py peers RESULTS_DIR              the side-by-side markdown tables (partition-peers.sh)

Only the standard library, psycopg2 and PyYAML (Debian packages): run it with
/usr/bin/python3. Every time is taken on two clocks: the wall clock (to line
events up with drctl's operations) and CLOCK_MONOTONIC (time.monotonic(), the
same clock the writers log; every gap and every order is computed on it).
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime

MODES = ["region-a", "region-b", "witness", "ctl-a", "a-b", "etcd-leader-kill"]
REGIONS = ("region-a", "region-b")
HOLD_S = 30.0            # how long a partition holds (not region-a)
REGION_A_MAX_S = 60.0    # region-a: until the failover completes, at most this
HEAL_TIMEOUT_S = 120.0   # healthy again after a heal, at most this (else: recorded, repaired by hand)
MAX_LAG_BYTES = 1 << 20  # "caught up" while both writers keep writing


def log(msg):
    print(time.strftime("[%H:%M:%S] ") + msg, file=sys.stderr, flush=True)


def clocks():
    return {"t": round(time.time(), 4), "m": round(time.monotonic(), 4)}


def ts(s):
    """RFC 3339 (nanoseconds, Z or offset) -> epoch seconds."""
    if not s:
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        return None
    base, frac, tz = m.groups()
    t = datetime.fromisoformat(base + ("+00:00" if tz == "Z" else tz)).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def pct(xs, p):
    """Linear interpolation between closest ranks (numpy's default), as bench/failover."""
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return round(xs[f] + (xs[c] - xs[f]) * (k - f), 3)


def run(cmd, timeout=60, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return r


class Stop(Exception):
    pass


def _on_term(signum, _frame):
    raise Stop(f"signal {signum}")


# ---------------------------------------------------------------------- lab --
class Lab:
    def __init__(self, drctl, lab_dir):
        self.drctl, self.dir = drctl, lab_dir
        self.status = self.read_status()
        st = self.status
        self.sites = {s["site"]: s for s in st["network"]["sites"]}
        self.etcd_urls = [m["client_url"] for m in st["etcd"]]

    def cmd(self, *args, timeout=60, check=True):
        return run([self.drctl, "lab", "--dir", self.dir, *args], timeout=timeout, check=check)

    def read_status(self):
        return json.loads(self.cmd("status", "-o", "json").stdout)

    def ns(self, site):
        return self.sites[site]["namespace"]

    def addr(self, site):
        return self.sites[site]["address"]

    def apply(self, mode):
        """Applies a mode; returns what heal() needs."""
        if mode == "etcd-leader-kill":
            out = self.cmd("etcd", "kill-leader").stdout.strip()
            return {"killed": out.rsplit(" ", 1)[-1], "said": out}
        self.cmd("partition", mode)
        return {}

    def heal(self, mode, state):
        if mode == "etcd-leader-kill":
            if state.get("killed"):
                self.cmd("etcd", "start", state["killed"])
        else:
            self.cmd("partition", "heal")

    def heal_all(self):
        """Best effort: no partition, every etcd member running."""
        self.cmd("partition", "heal", check=False)
        try:
            for m in self.read_status().get("etcd") or []:
                if not m.get("running"):
                    self.cmd("etcd", "start", m["name"], check=False)
        except Exception as e:  # noqa: BLE001
            log(f"heal_all: {e}")

    def whole(self):
        """(ok, why): no partition rule, every etcd member answers, one leads."""
        st = self.read_status()
        why = []
        if st["network"].get("partition_rules"):
            why.append("partition rules left")
        ms = st.get("etcd") or []
        if not all(m.get("answers") for m in ms):
            why.append("etcd: " + ",".join(m["name"] for m in ms if not m.get("answers")) + " not answering")
        if not any(m.get("leader") for m in ms):
            why.append("etcd: no leader")
        return (not why, "; ".join(why))


def pg_query(dsn, sql, timeout=2):
    import psycopg2
    c = psycopg2.connect(dsn, connect_timeout=timeout)
    try:
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            cur.execute(sql)
            return cur.fetchall()
    finally:
        c.close()


def server_state(dsn):
    """'primary' with its timeline, 'standby', or None (unreachable)."""
    try:
        rows = pg_query(dsn, "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN NULL "
                             "ELSE pg_walfile_name(pg_current_wal_lsn()) END, "
                             "current_setting('default_transaction_read_only')")
    except Exception:
        return None, None
    rec, wal, ro = rows[0]
    if rec:
        return "standby", None
    return ("primary" if ro == "off" else "read-only"), int(wal[:8], 16)


# -------------------------------------------------------------------- sides --
class Side:
    """What the run loop needs of a side (drctl or Patroni)."""
    name = "?"
    writer_names = ("direct", "second")

    def __init__(self, a, lab):
        self.a, self.lab = a, lab
        self.procs = {}

    # writers -----------------------------------------------------------
    def writer_cmds(self):
        raise NotImplementedError

    def start_writers(self):
        for wid, (cmd, site) in self.writer_cmds().items():
            out = os.path.join(self.a.work, f"writer-{wid}.jsonl")
            pidf = os.path.join(self.a.work, f"writer-{wid}.pid")
            full = [sys.executable, self.a.writer, *cmd, "--id", wid, "--out", out, "--pid-file", pidf]
            if site:
                full = ["ip", "netns", "exec", self.lab.ns(site), *full]
            err = open(os.path.join(self.a.work, f"writer-{wid}.err"), "a")
            self.procs[wid] = subprocess.Popen(full, stdout=err, stderr=err, stdin=subprocess.DEVNULL,
                                               start_new_session=True)
            log(f"writer {wid}: {' '.join(full)}")

    def stop_writers(self):
        for wid, p in self.procs.items():
            if p.poll() is None:
                p.terminate()
        for wid, p in self.procs.items():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def writers_alive(self):
        return {w: p.poll() is None for w, p in self.procs.items()}

    # the cluster -------------------------------------------------------
    def servers(self):
        """{region: dsn} reachable from this (the root) namespace."""
        raise NotImplementedError

    def states(self):
        return {r: server_state(d) for r, d in self.servers().items()}

    def primary_region(self):
        st = self.states()
        prim = [r for r, (s, _) in st.items() if s == "primary"]
        return (prim[0] if len(prim) == 1 else None), st

    def timeline(self):
        _, st = self.primary_region()
        tls = [tl for s, tl in st.values() if tl is not None]
        return max(tls) if tls else None

    def healthy(self, since):
        raise NotImplementedError

    def wait_healthy(self, since, timeout):
        end = time.monotonic() + timeout
        why = ""
        while time.monotonic() < end:
            try:
                ok, why = self.lab.whole()
                if ok:
                    ok, why = self.healthy(since)
                if ok:
                    return True, ""
            except Exception as e:  # noqa: BLE001
                why = f"{type(e).__name__}: {e}"
            time.sleep(0.5)
        return False, why

    def failover_done(self, t_cut, old_region):
        """Wall time the failover was seen complete, else None."""
        raise NotImplementedError

    def failovers(self, t0, t1):
        """The side's own record of failovers started in [t0, t1] (wall)."""
        return []

    def switch_to(self, region):
        raise NotImplementedError

    def repair(self):
        """Make the standby follow the primary again (only after a heal left the pair broken)."""
        raise NotImplementedError

    def info(self):
        return {}


class DrctlSide(Side):
    name = "drctl"
    writer_names = ("direct", "dns")

    def __init__(self, a, lab):
        super().__init__(a, lab)
        st = lab.status
        self.config = st["config"]
        self.api = st["api_url"].rstrip("/")
        self.cl = {c["region"]: c for c in st["clusters"] if c["service"] == a.service}
        self.front = next(f for f in st["fronts"] if f["service"] == a.service)
        self.dns_server = st["dns"]["server"]
        self.dbname = a.service

    def dsn(self, region):
        return (f"host={self.lab.addr(region)} port={self.cl[region]['port']} user=postgres "
                f"dbname={self.dbname}")

    def servers(self):
        return {r: self.dsn(r) for r in REGIONS}

    def writer_cmds(self):
        a_host = f"{self.lab.addr('region-a')}:{self.cl['region-a']['port']}"
        return {
            "direct": (["--direct", a_host, "--dbname", self.dbname], "region-a"),
            "dns": (["--dns", self.dns_server, self.front["record"], str(self.front["front_port"]),
                     "--dbname", self.dbname], None),
        }

    def drctl(self, *args, timeout=120, check=True):
        return run([self.a.drctl, *args, "--config", self.config], timeout=timeout, check=check)

    def healthy(self, since):
        rep = json.loads(self.drctl("status", "-o", "json", timeout=30).stdout)["report"]
        s = next(x for x in rep["services"] if x["service"] == self.a.service)
        why = []
        if (ts(s.get("sampled_at")) or 0) < since:
            why.append("sample older than the heal")
        if s.get("status") != "ok" or s.get("error"):
            why.append(f"status {s.get('status')} {s.get('error') or ''}")
        sbs = s.get("standbys") or []
        if len(sbs) != 1:
            why.append(f"{len(sbs)} standbys")
        for sb in sbs:
            if sb.get("status") != "ok" or sb.get("wal_receiver") != "streaming":
                why.append(f"standby {sb['region']} {sb.get('status')}/{sb.get('wal_receiver')}")
            elif (sb.get("byte_lag") or 0) > MAX_LAG_BYTES:
                why.append(f"standby {sb['region']} lags {sb.get('byte_lag')} bytes")
        ops = self.operations()
        running = [o for o in ops if o.get("status") == "running" and o.get("service") == self.a.service]
        if running:
            why.append("operation running: " + ",".join(o["kind"] for o in running))
        return (not why, "; ".join(why))

    def operations(self):
        with urllib.request.urlopen(f"{self.api}/api/v1/operations?limit=200", timeout=5) as r:
            return json.load(r)["operations"]

    def failovers(self, t0, t1):
        out = []
        for o in self.operations():
            st = ts(o.get("started_at")) or 0
            if o["kind"] == "failover" and t0 <= st <= t1:
                res = o.get("result") or {}
                out.append({"id": o["id"], "service": o["service"], "status": o["status"],
                            "started_at": o["started_at"], "ended_at": o.get("ended_at"),
                            "error": o.get("error"), "rto_ms": res.get("rto_ms") if isinstance(res, dict) else None})
        return out

    def failover_done(self, t_cut, old_region):
        for o in self.failovers(t_cut, time.time() + 1):
            if o["service"] == self.a.service and o["status"] == "succeeded":
                return time.time()
        return None

    def switch_to(self, region):
        r = self.drctl("switchover", self.a.service, "--to", region, "--yes", "-o", "json",
                       timeout=180, check=False)
        try:
            op = json.loads(r.stdout)["operation"]
        except Exception:
            op = {"status": f"exit {r.returncode}", "error": r.stderr.strip()[-400:]}
        return {"kind": "drctl switchover", "id": op.get("id"), "status": op.get("status"),
                "error": op.get("error"), "rejoin": (op.get("rejoin") or {}).get("status")}

    def repair(self):
        prim, st = self.primary_region()
        if prim is None:
            return {"method": "none", "error": f"no single primary: {st}"}
        other = [r for r in REGIONS if r != prim][0]
        r = self.drctl("rejoin", self.a.service, "--region", other, "--yes", "-o", "json", timeout=300, check=False)
        try:
            op = json.loads(r.stdout)["operation"]
            return {"method": f"drctl rejoin --region {other}", "status": op.get("status"), "error": op.get("error")}
        except Exception:
            return {"method": f"drctl rejoin --region {other}", "status": f"exit {r.returncode}",
                    "error": r.stderr.strip()[-400:]}

    def info(self):
        return {"service": self.a.service, "config": self.config, "api_url": self.api, "dns_server": self.dns_server,
                "record": self.front["record"], "front_port": self.front["front_port"],
                "clusters": {r: {"port": c["port"], "data_dir": c["data_dir"]} for r, c in self.cl.items()},
                "node_of": {c["data_dir"]: r for r, c in self.cl.items()}}


class PatroniSide(Side):
    name = "patroni"
    writer_names = ("direct", "multihost")

    def __init__(self, a, lab):
        super().__init__(a, lab)
        self.p = json.load(open(a.patroni))
        self.nodes = self.p["nodes"]  # [{name, region, addr, pg_port, api_port, yml, data_dir}]
        self.by_region = {n["region"]: n for n in self.nodes}

    def dsn(self, region):
        n = self.by_region[region]
        return f"host={n['addr']} port={n['pg_port']} user=postgres password=postgres dbname=postgres"

    def servers(self):
        return {r: self.dsn(r) for r in REGIONS}

    def writer_cmds(self):
        a = self.by_region["region-a"]
        b = self.by_region["region-b"]
        return {
            "direct": (["--direct", f"{a['addr']}:{a['pg_port']}", "--password", "postgres"], "region-a"),
            "multihost": (["--multihost", f"{a['addr']}:{a['pg_port']},{b['addr']}:{b['pg_port']}",
                           "--password", "postgres"], None),
        }

    def rest(self, region, path):
        n = self.by_region[region]
        r = run(["ip", "netns", "exec", self.lab.ns(region), "curl", "-s", "-o", "/dev/null", "-w",
                 "%{http_code}", "--max-time", "1", f"http://{n['addr']}:{n['api_port']}{path}"],
                timeout=10, check=False)
        return r.stdout.strip()

    def healthy(self, since):
        roles = {r: ("primary" if self.rest(r, "/primary") == "200" else
                     "replica" if self.rest(r, "/replica") == "200" else "-") for r in REGIONS}
        prim = [r for r, x in roles.items() if x == "primary"]
        if len(prim) != 1:
            return False, f"roles {roles}"
        other = [r for r in REGIONS if r != prim[0]][0]
        if roles[other] != "replica":
            return False, f"roles {roles}"
        rows = pg_query(self.dsn(prim[0]),
                        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' "
                        f"AND pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) < {MAX_LAG_BYTES}")
        if rows[0][0] != 1:
            return False, "replica not streaming / caught up"
        return True, ""

    def failover_done(self, t_cut, old_region):
        other = [r for r in REGIONS if r != old_region][0]
        return time.time() if self.rest(other, "/primary") == "200" else None

    def switch_to(self, region):
        src = [r for r in REGIONS if r != region][0]
        r = run(["patronictl", "-c", self.by_region[src]["yml"], "switchover", "--leader",
                 self.by_region[src]["name"], "--candidate", self.by_region[region]["name"], "--force"],
                timeout=120, check=False)
        return {"kind": "patronictl switchover", "status": "ok" if r.returncode == 0 else f"exit {r.returncode}",
                "error": (r.stdout + r.stderr).strip()[-400:] if r.returncode else None}

    def repair(self):
        prim = [r for r in REGIONS if self.rest(r, "/primary") == "200"]
        if len(prim) != 1:
            return {"method": "none", "error": f"leaders: {prim}"}
        other = [r for r in REGIONS if r != prim[0]][0]
        n = self.by_region[other]
        r = run(["patronictl", "-c", n["yml"], "reinit", self.p["scope"], n["name"], "--force"],
                timeout=120, check=False)
        return {"method": f"patronictl reinit {n['name']}", "status": "ok" if r.returncode == 0 else f"exit {r.returncode}",
                "output": (r.stdout + r.stderr).strip()[-400:]}

    def info(self):
        return {"config": self.p.get("config"), "dcs": self.p.get("dcs"), "scope": self.p.get("scope"),
                "namespace": self.p.get("namespace"),
                "nodes": self.nodes, "node_of": {n["data_dir"]: n["region"] for n in self.nodes}}


# --------------------------------------------------------------- run loop --
class Pass:
    def __init__(self, a):
        self.a = a
        self.lab = Lab(a.drctl, a.lab_dir)
        self.side = DrctlSide(a, self.lab) if a.side == "drctl" else PatroniSide(a, self.lab)
        self.events = open(os.path.join(a.work, "events.jsonl"), "a", buffering=1)
        self.rng = random.Random(a.seed)

    def event(self, d):
        self.events.write(json.dumps(d) + "\n")

    def acked_recently(self, wid, within=1.0):
        """Whether writer wid logged an ack in the last `within` seconds (reads the file's tail)."""
        path = os.path.join(self.a.work, f"writer-{wid}.jsonl")
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 4096))
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return False
        now = time.monotonic()
        for line in reversed(lines):
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if "id" in d:
                return now - d["m"] <= within
        return False

    def ready(self, label):
        """Healthy, primary in region-a, both writers acknowledging."""
        t0 = time.time()
        end = time.monotonic() + 2 * HEAL_TIMEOUT_S
        while True:
            ok, why = self.side.wait_healthy(0, HEAL_TIMEOUT_S)
            if not ok:
                raise RuntimeError(f"not healthy before {label}: {why}")
            prim, st = self.side.primary_region()
            if prim is not None:
                break
            # healthy a moment ago, no single primary now: something happened; look again
            log(f"{label}: no single primary ({st}); waiting")
            if time.monotonic() > end:
                raise RuntimeError(f"no single primary before {label}: {st}")
            time.sleep(2)
        if prim != "region-a":
            log(f"{label}: primary is {prim}; switching back to region-a")
            c_sw = clocks()
            tl_before = self.side.timeline()
            sw = self.side.switch_to("region-a")
            ok, why = self.side.wait_healthy(time.time(), HEAL_TIMEOUT_S)
            prim, st = self.side.primary_region()
            self.event({"ev": "switchback", "label": label, **c_sw, "result": sw, "timeline_before": tl_before,
                        "timeline_after": self.side.timeline(), "primary_after": prim})
            log(f"{label}: switchback {sw}")
            if not ok:
                raise RuntimeError(f"not healthy after the switchback before {label}: {why}")
            if prim != "region-a":
                raise RuntimeError(f"switchback before {label} left the primary in {prim}: {st}")
        end = time.monotonic() + 60
        while not all(self.acked_recently(w) for w in self.side.writer_names):
            if time.monotonic() > end:
                raise RuntimeError(f"writers not acknowledging before {label}: alive {self.side.writers_alive()}")
            time.sleep(0.2)
        time.sleep(2.0)  # a steady stretch of acks before the cut
        return round(time.time() - t0, 2)

    def repair(self, label, why):
        """The heal did not bring the pair back: record it, repair by hand, go on."""
        log(f"{label}: NOT healthy {HEAL_TIMEOUT_S:.0f} s after the heal ({why}); repairing")
        c = clocks()
        rep = self.side.repair()
        ok, why2 = self.side.wait_healthy(time.time(), HEAL_TIMEOUT_S)
        self.event({"ev": "repair", "label": label, **c, "reason": why, "result": rep, "healthy_after": ok,
                    "still": None if ok else why2})
        log(f"{label}: repair {rep}: {'healthy again' if ok else 'still not healthy: ' + why2}")
        if not ok:
            raise RuntimeError(f"{label}: not healthy after the heal, nor after a repair: {why2}")

    def one_run(self, mode, i):
        label = f"{mode}-{i}"
        prep_s = self.ready(label)
        pre_tl = self.side.timeline()
        c_cut = clocks()
        state = self.lab.apply(mode)
        c_applied = clocks()
        log(f"{label}: applied ({state or ''}) timeline {pre_tl}")
        c_fo = None
        if mode == "region-a":
            end = time.monotonic() + REGION_A_MAX_S
            while time.monotonic() < end:
                if self.side.failover_done(c_cut["t"], "region-a"):
                    c_fo = clocks()
                    break
                time.sleep(0.5)
        else:
            time.sleep(self.a.hold)
        c_heal = clocks()
        self.lab.heal(mode, state)
        ok, why = self.side.wait_healthy(c_heal["t"], HEAL_TIMEOUT_S)
        c_healthy = clocks()
        # Settle: what a heal sets off (an etcd election forced by the healed
        # member, a rejoin) lands inside this run, before any switchback.
        time.sleep(self.a.settle)
        post_prim, post_states = self.side.primary_region()
        post_tl = self.side.timeline()
        c_end = clocks()
        fos = self.side.failovers(c_cut["t"], c_end["t"])
        ev = {"ev": "run", "label": label, "mode": mode, "run": i, "prep_s": prep_s,
              "cut": c_cut, "applied": c_applied, "failover_seen": c_fo, "heal": c_heal,
              "healthy": c_healthy if ok else None, "unhealthy_reason": None if ok else why,
              "end": c_end, "apply_state": state, "pre_timeline": pre_tl, "post_timeline": post_tl,
              "post_primary": post_prim, "post_states": {r: list(v) for r, v in post_states.items()},
              "side_failovers": fos, "writers_alive": self.side.writers_alive()}
        self.event(ev)
        log(f"{label}: healed, healthy {'after %.1f s' % (c_healthy['m'] - c_heal['m']) if ok else 'NO: ' + why}; "
            f"primary {post_prim}, timeline {pre_tl} -> {post_tl}, side failovers {len(fos)}"
            + (f", failover seen {c_fo['m'] - c_cut['m']:.1f} s after the cut" if c_fo else ""))
        if not ok:
            self.repair(label, why)

    def random_sequence(self, n):
        rng = random.Random(self.a.seed)
        self.ready("random")
        c_start = clocks()
        self.event({"ev": "random_start", "seed": self.a.seed, "steps": n, "timeline": self.side.timeline(),
                    **c_start})
        for k in range(1, n + 1):
            mode = rng.choice(MODES)
            dur = round(rng.uniform(5, 40), 1)
            gap = round(rng.uniform(5, 20), 1)
            prim, st = self.side.primary_region()
            tl = self.side.timeline()
            c_cut = clocks()
            try:
                state = self.lab.apply(mode)
            except Exception as e:  # noqa: BLE001 (e.g. kill-leader while a member is down)
                state = {"error": str(e)}
            time.sleep(dur)
            c_heal = clocks()
            self.lab.heal(mode, state)
            self.event({"ev": "step", "k": k, "mode": mode, "duration_s": dur, "gap_s": gap,
                        "primary_at_cut": prim, "states_at_cut": {r: list(v) for r, v in st.items()},
                        "timeline_at_cut": tl, "cut": c_cut, "heal": c_heal, "apply_state": state})
            log(f"random {k}/{n}: {mode} for {dur} s (primary {prim}, timeline {tl}), then healed {gap} s")
            time.sleep(gap)
        c_heal = clocks()
        self.lab.heal_all()
        ok, why = self.side.wait_healthy(c_heal["t"], HEAL_TIMEOUT_S)
        c_healthy = clocks()
        time.sleep(2.0)
        prim, st = self.side.primary_region()
        c_end = clocks()
        fos = self.side.failovers(c_start["t"], c_end["t"])
        self.event({"ev": "random_end", "healthy": c_healthy if ok else None, "unhealthy_reason": None if ok else why,
                    "end": c_end, "primary": prim, "timeline": self.side.timeline(),
                    "states": {r: list(v) for r, v in st.items()}, "side_failovers": fos})
        log(f"random: done; healthy {'yes' if ok else 'NO: ' + why}; primary {prim}; side failovers {len(fos)}")
        if not ok:
            self.repair("random", why)

    def go(self):
        a = self.a
        modes = [m for m in (a.modes.split(",") if a.modes else MODES) if m]
        for m in modes:
            if m not in MODES:
                raise SystemExit(f"unknown mode {m!r}; modes: {', '.join(MODES)}")
        meta = {"ev": "pass_start", "side": a.side, "label": a.label, "runs": a.runs, "random": a.random,
                "seed": a.seed, "modes": modes, "hold_s": a.hold, "settle_s": a.settle, "region_a_max_s": REGION_A_MAX_S,
                "lab_dir": a.lab_dir, "side_info": self.side.info(), **clocks()}
        self.event(meta)
        self.side.start_writers()
        try:
            for mode in modes:
                for i in range(1, a.runs + 1):
                    self.one_run(mode, i)
            if a.random > 0:
                self.random_sequence(a.random)
        finally:
            try:
                self.lab.heal_all()
            except Exception as e:  # noqa: BLE001
                log(f"heal at the end: {e}")
            self.side.stop_writers()
            self.event({"ev": "pass_end", **clocks()})


# ---------------------------------------------------------------- analysis --
def load_jsonl(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line cut by a crash
    return out


def split_brain(acks):
    """acks: merged, sorted by m: (m, writer, id, srv, tl). Returns the split-brain acks.

    An ack by server X on timeline T is a split-brain row when another
    server Y had already acknowledged a row on a timeline >= T: Y was
    promoted from X's history (or beside it), so X should have stopped
    acknowledging before Y's first write."""
    best = {}  # srv -> highest timeline it acknowledged so far
    bad = []
    for a in acks:
        _, _, _, srv, tl = a
        if any(s != srv and t >= tl for s, t in best.items()):
            bad.append(a)
        if tl > best.get(srv, -1):
            best[srv] = tl
    return bad


def writer_window(acks, t0, t1):
    """Longest gap between consecutive acks around [t0, t1] (monotonic):
    the last ack before t0, every ack in the window, and t1 if the writer had
    not acknowledged again by then (an open gap: resumed False)."""
    prev = None
    inside = []
    for a in acks:
        if a[0] < t0:
            prev = a
        elif a[0] <= t1:
            inside.append(a)
        else:
            break
    seq = ([prev] if prev else []) + inside
    gap, gs, ge = 0.0, None, None
    for x, y in zip(seq, seq[1:]):
        if y[0] - x[0] > gap:
            gap, gs, ge = y[0] - x[0], x[0], y[0]
    last = seq[-1][0] if seq else None
    resumed = last is not None and t1 - last <= 1.0
    if last is not None and not resumed and t1 - last > gap:
        gap, gs, ge = t1 - last, last, None
    if not seq:
        gap = t1 - t0
    return {"outage_s": round(gap, 3), "gap_from_cut_s": None if gs is None else round(gs - t0, 3),
            "gap_to_cut_s": None if ge is None else round(ge - t0, 3), "resumed": resumed,
            "acks_in_window": len(inside)}


def analyze(work, out_path=None, label=None):
    evs = load_jsonl(os.path.join(work, "events.jsonl"))
    meta = next((e for e in evs if e["ev"] == "pass_start"), {})
    side_info = meta.get("side_info") or {}
    node_of = side_info.get("node_of") or {}
    writers = {}
    errors = {}
    for fn in sorted(os.listdir(work)):
        m = re.match(r"^writer-(.+)\.jsonl$", fn)
        if not m:
            continue
        wid = m.group(1)
        lines = load_jsonl(os.path.join(work, fn))
        writers[wid] = [(d["m"], wid, d["id"], d["srv"], d["tl"]) for d in lines if "id" in d]
        errors[wid] = [d for d in lines if d.get("ev") == "error"]
    merged = sorted(a for w in writers.values() for a in w)
    bad = split_brain(merged)
    region = lambda srv: node_of.get(srv, srv)

    runs_ev = [e for e in evs if e["ev"] == "run"]
    steps = [e for e in evs if e["ev"] == "step"]
    rstart = next((e for e in evs if e["ev"] == "random_start"), None)
    rend = next((e for e in evs if e["ev"] == "random_end"), None)
    pend = next((e for e in evs if e["ev"] == "pass_end"), None)
    # window boundaries (monotonic): each cut to the next cut (or the pass's end)
    cuts = [e["cut"]["m"] for e in runs_ev] + ([rstart["m"]] if rstart else [])
    last_m = pend["m"] if pend else (merged[-1][0] if merged else 0)

    def bad_in(t0, t1):
        # Per window (a run: its cut to the next cut; a random step likewise),
        # from a clean slate: a conflict is counted in the run that caused it,
        # and a history that won it is not counted again in every later run.
        return split_brain([a for a in merged if t0 <= a[0] < t1])

    def last_tl_before(t):
        tl = None
        for a in merged:
            if a[0] >= t:
                break
            tl = a[4]
        return tl

    sws = [e for e in evs if e["ev"] == "switchback"]
    repairs = [e for e in evs if e["ev"] == "repair"]
    ops_all = {}
    for e in runs_ev + ([rend] if rend else []):
        for o in e.get("side_failovers") or []:
            ops_all[o["id"]] = o
    # drctl's failover operations of the measured service, by start (monotonic, via the wall clock offset)
    off = (meta["m"] - meta["t"]) if meta else 0.0
    service_ops = sorted((ts(o["started_at"]) + off, o) for o in ops_all.values()
                         if o.get("service") == (side_info.get("service") or o.get("service")))

    runs = []
    for idx, e in enumerate(runs_ev):
        t_cut = e["cut"]["m"]
        nxt = cuts[idx + 1] if idx + 1 < len(cuts) else last_m
        sw = next((x for x in sws if t_cut < x["m"] < nxt), None)
        w_end = sw["m"] if sw else nxt   # the run's window: from its cut to the switchback or the next cut
        pre_tl = e.get("pre_timeline") or last_tl_before(t_cut)
        # the timeline at the end of the window: before the switchback, else the next run's start
        if sw:
            end_tl = sw.get("timeline_before")
        elif idx + 1 < len(runs_ev):
            end_tl = runs_ev[idx + 1].get("pre_timeline")
        else:
            end_tl = (rstart or {}).get("timeline") or e.get("post_timeline")
        acked_tls = [a[4] for a in merged if t_cut <= a[0] < w_end]
        promotions = None
        if pre_tl is not None:
            promotions = max(0, max([end_tl or 0, e.get("post_timeline") or 0] + acked_tls) - pre_tl)
            # two servers promoted to the same new timeline are two promotions
            pairs = {(a[3], a[4]) for a in merged if t_cut <= a[0] < w_end and a[4] > pre_tl}
            promotions = max(promotions, len(pairs))
        ops = [o for t, o in service_ops if t_cut <= t < w_end]
        ops_promoted = [o for o in ops if o.get("status") == "succeeded"]
        failovers = max(promotions or 0, len(ops_promoted)) if (promotions is not None or ops) else None
        sb = bad_in(t_cut, nxt)
        r = {"label": e["label"], "mode": e["mode"], "run": e["run"],
             "window_s": round(w_end - t_cut, 2),
             "split_brain_rows": len(sb),
             "split_brain": [{"writer": b[1], "id": b[2], "server": region(b[3]), "timeline": b[4],
                              "after_cut_s": round(b[0] - t_cut, 3)} for b in sb][:50],
             "promotions": promotions, "failovers": failovers,
             "pre_timeline": pre_tl, "end_timeline": end_tl, "post_primary": e.get("post_primary"),
             "side_failovers": ops,
             "healthy_after_heal_s": round(e["healthy"]["m"] - e["heal"]["m"], 2) if e.get("healthy") else None,
             "held_s": round(e["heal"]["m"] - t_cut, 2),
             "failover_seen_s": round(e["failover_seen"]["m"] - t_cut, 2) if e.get("failover_seen") else None,
             "unhealthy_reason": e.get("unhealthy_reason"), "apply_state": e.get("apply_state"),
             "repairs": [x for x in repairs if t_cut <= x["m"] < nxt],
             "writers": {}}
        needed = 1 if e["mode"] == "region-a" else 0
        r["unneeded_failovers"] = None if failovers is None else max(0, failovers - needed)
        for wid, acks in writers.items():
            w = writer_window(acks, t_cut, w_end)
            after = [a for a in acks if t_cut <= a[0] < w_end]
            new = [a for a in after if pre_tl is not None and a[4] > pre_tl]
            old = [a for a in after if pre_tl is not None and a[4] <= pre_tl]
            w["first_new_primary_ack_s"] = round(new[0][0] - t_cut, 3) if new else None
            w["new_primary"] = region(new[0][3]) if new else None
            w["last_old_primary_ack_s"] = round(old[-1][0] - t_cut, 3) if old else None
            r["writers"][wid] = w
        runs.append(r)

    random_res = None
    if rstart:
        st_res = []
        bounds = [s["cut"]["m"] for s in steps] + [rend["end"]["m"] if rend else last_m]
        for k, s in enumerate(steps):
            t0, t1 = bounds[k], bounds[k + 1]
            tl0 = s.get("timeline_at_cut") or last_tl_before(t0)
            tl1 = (steps[k + 1].get("timeline_at_cut") if k + 1 < len(steps)
                   else (rend or {}).get("timeline")) or last_tl_before(t1)
            prom = None if tl0 is None or tl1 is None else max(0, tl1 - tl0)
            if tl0 is not None:
                pairs = {(a[3], a[4]) for a in merged if t0 <= a[0] < t1 and a[4] > tl0}
                prom = max(prom or 0, len(pairs))
            ops = [o for t, o in service_ops if t0 <= t < t1 and o.get("status") == "succeeded"]
            if prom is not None or ops:
                prom = max(prom or 0, len(ops))
            prim = s.get("primary_at_cut")
            allowed = 1 if prim and s["mode"] == prim else 0
            sb = bad_in(t0, t1)
            sr = {"k": s["k"], "mode": s["mode"], "duration_s": s["duration_s"], "gap_s": s["gap_s"],
                  "primary_at_cut": prim, "timeline_at_cut": tl0, "promotions": prom,
                  "unneeded_failovers": None if prom is None else max(0, prom - allowed),
                  "split_brain_rows": len(sb),
                  "split_brain": [{"writer": b[1], "id": b[2], "server": region(b[3]), "timeline": b[4],
                                   "after_cut_s": round(b[0] - t0, 3)} for b in sb][:50],
                  "writers": {wid: writer_window(acks, t0, t1) for wid, acks in writers.items()},
                  "apply_state": s.get("apply_state")}
            st_res.append(sr)
        random_res = {
            "seed": rstart.get("seed"), "steps": st_res,
            "repairs": [x for x in repairs if x.get("label") == "random"],
            "healthy_at_end": bool(rend and rend.get("healthy")),
            "healthy_after_last_heal_s": (round(rend["healthy"]["m"] - steps[-1]["heal"]["m"], 2)
                                          if rend and rend.get("healthy") and steps else None),
            "unhealthy_reason": (rend or {}).get("unhealthy_reason"),
            "side_failovers": (rend or {}).get("side_failovers") or [],
            "split_brain_rows": sum(x["split_brain_rows"] for x in st_res),
        }

    def summ(rs, second):
        s = {"runs": len(rs),
             "split_brain_rows_total": sum(r["split_brain_rows"] for r in rs),
             "split_brain_rows_max": max([r["split_brain_rows"] for r in rs] or [0]),
             "runs_with_split_brain": sum(1 for r in rs if r["split_brain_rows"]),
             "promotions_total": sum(r.get("failovers", r.get("promotions")) or 0 for r in rs),
             "unneeded_failovers_total": sum(r["unneeded_failovers"] or 0 for r in rs),
             "side_failovers_total": sum(len(r.get("side_failovers") or []) for r in rs),
             "not_healthy_after_heal": sum(1 for r in rs if r.get("repairs")),
             "writers": {}}
        for wid in writers:
            # the direct writer writes to region-a's server only: a random step
            # that began with the primary elsewhere says nothing about it
            ws = [r["writers"][wid] for r in rs if wid in r["writers"]
                  and (wid != "direct" or r.get("primary_at_cut", "region-a") == "region-a")]
            outs = [w["outage_s"] for w in ws]
            s["writers"][wid] = {
                "outage_p50_s": pct(outs, 50), "outage_p95_s": pct(outs, 95),
                "outage_max_s": max(outs) if outs else None,
                "not_resumed": sum(1 for w in ws if not w["resumed"]),
                "first_new_primary_ack_p50_s": pct([w.get("first_new_primary_ack_s") for w in ws], 50),
                "first_new_primary_ack_p95_s": pct([w.get("first_new_primary_ack_s") for w in ws], 95),
                "last_old_primary_ack_p50_s": pct([w.get("last_old_primary_ack_s") for w in ws], 50),
                "last_old_primary_ack_max_s": max([w["last_old_primary_ack_s"] for w in ws
                                                   if w.get("last_old_primary_ack_s") is not None] or [None],
                                                  key=lambda x: -1 if x is None else x),
            }
        hs = [r.get("healthy_after_heal_s") for r in rs if "healthy_after_heal_s" in r]
        s["healthy_after_heal_p50_s"] = pct(hs, 50)
        return s

    modes = []
    for r in runs:
        if r["mode"] not in modes:
            modes.append(r["mode"])
    second = [w for w in writers if w != "direct"]
    res = {
        "side": meta.get("side"), "label": label or meta.get("label") or meta.get("side"),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "lab_dir": meta.get("lab_dir"), "runs_per_mode": meta.get("runs"), "random_steps": meta.get("random"),
        "seed": meta.get("seed"), "hold_s": meta.get("hold_s"), "region_a_max_s": meta.get("region_a_max_s"),
        "side_info": side_info, "versions": meta.get("versions"),
        "writers": {w: {"acked": len(a), "errors_logged": len(errors.get(w, []))} for w, a in writers.items()},
        "second_writer": second[0] if second else None,
        "split_brain_rows_whole_pass_global_rule": len(bad),
        "modes": {m: summ([r for r in runs if r["mode"] == m], second) for m in modes},
        "runs": runs,
    }
    if random_res:
        st = random_res["steps"]
        rs = summ([{**x, "healthy_after_heal_s": None} for x in st], second)
        rs.update({k: v for k, v in random_res.items() if k != "steps"})
        rs["needed_failovers"] = sum(1 for x in st if x["primary_at_cut"] and x["mode"] == x["primary_at_cut"])
        res["random"] = rs
        res["random_step_runs"] = st
    if out_path:
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        with open(out_path, "w") as f:
            json.dump(res, f, indent=2)
    return res


# ------------------------------------------------------------------ tables --
SIDES = [("drctl", "drctl"), ("patroni-defaults", "Patroni (defaults)"), ("patroni-tuned", "Patroni (tuned)")]
MODE_TITLE = {
    "region-a": "region-a cut off from everyone (the primary's region)",
    "region-b": "region-b cut off from everyone (the standby's region)",
    "witness": "the witness site (third etcd member) cut off",
    "ctl-a": "drctl's control plane cut off from region-a",
    "a-b": "region-a and region-b cut off from each other",
    "etcd-leader-kill": "the etcd leader killed (SIGKILL), restarted 30 s later",
}


def fs(x, unit=" s"):
    return "–" if x is None else f"{x:.2f}{unit}"


def side_desc(d):
    info = d.get("side_info") or {}
    if d.get("side") == "drctl":
        v = d.get("versions") or {}
        return (f"drctl {v.get('drctl', '?')} ({v.get('drctl_build', '?')} build): lease 10 s (the agent fences "
                "at 8 s), automatic failover of `orders` (hot)")
    dcs = info.get("dcs") or {}
    return (f"Patroni {(d.get('versions') or {}).get('patroni', '3.0.2')}: ttl {dcs.get('ttl')}, "
            f"loop_wait {dcs.get('loop_wait')}, retry_timeout {dcs.get('retry_timeout')}")


def table_row(name, s, mode, d):
    w1 = s["writers"].get("direct") or {}
    sec = d.get("second_writer")
    w2 = s["writers"].get(sec) or {}

    def outage(w):
        if not w:
            return "–"
        txt = f"{fs(w.get('outage_p50_s'))} / {fs(w.get('outage_p95_s'))}"
        if w.get("not_resumed"):
            txt += f" ({w['not_resumed']} not resumed)"
        return txt
    cells = [name, str(s["runs"]),
             f"{s['split_brain_rows_total']} (max {s['split_brain_rows_max']}; "
             f"{s.get('runs_with_split_brain', 0)} of {s['runs']} runs)",
             f"{s['promotions_total']} ({s['unneeded_failovers_total']} unneeded)",
             outage(w1), f"{outage(w2)} ({sec})" if sec else "–"]
    if mode == "region-a":
        cells.append(f"{fs(w2.get('first_new_primary_ack_p50_s'))} / {fs(w2.get('first_new_primary_ack_p95_s'))}")
        cells.append(f"{fs(w1.get('last_old_primary_ack_p50_s'))} / {fs(w1.get('last_old_primary_ack_max_s'))}")
    h = fs(s.get("healthy_after_heal_p50_s"))
    if s.get("not_healthy_after_heal"):
        h += f" ({s['not_healthy_after_heal']} not healthy within 120 s: repaired by hand)"
    cells.append(h)
    return "| " + " | ".join(cells) + " |"


def peers(res_dir, out=None):
    docs = {}
    for key, _ in SIDES:
        p = os.path.join(res_dir, f"{key}.json")
        if os.path.exists(p):
            docs[key] = json.load(open(p))
        else:
            print(f"warning: {p} is missing: its rows stay out", file=sys.stderr)
    lines = []
    p = lines.append
    p("# Partition benchmark: drctl next to Patroni")
    p("")
    p("Same machine, same lab (`drctl lab up`, each site its own network namespace), the same three etcd members "
      "(region-a, region-b, witness), the same partitions (packets dropped in the lab's router). Two writers per side, "
      "one insert every 50 ms each: **direct** from inside region-a's namespace straight to region-a's server; "
      "the second from the root namespace, **dns** (drctl: resolves `orders.shop.lab.` before every connect) or "
      "**multihost** (Patroni: libpq `host=a,b target_session_attrs=read-write`). One side after the other.")
    p("")
    for key, name in SIDES:
        d = docs.get(key)
        if d:
            p(f"- **{name}**: {side_desc(d)}; {d.get('runs_per_mode')} runs per mode, random sequence of "
              f"{d.get('random_steps')} (seed {d.get('seed')}); generated {d.get('generated_at')}.")
    p("")
    p("Columns: *split-brain rows*: rows acknowledged by a server after another server's first acknowledged row on "
      "the same or a newer timeline, counted up to the next cut (total over the runs, the worst run, and in how many "
      "runs it happened: one split brain whose pair then stays broken for the 120 s health wait counts every row "
      "written meanwhile). *failovers*: promotions (new timelines, or two servers on one new timeline) from the cut "
      "to the end of the run; *unneeded*: all of them outside `region-a`, beyond one in `region-a`. *outage*: "
      "longest gap between two acknowledged inserts of that writer from the cut to the end of the run (healed, "
      "healthy again, 10 s settled; before any switch back), p50 / p95 over the runs (*not resumed*: the writer had "
      "not written again by then, the open gap counted: the direct writer whenever region-a ends as a standby). "
      "*healthy*: heal → primary plus a streaming, caught-up standby again, p50.")
    all_modes = []
    for d in docs.values():
        for m in d.get("modes", {}):
            if m not in all_modes:
                all_modes.append(m)
    all_modes.sort(key=lambda m: MODES.index(m) if m in MODES else 99)
    for mode in all_modes:
        p("")
        p(f"## {mode}: {MODE_TITLE.get(mode, mode)}")
        p("")
        hdr = ["side", "runs", "split-brain rows", "failovers", "outage direct p50 / p95", "outage 2nd writer p50 / p95"]
        if mode == "region-a":
            hdr += ["cut → first write acked by the new primary (2nd writer) p50 / p95",
                    "cut → old primary's last ack (direct) p50 / max"]
        hdr.append("healthy after heal p50")
        p("| " + " | ".join(hdr) + " |")
        p("|" + "---|" * len(hdr))
        for key, name in SIDES:
            d = docs.get(key)
            if d and mode in d.get("modes", {}):
                p(table_row(name, d["modes"][mode], mode, d))
    if any("random" in d for d in docs.values()):
        p("")
        p("## random sequence of partitions and heals")
        p("")
        p("Modes drawn at random from the six above, each held 5–40 s, then healed for 5–20 s (seeded: both sides "
          "get the same sequence); nothing waits for health in between. A step's *failovers* are the promotions "
          "between its cut and the next; one is allowed (not *unneeded*) in a step that cut off the primary's region.")
        p("")
        hdr = ["side", "steps", "split-brain rows", "failovers", "outage direct p50 / p95",
               "outage 2nd writer p50 / p95", "healthy at the end"]
        p("| " + " | ".join(hdr) + " |")
        p("|" + "---|" * len(hdr))
        for key, name in SIDES:
            d = docs.get(key)
            if d and "random" in d:
                s = d["random"]
                w1 = s["writers"].get("direct") or {}
                w2 = s["writers"].get(d.get("second_writer")) or {}
                p(f"| {name} | {s['runs']} | {s['split_brain_rows_total']} (max {s['split_brain_rows_max']}; "
                  f"{s.get('runs_with_split_brain', 0)} of {s['runs']} steps) | "
                  f"{s['promotions_total']} ({s['unneeded_failovers_total']} unneeded, "
                  f"{s.get('needed_failovers')} steps cut off the primary's region) | "
                  f"{fs(w1.get('outage_p50_s'))} / {fs(w1.get('outage_p95_s'))} | "
                  f"{fs(w2.get('outage_p50_s'))} / {fs(w2.get('outage_p95_s'))} | "
                  f"{'yes' if s.get('healthy_at_end') else 'no (repaired by hand)' if s.get('repairs') else 'no'}"
                  + (f" ({fs(s.get('healthy_after_last_heal_s'))} after the last heal)" if s.get('healthy_at_end') else "")
                  + " |")
    p("")
    p("## goals (issue \"No split brain under any partition\")")
    p("")
    d = docs.get("drctl")
    if d:
        tot_sb = sum(s["split_brain_rows_total"] for s in d["modes"].values()) + (d.get("random") or {}).get(
            "split_brain_rows_total", 0)
        tot_un = sum(s["unneeded_failovers_total"] for s in d["modes"].values()) + (d.get("random") or {}).get(
            "unneeded_failovers_total", 0)
        ra = (d["modes"].get("region-a") or {}).get("writers", {}).get(d.get("second_writer")) or {}
        p50 = ra.get("first_new_primary_ack_p50_s")
        p("| goal | drctl | met |")
        p("|---|---|---|")
        p(f"| 0 split-brain rows in every run | {tot_sb} rows in all runs and steps | {'yes' if tot_sb == 0 else 'no'} |")
        p(f"| 0 unneeded failovers | {tot_un} | {'yes' if tot_un == 0 else 'no'} |")
        p(f"| region-a cut off → writes acked in region-b through DNS within lease time + 3 s (13 s) at p50 | "
          f"{fs(p50)} | {'–' if p50 is None else ('yes' if p50 <= 13 else 'no')} |")
        p("| a lease time of 10 s or less as the default for hot services | 10 s (lab `[coordination] lease_ttl`) | yes |")
    p("")
    p("Per-run figures (each split-brain row with its writer, id, server and time after the cut; drctl's own "
      "failover operations; every writer's gap): the JSON files beside this one.")
    text = "\n".join(lines) + "\n"
    if out:
        with open(out, "w") as f:
            f.write(text)
    return text


def side_table(d):
    """One side's own markdown (results/SIDE.md)."""
    lines = [f"# {d.get('label')}: {side_desc(d)}", ""]
    hdr = "| mode | runs | split-brain rows | failovers | outage direct p50 / p95 | outage 2nd writer p50 / p95 | cut → new primary's first ack p50 | healthy after heal p50 |"
    lines += [hdr, "|" + "---|" * 8]
    for m, s in d.get("modes", {}).items():
        w1 = s["writers"].get("direct") or {}
        w2 = s["writers"].get(d.get("second_writer")) or {}
        lines.append(f"| {m} | {s['runs']} | {s['split_brain_rows_total']} (max {s['split_brain_rows_max']}) | "
                     f"{s['promotions_total']} ({s['unneeded_failovers_total']} unneeded) | "
                     f"{fs(w1.get('outage_p50_s'))} / {fs(w1.get('outage_p95_s'))}"
                     + (f" ({w1['not_resumed']} not resumed)" if w1.get("not_resumed") else "") + " | "
                     f"{fs(w2.get('outage_p50_s'))} / {fs(w2.get('outage_p95_s'))}"
                     + (f" ({w2['not_resumed']} not resumed)" if w2.get("not_resumed") else "") + " | "
                     f"{fs(w2.get('first_new_primary_ack_p50_s'))} | {fs(s.get('healthy_after_heal_p50_s'))} |")
    if d.get("random"):
        s = d["random"]
        lines.append(f"| random ({s['runs']} steps) | {s['runs']} | {s['split_brain_rows_total']} "
                     f"(max {s['split_brain_rows_max']}) | {s['promotions_total']} "
                     f"({s['unneeded_failovers_total']} unneeded) | – | – | – | "
                     f"{'healthy at the end' if s.get('healthy_at_end') else 'NOT healthy at the end'} |")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------- main --
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--side", choices=["drctl", "patroni"], required=True)
    r.add_argument("--label", default=None)
    r.add_argument("--drctl", required=True)
    r.add_argument("--lab-dir", required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--writer", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "writer.py"))
    r.add_argument("--service", default="orders")
    r.add_argument("--patroni", help="JSON describing the Patroni nodes (patroni.sh writes it)")
    r.add_argument("--runs", type=int, default=10)
    r.add_argument("--random", type=int, default=30)
    r.add_argument("--seed", type=int, default=20261207)
    r.add_argument("--modes", default="")
    r.add_argument("--settle", type=float, default=10.0, help="seconds watched after healthy again")
    r.add_argument("--hold", type=float, default=HOLD_S, help="seconds a partition holds (not region-a)")
    r.add_argument("--versions", default="{}")
    r.add_argument("--out", help="results JSON (analysis of this pass)")
    r.add_argument("--md", help="this side's markdown table")
    an = sub.add_parser("analyze")
    an.add_argument("--work", required=True)
    an.add_argument("--out", required=True)
    an.add_argument("--md")
    an.add_argument("--label")
    pe = sub.add_parser("peers")
    pe.add_argument("results_dir")
    pe.add_argument("--out")
    a = ap.parse_args()

    if a.cmd == "run":
        os.makedirs(a.work, exist_ok=True)
        signal.signal(signal.SIGTERM, _on_term)
        ps = Pass(a)
        ps.event({"ev": "versions", "versions": json.loads(a.versions)})
        rc = 0
        try:
            ps.go()
        except (Stop, KeyboardInterrupt) as e:
            log(f"stopped: {e}")
            rc = 143
        except Exception as e:  # noqa: BLE001
            log(f"FAILED: {type(e).__name__}: {e}")
            rc = 1
        if a.out:
            res = analyze(a.work, a.out, a.label)
            res["versions"] = json.loads(a.versions)
            res["complete"] = rc == 0
            json.dump(res, open(a.out, "w"), indent=2)
            if a.md:
                open(a.md, "w").write(side_table(res))
            print(side_table(res))
        sys.exit(rc)
    if a.cmd == "analyze":
        prev = {}
        if os.path.exists(a.out):  # keep what only the run knew
            try:
                prev = json.load(open(a.out))
            except ValueError:
                prev = {}
        res = analyze(a.work, a.out, a.label)
        if "complete" in prev:
            res["complete"] = prev["complete"]
            json.dump(res, open(a.out, "w"), indent=2)
        v = next((e for e in load_jsonl(os.path.join(a.work, "events.jsonl")) if e["ev"] == "versions"), None)
        if v:
            res["versions"] = v["versions"]
            json.dump(res, open(a.out, "w"), indent=2)
        if a.md:
            open(a.md, "w").write(side_table(res))
        print(side_table(res))
    if a.cmd == "peers":
        print(peers(a.results_dir, a.out), end="")


if __name__ == "__main__":
    main()
