#!/usr/bin/python3
"""Partition benchmark client: insert one row every 50 ms, log every acknowledgement.

Each acknowledged insert is written as one JSON line to --out, with the
local monotonic clock (time.monotonic(), CLOCK_MONOTONIC: the same clock in
every process and network namespace of this machine), the wall clock, the
row id, and *which server* acknowledged it: the server's address and port
(inet_server_addr()/inet_server_port(), in the connect line) and its data
directory (`srv`: unique per node in both benchmarks, whatever path the
connection took) and the WAL timeline it was writing on, asked once per
connection. The timeline is what tells primaries
apart over time: every promotion starts a new one, so a row acknowledged on
timeline T after another server's first row on timeline >= T is a
split-brain row (see README.md).

Ways to find the server (exactly one):

  --direct HOST:PORT                 always this server (e.g. region-a's primary,
                                     from inside region-a's namespace)
  --dns SERVER:PORT NAME FRONT_PORT  before every (re)connect, ask SERVER for the
                                     A record NAME (one UDP query, no cache) and
                                     connect to ADDRESS:FRONT_PORT
  --multihost "h1:p1,h2:p2"          a libpq multi-host DSN with
                                     target_session_attrs=read-write (Patroni)

Any error (connect, statement, timeout) drops the connection; the next tick
(50 ms cadence, no bursts) reconnects. A connection to a server in recovery
is dropped at once (it cannot acknowledge a write). SIGTERM/SIGINT end it
cleanly: the last line of --out is {"ev": "stop", ...}.

Only the Python standard library and psycopg2 (Debian's python3-psycopg2)
are needed: run it with /usr/bin/python3.
"""

import argparse
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

import psycopg2

STOP = False


def _on_signal(signum, _frame):
    global STOP
    STOP = True


def hostport(s):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host, int(port)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    m = p.add_mutually_exclusive_group(required=True)
    m.add_argument("--direct", type=hostport, metavar="HOST:PORT")
    m.add_argument("--dns", nargs=3, metavar=("SERVER:PORT", "NAME", "FRONT_PORT"))
    m.add_argument("--multihost", metavar="H1:P1,H2:P2")
    p.add_argument("--id", required=True, help="writer id, stored in every row")
    p.add_argument("--out", required=True, help="JSON lines file (appended)")
    p.add_argument("--dbname", default="postgres")
    p.add_argument("--user", default="postgres")
    p.add_argument("--password", default=None)
    p.add_argument("--table", default="bench_partition")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between inserts")
    p.add_argument("--connect-timeout", type=int, default=1, help="libpq connect_timeout (s, per host)")
    p.add_argument("--statement-timeout-ms", type=int, default=2000,
                   help="server statement_timeout, and the client-side watchdog (+0.5 s)")
    p.add_argument("--dns-timeout", type=float, default=1.0)
    p.add_argument("--pid-file", help="write the pid here")
    a = p.parse_args(argv)
    if a.dns:
        a.dns_server = hostport(a.dns[0])
        a.dns_name = a.dns[1]
        a.front_port = int(a.dns[2])
    if a.multihost:
        a.hosts = [hostport(x.strip()) for x in a.multihost.split(",") if x.strip()]
    return a


