#!/usr/bin/env python3
"""Webhook receiver for the webhooks extension tests (stdlib only).

    receiver.py --cert server.crt --key server.key --log requests.jsonl
                [--port 0] [--port-file F] [--host 127.0.0.1] [--plain-http]

Every request (any method) is appended to --log as one JSON line, before the
response is sent:

    {"time": <unix time the request was fully read>, "method": "POST",
     "path": "/status/500?x=1", "headers": {"content-type": "...", ...},
     "body": "<utf-8, errors=replace>", "status": 500}

"status" is what the receiver answers, or null for /hang and /close.
Header names are lower-cased; repeated headers are joined with ", ".

Behaviour by path (query string ignored):
    /status/NNN       answer NNN
    /delay/MS[/NNN]   sleep MS milliseconds, then answer 200 (or NNN)
    /hang             never answer; hold the connection until the client
                      leaves (or 600 s)
    /close            close the connection without a response
    /redirect         302, Location: /status/200
    /flaky/N          first N requests per webhook-id (or path) get 500, then 200
    /retry-after/S    first request per webhook-id (or path) gets 503 with
                      Retry-After: S, then 200
    /big              200 with a 200 MB body of 'x' (streamed)
    anything else     200
"""

import argparse
import http.server
import json
import os
import select
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse

HANG_MAX_SECONDS = 600
BIG_TOTAL = 200 * 1024 * 1024
BIG_CHUNK = 64 * 1024
MAX_BODY = 64 * 1024 * 1024  # refuse absurd request bodies

_stderr_lock = threading.Lock()


def note(msg):
    """One line to stderr, never raising."""
    try:
        with _stderr_lock:
            sys.stderr.write("receiver: %s\n" % msg)
            sys.stderr.flush()
    except Exception:
        pass


class RequestLog:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a", encoding="utf-8")

    def write(self, entry):
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self.lock:
            self.f.write(line)
            self.f.flush()

    def close(self, timeout=1.0):
        if self.lock.acquire(timeout=timeout):
            try:
                self.f.flush()
                self.f.close()
            except Exception:
                pass
            finally:
                self.lock.release()


