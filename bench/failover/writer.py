#!/usr/bin/env python3
"""Failover benchmark client: insert one row every 50 ms, report the write outage.

The write outage is the longest gap between two consecutive *acknowledged*
inserts (autocommit INSERT ... RETURNING id that returned to the client).
Writes are attempted on a fixed cadence (--interval, 50 ms); while there is no
usable primary the client retries the connection at that same cadence.

Two ways to find the primary:

  --dsn 'host=a,b port=p1,p2 ... target_session_attrs=read-write'
        a libpq multi-host DSN (Patroni side); libpq picks the writable host.

  --dns-record orders.shop.lab. --dns-server 127.0.0.1:55353 --port 55462 --dbname shop
        before every (re)connect the A record is resolved by querying that DNS
        server directly (no resolver cache), then IP:PORT is connected to with
        target_session_attrs=read-write (drctl's lab).

Any error (connect, statement, timeout) drops the connection; the next tick
reconnects (and, in DNS mode, re-resolves).

On exit (--seconds elapsed, SIGTERM or SIGINT) prints one JSON line on stdout.
Times are seconds relative to the client's start (time.monotonic()).
--acked-file receives the acknowledged ids, one per line (for loss checks).
--progress-file is rewritten a few times a second with one line
"ACKED MAX_GAP SINCE_LAST_ACK SERVER" for a driving script to poll.

Needs psycopg 3 and dnspython (see README.md: the benchmark scripts create a
virtualenv bench/failover/.venv with both).
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time

import psycopg

try:
    import dns.exception
    import dns.resolver
except ImportError:  # only needed in DNS mode
    dns = None


STOP = False


def _on_signal(signum, _frame):
    global STOP
    STOP = True


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    m = p.add_argument_group("primary discovery (one of)")
    m.add_argument("--dsn", help="libpq DSN, e.g. multi-host with target_session_attrs=read-write")
    m.add_argument("--dns-record", help="A record naming the primary, e.g. orders.shop.lab.")
    p.add_argument("--dns-server", default="127.0.0.1:55353", help="DNS server IP:PORT to query directly")
    p.add_argument("--dns-timeout", type=float, default=1.0, help="seconds per DNS lookup (DNS mode)")
    p.add_argument("--port", type=int, default=5432, help="PostgreSQL port (DNS mode)")
    p.add_argument("--dbname", default="postgres", help="database (DNS mode)")
    p.add_argument("--user", default=os.environ.get("PGUSER", "postgres"), help="user (DNS mode)")
    p.add_argument("--password", default=os.environ.get("PGPASSWORD"), help="password (DNS mode; or PGPASSWORD)")
    p.add_argument("--seconds", type=float, default=60.0, help="run time (0: until SIGTERM/SIGINT)")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between inserts (default 0.05)")
    p.add_argument("--connect-timeout", type=int, default=1, help="libpq connect_timeout (s)")
    p.add_argument("--statement-timeout-ms", type=int, default=2000,
                   help="server statement_timeout, and client-side watchdog (ms)")
    p.add_argument("--acked-file", help="write acknowledged ids here, one per line")
    p.add_argument("--progress-file", help="rewrite 'ACKED MAX_GAP SINCE_LAST SERVER' here ~5x/s")
    p.add_argument("--trace-file", help="log every attempt here: START_S DURATION_S ack|error ...")
    p.add_argument("--label", default="", help="free text copied into the JSON result")
    a = p.parse_args(argv)
    if bool(a.dsn) == bool(a.dns_record):
        p.error("give exactly one of --dsn or --dns-record")
    if a.dns_record and dns is None:
        p.error("DNS mode needs dnspython (pip install dnspython)")
    return a


class Watchdog(threading.Thread):
    """Client-side statement timeout.

    statement_timeout only helps if the server still runs; a server that stops
    answering (SIGSTOP, network black hole) would block the client forever.
    While a statement is in flight the watchdog knows its deadline; past it the
    socket is shut down, which makes the blocked libpq call fail at once.
    """

    def __init__(self):
        super().__init__(daemon=True)
        self.lock = threading.Lock()
        self.fd = None
        self.deadline = None
        self.fired = 0

    def arm(self, fd, seconds):
        with self.lock:
            self.fd, self.deadline = fd, time.monotonic() + seconds

    def disarm(self):
        with self.lock:
            self.fd, self.deadline = None, None

    def run(self):
        while True:
            time.sleep(0.1)
            with self.lock:
                if self.deadline is None or time.monotonic() < self.deadline:
                    continue
                fd, self.fd, self.deadline = self.fd, None, None
                self.fired += 1
                try:
                    s = socket.socket(fileno=os.dup(fd))
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    finally:
                        s.close()
                except OSError:
                    pass


class Writer:
    def __init__(self, a):
        self.a = a
        self.t0 = time.monotonic()
        self.conn = None
        self.server = ""
        self.acked_ids = []
        self.last_ack = None
        self.first_ack = None
        self.max_gap = 0.0
        self.gap_start = None
        self.gap_end = None
        self.attempts = 0
        self.errors = 0
        self.connects = 0
        self.dns_failures = 0
        self.last_error = ""
        self.per_server = {}
        self.server_changes = []  # [t, server] when the acking server changes
        self.table_ready = False
        self.trace_f = open(a.trace_file, "w", buffering=1) if a.trace_file else None
        self.watchdog = Watchdog()
        self.watchdog.start()
        self.resolver = None
        if a.dns_record:
            host, _, port = a.dns_server.rpartition(":")
            r = dns.resolver.Resolver(configure=False)
            r.nameservers = [host or a.dns_server]
            r.port = int(port) if host else 53
            r.timeout = a.dns_timeout
            r.lifetime = a.dns_timeout
            r.cache = None
            self.resolver = r

    def now(self):
        return time.monotonic() - self.t0

    # -- connection -------------------------------------------------------
    def _conninfo(self):
        opts = f"-c statement_timeout={self.a.statement_timeout_ms}"
        if self.a.dsn:
            return self.a.dsn, {"connect_timeout": self.a.connect_timeout, "options": opts,
                                "application_name": "bench-writer"}
        ans = self.resolver.resolve(self.a.dns_record, "A", search=False)
        ip = ans[0].address
        kw = {
            "host": ip,
            "port": self.a.port,
            "dbname": self.a.dbname,
            "user": self.a.user,
            "connect_timeout": self.a.connect_timeout,
            "target_session_attrs": "read-write",
            "options": opts,
            "application_name": "bench-writer",
        }
        if self.a.password:
            kw["password"] = self.a.password
        return "", kw

    def connect(self):
        try:
            dsn, kw = self._conninfo()
        except Exception as e:  # NXDOMAIN, timeout, refused...
            self.dns_failures += 1
            raise RuntimeError(f"dns: {type(e).__name__}: {e}") from None
        conn = psycopg.connect(dsn, autocommit=True, **kw)
        self.connects += 1
        self.server = f"{conn.info.host}:{conn.info.port}"
        if not self.table_ready:
            # target_session_attrs=read-write guarantees a writable primary here
            self._guarded(conn, "CREATE TABLE IF NOT EXISTS bench_writes("
                                "id bigserial primary key, at timestamptz default clock_timestamp())")
            self.table_ready = True
        self.conn = conn

    def drop(self):
        c, self.conn = self.conn, None
        if c is not None:
            try:
                c.close()
            except Exception:
                pass

    def _guarded(self, conn, sql):
        self.watchdog.arm(conn.pgconn.socket, self.a.statement_timeout_ms / 1000.0 + 0.5)
        try:
            cur = conn.execute(sql)
            return cur.fetchone() if cur.description is not None else None
        finally:
            self.watchdog.disarm()

    # -- one tick ---------------------------------------------------------
    def trace(self, t_start, what):
        if self.trace_f:
            self.trace_f.write(f"{t_start:.3f} {self.now() - t_start:.3f} {what}\n")

    def tick(self):
        self.attempts += 1
        t_start = self.now()
        try:
            if self.conn is None or self.conn.closed:
                self.connect()
            row = self._guarded(self.conn, "INSERT INTO bench_writes DEFAULT VALUES RETURNING id")
        except Exception as e:
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            self.trace(t_start, "error " + self.last_error.replace("\n", " "))
            self.drop()
            return
        t = self.now()
        self.trace(t_start, f"ack id={row[0]} server={self.server}")
        self.acked_ids.append(row[0])
        self.per_server[self.server] = self.per_server.get(self.server, 0) + 1
        if not self.server_changes or self.server_changes[-1][1] != self.server:
            self.server_changes.append([round(t, 3), self.server])
        if self.last_ack is None:
            self.first_ack = t
        else:
            gap = t - self.last_ack
            if gap > self.max_gap:
                self.max_gap, self.gap_start, self.gap_end = gap, self.last_ack, t
        self.last_ack = t

    def progress(self, path):
        since = (self.now() - self.last_ack) if self.last_ack is not None else -1
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{len(self.acked_ids)} {self.max_gap:.3f} {since:.3f} {self.server or '-'}\n")
        os.replace(tmp, path)

    def run(self):
        a = self.a
        next_tick = time.monotonic()
        next_progress = 0.0
        deadline = self.t0 + a.seconds if a.seconds > 0 else None
        while not STOP:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now < next_tick:
                time.sleep(min(next_tick - now, 0.05))
                continue
            next_tick += a.interval
            if next_tick < now:  # fell behind (slow connect/statement): no burst
                next_tick = now + a.interval
            self.tick()
            if a.progress_file and time.monotonic() >= next_progress:
                self.progress(a.progress_file)
                next_progress = time.monotonic() + 0.2
        self.drop()
        if a.progress_file:
            self.progress(a.progress_file)

    def result(self):
        r3 = lambda x: None if x is None else round(x, 3)
        return {
            "label": self.a.label,
            "mode": "dsn" if self.a.dsn else "dns",
            "duration_s": r3(self.now()),
            "interval_s": self.a.interval,
            "attempts": self.attempts,
            "acked": len(self.acked_ids),
            "errors": self.errors,
            "connects": self.connects,
            "dns_failures": self.dns_failures,
            "watchdog_fired": self.watchdog.fired,
            "max_gap_s": r3(self.max_gap) if len(self.acked_ids) > 1 else None,
            "gap_start_s": r3(self.gap_start),
            "gap_end_s": r3(self.gap_end),
            "first_ack_s": r3(self.first_ack),
            "last_ack_s": r3(self.last_ack),
            "first_id": self.acked_ids[0] if self.acked_ids else None,
            "last_id": self.acked_ids[-1] if self.acked_ids else None,
            "per_server": self.per_server,
            "server_changes": self.server_changes,
            "last_error": self.last_error,
        }


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    w = Writer(a)
    try:
        w.run()
    finally:
        if a.acked_file:
            with open(a.acked_file, "w") as f:
                f.writelines(f"{i}\n" for i in w.acked_ids)
        print(json.dumps(w.result()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