def dns_query_a(server, name, timeout):
    """One A query over UDP straight to `server` (no resolver, no cache)."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    fam = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, server)
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            data, _ = s.recvfrom(4096)
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
                break
    finally:
        s.close()
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    rcode = flags & 0xF
    if rcode != 0:
        raise RuntimeError(f"rcode {rcode}")

    def skip_name(off):
        while True:
            n = data[off]
            if n == 0:
                return off + 1
            if n & 0xC0 == 0xC0:
                return off + 2
            off += 1 + n

    off = 12
    for _ in range(qd):
        off = skip_name(off) + 4
    for _ in range(an):
        off = skip_name(off)
        typ, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[off:off + 10])
        off += 10
        if typ == 1 and rdlen == 4:
            return socket.inet_ntoa(data[off:off + 4])
        off += rdlen
    raise RuntimeError("no A record in the answer")


class Watchdog(threading.Thread):
    """Client-side statement timeout: shuts the socket down when a statement
    has not returned by its deadline (a black-holed server never answers,
    and statement_timeout runs on that server)."""

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
            time.sleep(0.05)
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
        self.out = open(a.out, "a", buffering=1)
        self.conn = None
        self.srv = None
        self.tl = None
        self.via = None
        self.table_ready = False
        self.acked = 0
        self.attempts = 0
        self.errors = 0
        self.connects = 0
        self.last_err = None
        self.err_streak = 0
        self.watchdog = Watchdog()
        self.watchdog.start()

    def emit(self, d):
        self.out.write(json.dumps(d, separators=(",", ":")) + "\n")

    def _kw(self):
        a = self.a
        kw = {
            "dbname": a.dbname, "user": a.user, "connect_timeout": a.connect_timeout,
            "application_name": f"bench-partition-{a.id}",
            "options": f"-c statement_timeout={a.statement_timeout_ms}",
            # a black-holed peer: unacknowledged data or a silent idle
            # connection end the connection instead of hanging
            "keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1, "keepalives_count": 2,
            "tcp_user_timeout": a.statement_timeout_ms,
        }
        if a.password:
            kw["password"] = a.password
        if a.direct:
            kw["host"], kw["port"] = a.direct[0], a.direct[1]
            self.via = f"{a.direct[0]}:{a.direct[1]}"
        elif a.dns:
            ip = dns_query_a(a.dns_server, a.dns_name, a.dns_timeout)
            kw["host"], kw["port"] = ip, a.front_port
            kw["target_session_attrs"] = "read-write"
            self.via = f"{ip}:{a.front_port}"
        else:
            kw["host"] = ",".join(h for h, _ in a.hosts)
            kw["port"] = ",".join(str(p) for _, p in a.hosts)
            kw["target_session_attrs"] = "read-write"
            self.via = "multihost"
        return kw

    def _guarded(self, conn, sql, args=None):
        self.watchdog.arm(conn.fileno(), self.a.statement_timeout_ms / 1000.0 + 0.5)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchone() if cur.description is not None else None
        finally:
            self.watchdog.disarm()

    def connect(self):
        try:
            kw = self._kw()
        except Exception as e:
            raise RuntimeError(f"dns: {type(e).__name__}: {e}") from None
        conn = psycopg2.connect(**kw)
        conn.autocommit = True
        try:
            row = self._guarded(
                conn,
                "SELECT coalesce(host(inet_server_addr()), 'local'), coalesce(inet_server_port(), 0), "
                "pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN NULL "
                "ELSE pg_walfile_name(pg_current_wal_lsn()) END, current_setting('data_directory'), "
                "current_setting('transaction_read_only')")
            addr, port, recovery, walfile, datadir, ro = row
            if recovery:
                raise RuntimeError(f"{addr}:{port} is in recovery (a standby)")
            if not self.table_ready:
                self._guarded(conn, f"CREATE TABLE IF NOT EXISTS {self.a.table} ("
                                    "id bigserial PRIMARY KEY, writer text NOT NULL, "
                                    "at timestamptz NOT NULL DEFAULT clock_timestamp())")
                self.table_ready = True
        except Exception:
            try:
                conn.close()
            except Exception:
                pass
            raise
        self.conn = conn
        self.connects += 1
        # The server's identity: its data directory (unique per node here;
        # the address depends on the path: through a front it is loopback).
        self.srv = datadir
        self.tl = int(walfile[:8], 16)
        self.emit({"ev": "connect", "m": round(time.monotonic(), 4), "t": round(time.time(), 4),
                   "srv": self.srv, "tl": self.tl, "via": self.via, "addr": f"{addr}:{port}",
                   "read_only": ro})

    def drop(self):
        c, self.conn = self.conn, None
        if c is not None:
            try:
                c.close()
            except Exception:
                pass

    def tick(self):
        self.attempts += 1
        try:
            if self.conn is None or self.conn.closed:
                self.connect()
            row = self._guarded(self.conn, f"INSERT INTO {self.a.table} (writer) VALUES (%s) RETURNING id",
                                (self.a.id,))
        except Exception as e:
            self.errors += 1
            msg = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"[:300]
            # Log the first error of a streak and every change of message
            # (a streak of identical errors at 20/s would flood the file).
            if msg != self.last_err or self.err_streak == 0:
                self.emit({"ev": "error", "m": round(time.monotonic(), 4), "t": round(time.time(), 4),
                           "msg": msg, "via": self.via, "streak": self.err_streak})
            self.last_err = msg
            self.err_streak += 1
            self.drop()
            return
        m, t = time.monotonic(), time.time()
        self.acked += 1
        self.err_streak = 0
        self.emit({"m": round(m, 4), "t": round(t, 4), "id": row[0], "srv": self.srv, "tl": self.tl})

    def run(self):
        a = self.a
        self.emit({"ev": "start", "m": round(time.monotonic(), 4), "t": round(time.time(), 4), "writer": a.id,
                   "mode": "direct" if a.direct else ("dns" if a.dns else "multihost"),
                   "target": a.multihost or (a.dns and " ".join(a.dns)) or f"{a.direct[0]}:{a.direct[1]}",
                   "interval_s": a.interval, "pid": os.getpid()})
        next_tick = time.monotonic()
        while not STOP:
            now = time.monotonic()
            if now < next_tick:
                time.sleep(min(next_tick - now, 0.05))
                continue
            next_tick += a.interval
            if next_tick < now:  # fell behind (slow connect or statement): no burst
                next_tick = now + a.interval
            self.tick()
        self.drop()
        self.emit({"ev": "stop", "m": round(time.monotonic(), 4), "t": round(time.time(), 4),
                   "acked": self.acked, "attempts": self.attempts, "errors": self.errors,
                   "connects": self.connects, "watchdog_fired": self.watchdog.fired})
        self.out.close()


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if a.pid_file:
        with open(a.pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    Writer(a).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