class Counters:
    """Per-key request counters for /flaky and /retry-after."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def bump(self, key):
        """Return how many times key was seen before this call."""
        with self.lock:
            n = self.counts.get(key, 0)
            self.counts[key] = n + 1
            return n


class BadRequest(Exception):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "webhooks-test-receiver"
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # buffered: headers + small body go out in one write

    # Route every method (GET, POST, PUT, HEAD, ...) to the same handler.
    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.handle_any
        raise AttributeError(name)

    # Quiet access log; keep errors to one compact line.
    def log_message(self, format, *args):
        pass

    def log_error(self, format, *args):
        note("%s: %s" % (self.address_string(), format % args))

    def version_string(self):
        return self.server_version

    def address_string(self):
        return "%s:%s" % (self.client_address[0], self.client_address[1])

    # ------------------------------------------------------------------
    def read_body(self):
        """Read the full request body; return bytes, or None if the client
        went away before sending all of it."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            return self.read_chunked()
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        try:
            n = int(cl)
        except ValueError:
            raise BadRequest("bad Content-Length")
        if n < 0 or n > MAX_BODY:
            raise BadRequest("bad Content-Length")
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            return None
        return data

    def read_chunked(self):
        parts = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return None
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest("bad chunk size")
            if size == 0:
                # trailers, up to the empty line
                while True:
                    t = self.rfile.readline(65537)
                    if not t:
                        return None
                    if t in (b"\r\n", b"\n"):
                        break
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise BadRequest("body too large")
            data = self.rfile.read(size)
            if len(data) != size:
                return None
            parts.append(data)
            if not self.rfile.readline(65537):
                return None

    def headers_dict(self):
        d = {}
        for k, v in self.headers.items():
            k = k.lower()
            d[k] = d[k] + ", " + v if k in d else v
        return d

    # ------------------------------------------------------------------
    def handle_any(self):
        srv = self.server
        try:
            body = self.read_body()
        except BadRequest as e:
            self.log_entry(time.time(), b"", 400)
            self.respond(400, {"ok": False, "error": str(e)})
            self.close_connection = True
            return
        if body is None:  # client vanished mid-body
            self.close_connection = True
            return
        t_read = time.time()

        path = urllib.parse.urlsplit(self.path).path
        parts = [p for p in path.split("/") if p]
        head = parts[0] if parts else ""
        key = self.headers.get("webhook-id") or self.path

        try:
            if head == "status" and len(parts) == 2:
                status = self.parse_status(parts[1])
                self.log_entry(t_read, body, status)
                self.respond(status)

            elif head == "delay" and len(parts) in (2, 3):
                ms = self.parse_int(parts[1], 0, 3600 * 1000)
                status = self.parse_status(parts[2]) if len(parts) == 3 else 200
                self.log_entry(t_read, body, status)
                time.sleep(ms / 1000.0)
                self.respond(status)

            elif head == "hang" and len(parts) == 1:
                self.log_entry(t_read, body, None)
                self.hang()

            elif head == "close" and len(parts) == 1:
                self.log_entry(t_read, body, None)
                self.close_connection = True

            elif head == "redirect" and len(parts) == 1:
                self.log_entry(t_read, body, 302)
                self.respond(302, extra_headers=[("Location", "/status/200")])

            elif head == "flaky" and len(parts) == 2:
                n = self.parse_int(parts[1], 0, 10**9)
                seen = srv.flaky.bump(key)
                status = 500 if seen < n else 200
                self.log_entry(t_read, body, status)
                self.respond(status)

            elif head == "retry-after" and len(parts) == 2:
                # S is passed through verbatim (URL-decoded), so an
                # HTTP-date works too: /retry-after/Wed,%2021%20Oct%202015...
                secs = urllib.parse.unquote(parts[1])
                if not secs or any(c in secs for c in "\r\n\0"):
                    raise BadRequest("bad Retry-After value")
                seen = srv.retry_after.bump(key)
                if seen == 0:
                    self.log_entry(t_read, body, 503)
                    self.respond(503, extra_headers=[("Retry-After", secs)])
                else:
                    self.log_entry(t_read, body, 200)
                    self.respond(200)

            elif head == "big" and len(parts) == 1:
                self.log_entry(t_read, body, 200)
                self.send_big()

            else:
                self.log_entry(t_read, body, 200)
                self.respond(200)

        except BadRequest as e:
            self.log_entry(t_read, body, 400)
            self.respond(400, {"ok": False, "error": str(e)})

    def parse_int(self, s, lo, hi):
        try:
            v = int(s)
        except ValueError:
            raise BadRequest("bad number %r" % s)
        if not lo <= v <= hi:
            raise BadRequest("number out of range %r" % s)
        return v

    def parse_status(self, s):
        return self.parse_int(s, 200, 599)

    def log_entry(self, t, body, status):
        self.server.reqlog.write({
            "time": t,
            "method": self.command,
            "path": self.path,
            "headers": self.headers_dict(),
            "body": body.decode("utf-8", errors="replace"),
            "status": status,
        })

    def respond(self, status, payload=None, extra_headers=()):
        if status in (204, 304):
            data = b""
        else:
            if payload is None:
                payload = {"ok": 200 <= status < 300, "status": status}
            data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        if status != 204 and status != 304:
            self.send_header("Content-Length", str(len(data)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def send_big(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(BIG_TOTAL))
        self.end_headers()
        if self.command == "HEAD":
            return
        chunk = b"x" * BIG_CHUNK
        sent = 0
        try:
            while sent < BIG_TOTAL:
                n = min(BIG_CHUNK, BIG_TOTAL - sent)
                self.wfile.write(chunk if n == BIG_CHUNK else chunk[:n])
                sent += n
            self.wfile.flush()
        except (OSError, ValueError):
            # client went away (BrokenPipe / ConnectionReset / SSL EOF)
            self.close_connection = True

    def hang(self):
        """Hold the connection without answering until the client closes it
        (or HANG_MAX_SECONDS pass)."""
        self.close_connection = True
        sock = self.connection
        try:
            self.wfile.flush()
        except Exception:
            pass
        poller = select.poll()  # not select.select: fds may exceed 1024
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        deadline = time.monotonic() + HANG_MAX_SECONDS
        try:
            while time.monotonic() < deadline and not self.server.stopping:
                events = poller.poll(200)
                if not events:
                    continue
                if any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
                       for _, ev in events):
                    return
                data = sock.recv(65536)
                if not data:
                    return  # EOF
                # client sent more (e.g. a pipelined request): ignore it
        except (OSError, ValueError):
            return


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, handler, ssl_ctx, reqlog):
        self.ssl_ctx = ssl_ctx
        self.reqlog = reqlog
        self.flaky = Counters()
        self.retry_after = Counters()
        self.stopping = False
        super().__init__(addr, handler)
        if ssl_ctx is not None:
            # TLS handshakes are done per connection in the worker thread
            # (finish_request), so a slow or failing client never blocks
            # the accept loop.
            self.socket = ssl_ctx.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False)

    def server_bind(self):
        # Skip HTTPServer.server_bind's getfqdn() (possible DNS lookup).
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def finish_request(self, request, client_address):
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(30)
                request.do_handshake()
                request.settimeout(None)
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError,
                    socket.timeout):
                return  # client left before/while handshaking: stay quiet
            except (ssl.SSLError, OSError) as e:
                note("TLS handshake failed from %s:%s: %s"
                     % (client_address[0], client_address[1],
                        getattr(e, "reason", None) or e))
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLEOFError,
                            ssl.SSLZeroReturnError, socket.timeout)):
            return
        if isinstance(exc, (ssl.SSLError, OSError)):
            note("%s:%s: %s" % (client_address[0], client_address[1], exc))
            return
        super().handle_error(request, client_address)


