#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for the S3 tests (stdlib only).

Forwards every request unchanged (headers included, so SigV4 signatures
made for the proxy's Host still verify upstream) to --upstream, except that
the first requests follow --faults, a comma list of:
  503      answer 503 SlowDown (S3 XML error body)
  500      answer 500 InternalError
  400rt    answer 400 RequestTimeout
  403      answer 403 AccessDenied
  expired  answer 400 ExpiredToken
  drop     close the connection without answering
  slow     wait 3 s (--slow-ms), then forward
  ok       forward
After the list, every request is forwarded.  While --down-file exists,
every request gets the fault written in it (or --down-mode, default
drop): the store is down (with --down-match SUBSTR, only for the
requests whose path contains SUBSTR).  With --always CODE every
request gets that fault.  Each request's method, path and headers are
appended to --log (one JSON object per line).  Prints "PORT <n>" once
listening on 127.0.0.1.
"""
import argparse
import http.client
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

ERRORS = {
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "500": (500, "InternalError", "We encountered an internal error."),
    "400rt": (400, "RequestTimeout", "Your socket connection to the server "
              "was not read from or written to within the timeout period."),
    "403": (403, "AccessDenied", "Access Denied"),
    "expired": (400, "ExpiredToken", "The provided token has expired."),
}


class State:
    lock = threading.Lock()
    faults = []
    always = None
    count = 0
    log = None
    upstream = None
    down_file = None
    down_mode = "drop"
    down_match = None
    slow_ms = 3000


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _fault(self):
        with State.lock:
            State.count += 1
            if State.down_file and os.path.exists(State.down_file) and \
                    (not State.down_match or State.down_match in self.path):
                try:
                    with open(State.down_file) as f:
                        mode = f.read().strip()
                except OSError:
                    mode = ""
                return mode or State.down_mode
            if State.always:
                return State.always
            if State.faults:
                return State.faults.pop(0)
            return "ok"

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if State.log:
            with State.lock, open(State.log, "a") as f:
                f.write(json.dumps({"t": time.time(),
                                    "method": self.command, "path": self.path,
                                    "headers": dict(self.headers.items()),
                                    "len": len(body)}) + "\n")
        fault = self._fault()
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault in ERRORS:
            code, s3code, msg = ERRORS[fault]
            xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s"
                   "</Code><Message>%s</Message><RequestId>fault</RequestId>"
                   "</Error>" % (s3code, msg)).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(xml)
            return
        if fault == "slow":
            time.sleep(State.slow_ms / 1000.0)
        host, port = State.upstream
        conn = http.client.HTTPConnection(host, port, timeout=60)
        headers = {k: v for k, v in self.headers.items()}
        conn.putrequest(self.command, self.path, skip_host=True,
                        skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders(body if body or n else None)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection",
                             "content-length"):
                continue
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients that give up (the shutdown tests) are expected.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError,
                                              ConnectionResetError)):
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", default="127.0.0.1:4568")
    ap.add_argument("--faults", default="")
    ap.add_argument("--always", default=None)
    ap.add_argument("--slow-ms", type=int, default=3000)
    ap.add_argument("--log", default=None)
    ap.add_argument("--down-file", default=None,
                    help="while this file exists, every request gets "
                    "--down-mode (the store is down)")
    ap.add_argument("--down-mode", default="drop")
    ap.add_argument("--down-match", default=None,
                    help="the down-file applies only to paths with this")
    a = ap.parse_args()
    h, p = a.upstream.rsplit(":", 1)
    State.upstream = (h, int(p))
    State.faults = [f for f in a.faults.split(",") if f]
    State.always = a.always
    State.slow_ms = a.slow_ms
    State.log = a.log
    State.down_file = a.down_file
    State.down_mode = a.down_mode
    State.down_match = a.down_match
    srv = Server(("127.0.0.1", 0), Handler)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
