#!/usr/bin/env python3
"""http-fault-proxy.py: an HTTP/1.1 proxy for tests, on 127.0.0.1, that
forwards to one upstream server and injects faults at random, seeded points.

  http-fault-proxy.py --upstream HOST:PORT [--port-file F] [--seed N]
      [--rate P] [--faults 500,429,reset,stall,truncate,corrupt]
      [--stall S] [--hold REGEX] [--retry-after S] [--log F] [--timeout S]
      [--delay S] [--inflight-file F [--inflight-match REGEX]]

Each request is read whole (Content-Length or chunked), then with
probability P one fault is drawn from --faults:
  500, 429   answer that status (an S3-style XML error) without forwarding;
  400        answer 400 (BadRequest): a client must not send it again;
  reset      close the connection at once (RST), without forwarding;
  stall      say nothing for S seconds, then close;
  truncate   forward, then send the headers and half of the body, and close;
  corrupt    forward, then flip one byte of a 2xx body.
With --retry-after S a 429 says "Retry-After: S", and the same request
line coming back sooner than S seconds after it is answered 400 (TooEarly,
logged "early"), which a client does not retry: so a client that ignores
Retry-After fails, whatever the speed of the machine.
A request whose request line matches --hold is never answered (a process
killed in the middle of it). --log appends "METHOD TARGET FAULT" a request.
--delay S holds each request S seconds before it is forwarded, and
--inflight-file F holds the most requests it has had in hand at once (held
or forwarded, the upstream's answer not yet back; with --inflight-match,
those whose request line matches): how many a client sends in parallel.
It listens on an ephemeral port of 127.0.0.1 (written to --port-file) and
exits after --timeout seconds (default 600), whatever happens."""
import argparse
import random
import re
import socket
import struct
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--upstream", required=True)
p.add_argument("--port-file")
p.add_argument("--seed", type=int, default=1)
p.add_argument("--rate", type=float, default=0.0)
p.add_argument("--faults", default="500,429,reset,stall,truncate,corrupt")
p.add_argument("--stall", type=float, default=5.0)
p.add_argument("--hold")
p.add_argument("--retry-after", type=int)
p.add_argument("--log")
p.add_argument("--timeout", type=float, default=600)
p.add_argument("--delay", type=float, default=0.0)
p.add_argument("--inflight-file")
p.add_argument("--inflight-match")
a = p.parse_args()
uhost, uport = a.upstream.rsplit(":", 1)
faults = [f for f in a.faults.split(",") if f]
rng = random.Random(a.seed)
lock = threading.Lock()
hold = re.compile(a.hold) if a.hold else None
told = {}  # request line -> when a 429 told it to come back
inflight = [0, 0]  # now, most


def inflight_add(n):
    with lock:
        inflight[0] += n
        if inflight[0] > inflight[1]:
            inflight[1] = inflight[0]
            if a.inflight_file:
                with open(a.inflight_file, "w") as f:
                    f.write("%d\n" % inflight[1])


def log(line):
    if a.log:
        with lock, open(a.log, "a") as f:
            f.write(line + "\n")


def read_head(f):
    lines = []
    while True:
        line = f.readline(65536)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line)


def header(lines, name):
    for line in lines[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        if k.strip().lower() == name:
            return v.strip()
    return None


def read_body(f, lines, until_close=False):
    n = header(lines, "content-length")
    if header(lines, "transfer-encoding") == "chunked":
        out = b""
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return out
            out += f.read(size)
            f.readline()
    if n is not None:
        return f.read(int(n))
    return f.read() if until_close else b""


def rst(conn):
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


def error(status, code, extra=""):
    body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code>"
            "<Message>injected by the fault proxy</Message></Error>" % code).encode()
    reason = {500: "Internal Server Error", 429: "Too Many Requests", 400: "Bad Request"}[status]
    return (("HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n%s"
             "Connection: close\r\n\r\n") % (status, reason, len(body), extra)).encode() + body