class Stop(Exception):
    pass


def raise_nofile_limit():
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        want = min(want, 65536)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except Exception:
        pass


def write_port_file(path, port):
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.tmp.%d" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="HTTPS webhook test receiver")
    ap.add_argument("--cert", help="server certificate (PEM)")
    ap.add_argument("--key", help="server private key (PEM)")
    ap.add_argument("--log", required=True, help="JSON-lines request log (appended)")
    ap.add_argument("--port", type=int, default=0, help="port (0 = ephemeral)")
    ap.add_argument("--port-file", help="write the bound port here (atomically)")
    ap.add_argument("--host", default="127.0.0.1", help="bind address")
    ap.add_argument("--plain-http", action="store_true", help="no TLS")
    args = ap.parse_args()

    ctx = None
    if not args.plain_http:
        if not args.cert or not args.key:
            ap.error("--cert and --key are required unless --plain-http")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        ctx.set_alpn_protocols(["http/1.1"])

    raise_nofile_limit()
    reqlog = RequestLog(args.log)

    class BoundServer(Server):
        address_family = socket.AF_INET6 if ":" in args.host else socket.AF_INET

    srv = BoundServer((args.host, args.port), Handler, ctx, reqlog)
    port = srv.socket.getsockname()[1]

    def on_signal(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if args.port_file:
        write_port_file(args.port_file, port)
    print("listening on %d" % port, flush=True)

    code = 0
    try:
        srv.serve_forever(poll_interval=0.5)
    except Stop:
        pass
    except Exception as e:
        note("fatal: %r" % e)
        code = 1
    srv.stopping = True
    try:
        srv.socket.close()
    except Exception:
        pass
    reqlog.close()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    # Don't wait for (daemon) handler threads, e.g. ones parked in /hang.
    os._exit(code)


if __name__ == "__main__":
    main()
