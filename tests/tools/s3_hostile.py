#!/usr/bin/env python3
"""A hostile S3 endpoint for the hardening tests (stdlib only).

Accepts any credentials.  Objects PUT to it are kept in memory (so a
daemon's uploads succeed), GET/HEAD of an object serve them back, but
every ListObjectsV2 request (GET ?list-type=2) is answered according to
--mode:
  nested      200 with a 7 MB body of elements nested 2 million deep
  loop        200, IsTruncated=true, the same NextContinuationToken for ever
  cycle       200, IsTruncated=true, tokens A, B, A, B, ...
  endless     200, IsTruncated=true, a new token on every page
  truncated   200 with a Content-Length of 50,000 and 200 bytes, then close
  garbage     200 with a body that is not XML
  status:N    status N (e.g. 301, 302, 418, 204) with an empty body, on
              every request, not only listings
  silent      every request is read and never answered (the socket stays
              open)
  ok          a real, empty (or PUT-filled) listing
Each request's method and path are appended to --log (one line each).
Prints "PORT <n>" once listening on 127.0.0.1.
"""
import argparse
import socketserver
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from xml.sax.saxutils import escape


class State:
    lock = threading.Lock()
    mode = "ok"
    log = None
    objects = {}  # "bucket/key" -> bytes
    pages = 0


def listing(bucket, prefix, token, keys, truncated, next_token):
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult '
           'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
           "<Name>%s</Name><Prefix>%s</Prefix><KeyCount>%d</KeyCount>"
           % (escape(bucket), escape(prefix), len(keys)),
           "<MaxKeys>1000</MaxKeys>"]
    if token:
        out.append("<ContinuationToken>%s</ContinuationToken>"
                   % escape(token))
    out.append("<IsTruncated>%s</IsTruncated>"
               % ("true" if truncated else "false"))
    if next_token:
        out.append("<NextContinuationToken>%s</NextContinuationToken>"
                   % escape(next_token))
    for k, size in keys:
        out.append("<Contents><Key>%s</Key><LastModified>"
                   "2026-11-26T14:52:03.000Z</LastModified><Size>%d</Size>"
                   "<StorageClass>STANDARD</StorageClass></Contents>"
                   % (escape(k), size))
    out.append("</ListBucketResult>")
    return "".join(out).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code, body=b"", ctype="application/xml", length=None):
        self.send_response(code)
        if body or length is not None:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length",
                         str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if State.log:
            with State.lock, open(State.log, "a") as f:
                f.write("%s %s\n" % (self.command, self.path))
        mode = State.mode
        if mode == "silent":
            time.sleep(3600)
            return
        if mode.startswith("status:"):
            self._send(int(mode.split(":", 1)[1]))
            return
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        parts = u.path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        if self.command == "GET" and not key and "list-type" in q:
            self._list(bucket, q)
            return
        if "location" in q:
            self._send(200, b'<?xml version="1.0" encoding="UTF-8"?>\n'
                       b"<LocationConstraint/>")
            return
        name = bucket + "/" + key
        if self.command == "PUT":
            with State.lock:
                State.objects[name] = body
            self.send_response(200)
            self.send_header("ETag", '"0"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "POST" and "delete" in q:
            self._send(200, b'<?xml version="1.0" encoding="UTF-8"?>\n'
                       b"<DeleteResult/>")
            return
        if self.command == "DELETE":
            with State.lock:
                State.objects.pop(name, None)
            self._send(204)
            return
        with State.lock:
            data = State.objects.get(name)
        if data is None:
            self._send(404, b'<?xml version="1.0" encoding="UTF-8"?>\n'
                       b"<Error><Code>NoSuchKey</Code><Message>The specified "
                       b"key does not exist.</Message></Error>")
            return
        self._send(200, data, "application/octet-stream")

    def _list(self, bucket, q):
        mode = State.mode
        prefix = q.get("prefix", [""])[0]
        token = q.get("continuation-token", [""])[0]
        with State.lock:
            State.pages += 1
            page = State.pages
        if mode == "nested":
            depth = 7 * 1024 * 1024 // 3
            body = (b'<?xml version="1.0"?>\n<ListBucketResult>'
                    + b"<a>" * depth)
            self._send(200, body)
        elif mode == "loop":
            self._send(200, listing(bucket, prefix, token, [], True, "again"))
        elif mode == "cycle":
            nxt = "B" if token == "A" else "A"
            self._send(200, listing(bucket, prefix, token, [], True, nxt))
        elif mode == "endless":
            self._send(200, listing(bucket, prefix, token, [], True,
                                    "page-%d" % page))
        elif mode == "truncated":
            body = listing(bucket, prefix, token, [], False, None)[:200]
            self._send(200, body, length=50000)
            self.close_connection = True
        elif mode == "garbage":
            self._send(200, b"<html><body>this is not S3</body>", "text/html")
        else:
            with State.lock:
                keys = sorted((k.split("/", 1)[1], len(v))
                              for k, v in State.objects.items()
                              if k.startswith(bucket + "/"))
            keys = [(k, s) for k, s in keys if k.startswith(prefix)]
            delim = q.get("delimiter", [""])[0]
            if delim:
                seen, flat, prefixes = set(), [], []
                for k, s in keys:
                    rest = k[len(prefix):]
                    if delim in rest:
                        p = prefix + rest.split(delim, 1)[0] + delim
                        if p not in seen:
                            seen.add(p)
                            prefixes.append(p)
                    else:
                        flat.append((k, s))
                body = listing(bucket, prefix, token, flat, False, None)
                extra = "".join("<CommonPrefixes><Prefix>%s</Prefix>"
                                "</CommonPrefixes>" % escape(p)
                                for p in prefixes).encode()
                body = body.replace(b"</ListBucketResult>",
                                    extra + b"</ListBucketResult>")
            else:
                body = listing(bucket, prefix, token, keys, False, None)
            self._send(200, body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError,
                                              ConnectionResetError)):
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="ok")
    ap.add_argument("--log", default=None)
    a = ap.parse_args()
    State.mode = a.mode
    State.log = a.log
    srv = Server(("127.0.0.1", 0), Handler)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