def forward(lines, body):
    s = socket.create_connection((uhost, int(uport)), timeout=60)
    out = [lines[0]]
    for line in lines[1:]:
        k = line.split(b":", 1)[0].strip().lower()
        if k not in (b"connection", b"transfer-encoding", b"content-length", b"keep-alive"):
            out.append(line)
    if body or lines[0].split(b" ")[0] in (b"PUT", b"POST"):
        out.append(b"Content-Length: %d\r\n" % len(body))
    out.append(b"Connection: close\r\n\r\n")
    s.sendall(b"".join(out) + body)
    f = s.makefile("rb")
    method = lines[0].split(b" ")[0]
    while True:
        rlines = read_head(f)
        if rlines is None:
            raise OSError("upstream closed")
        if not rlines[0].split(b" ")[1].startswith(b"1"):
            break
    status = int(rlines[0].split(b" ")[1])
    rbody = b"" if method == b"HEAD" or status in (204, 304) else read_body(f, rlines, True)
    s.close()
    return rlines, status, rbody


def respond(rlines, rbody, method):
    out = [rlines[0]]
    cl = None
    for line in rlines[1:]:
        k = line.split(b":", 1)[0].strip().lower()
        if k == b"content-length":
            cl = line
        if k not in (b"connection", b"transfer-encoding", b"content-length", b"keep-alive"):
            out.append(line)
    if method == b"HEAD" and cl is not None:
        out.append(cl)
    else:
        out.append(b"Content-Length: %d\r\n" % len(rbody))
    out.append(b"Connection: close\r\n\r\n")
    return b"".join(out)


def serve(conn):
    conn.settimeout(120)
    f = conn.makefile("rb")
    try:
        lines = read_head(f)
        if not lines:
            conn.close()
            return
        body = read_body(f, lines)
        handle(conn, lines, body)
    except (OSError, ValueError, IndexError) as e:
        log("error %s" % e)
        try:
            rst(conn)
        except OSError:
            pass


def handle(conn, lines, body):
    reqline = lines[0].decode("latin-1").strip()
    method, target = reqline.split(" ")[0], reqline.split(" ")[1]
    if hold and hold.search(reqline):
        log("%s %s hold" % (method, target))
        time.sleep(a.timeout)
        conn.close()
        return
    with lock:
        early = reqline in told and time.monotonic() < told[reqline]
        told.pop(reqline, None)
        fault = rng.choice(faults) if faults and rng.random() < a.rate else "none"
        if early:
            fault = "early"
        elif fault == "429" and a.retry_after is not None:
            told[reqline] = time.monotonic() + a.retry_after
        cut = rng.random()
    log("%s %s %s" % (method, target, fault))
    if fault == "early":
        conn.sendall(error(400, "TooEarly"))
        conn.close()
        return
    if fault in ("500", "429", "400"):
        extra = ("Retry-After: %d\r\n" % a.retry_after
                 if fault == "429" and a.retry_after is not None else "")
        conn.sendall(error(int(fault), {"500": "InternalError", "429": "SlowDown",
                                        "400": "BadRequest"}[fault], extra))
        conn.close()
        return
    if fault == "reset":
        rst(conn)
        return
    if fault == "stall":
        time.sleep(a.stall)
        rst(conn)
        return
    # in hand: from the delay to the upstream's answer (a client that waits
    # for each answer before its next request counts 1)
    counted = 1 if not a.inflight_match or re.search(a.inflight_match, reqline) else 0
    inflight_add(counted)
    try:
        if a.delay:
            time.sleep(a.delay)
        rlines, status, rbody = forward(lines, body)
    finally:
        inflight_add(-counted)
    head = respond(rlines, rbody, method.encode())
    if fault == "truncate" and len(rbody) > 1:
        conn.sendall(head + rbody[: max(1, int(len(rbody) * cut)) - 1])
        rst(conn)
        return
    if fault == "corrupt" and 200 <= status < 300 and rbody:
        i = int(len(rbody) * cut) % len(rbody)
        rbody = rbody[:i] + bytes([rbody[i] ^ 0x5A]) + rbody[i + 1:]
    conn.sendall(head + rbody)
    conn.close()


def main():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % srv.getsockname()[1])
        import os
        os.rename(a.port_file + ".tmp", a.port_file)
    threading.Timer(a.timeout, lambda: __import__("os")._exit(0)).start()
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()
