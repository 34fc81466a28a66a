#!/usr/bin/env python3
"""OAuth2 stand-in for Google, and an authenticating proxy to the GCS emulator.

The storage emulator accepts anything, so sluice's OAuth2 code needs a
counterpart that checks it.  This server (127.0.0.1, port written to
--port-file) offers:

  POST /token   the service-account flow: grant_type jwt-bearer, and an
                assertion whose RS256 signature is verified with the openssl
                CLI against --pubkey, and whose claims must be iss = --email,
                scope = devstorage.read_write, aud = this URL, iat about now,
                exp = iat + 3600.  Hands out tokens valid --expires-in s.
  GET  /computeMetadata/v1/instance/service-accounts/default/token
                the GCE metadata server (needs "Metadata-Flavor: Google").
  GET  /_stats  what happened, as JSON (tokens issued, JWT failures,
                requests per token, rejected requests, resumable chunks).
  POST /_revoke every token issued so far stops working.
  POST /_fail_tokens?n=N  the next N token requests get 400
                invalid_request (an outage of the token endpoint).
  anything else the storage JSON API: the bearer token must be one we
                issued and not expired, else 401; then the request goes to
                --upstream.  With --chunked, resumable uploads are handled
                here as real GCS does (chunks of multiples of 256 KiB, 308
                with "Range: bytes=0-N"); with --partial the first chunk of
                each session is only half persisted, so the client must
                resume from the Range it is told.  Complete uploads are
                stored upstream with uploadType=media.

Python 3 standard library only; RS256 is checked by `openssl dgst -verify`.
"""
import argparse
import base64
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CHUNK_UNIT = 256 * 1024

args = None
lock = threading.Lock()
state = {
    "tokens": 0,        # issued by /token
    "metadata": 0,      # issued by the metadata endpoint
    "jwt_ok": 0,
    "jwt_fail": [],     # reasons
    "used": {},         # token -> requests proxied with it
    "rejected": [],     # reasons for 401s
    "chunks": [],       # Content-Range of resumable PUTs
    "sessions": 0,
    "claims": None,     # last good claims
    "failed_on_purpose": 0,
}
fail_tokens = [0]       # token requests still to refuse (/_fail_tokens)
tokens = {}             # token -> expiry (time.time())
sessions = {}           # upload_id -> dict
port = 0


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_jwt(assertion):
    """Returns (claims, None) or (None, reason)."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return None, "not a compact JWS"
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except Exception as e:  # noqa: BLE001
        return None, "undecodable JWT: %s" % e
    if header.get("alg") != "RS256":
        return None, "alg is %r" % header.get("alg")
    with tempfile.NamedTemporaryFile() as s, tempfile.NamedTemporaryFile() as d:
        s.write(sig)
        s.flush()
        d.write((parts[0] + "." + parts[1]).encode())
        d.flush()
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", args.pubkey,
                            "-signature", s.name, d.name], capture_output=True)
    if r.returncode != 0:
        return None, "bad signature"
    now = time.time()
    aud = "http://127.0.0.1:%d/token" % port
    if claims.get("iss") != args.email:
        return None, "iss %r" % claims.get("iss")
    if claims.get("scope") != SCOPE:
        return None, "scope %r" % claims.get("scope")
    if claims.get("aud") != aud:
        return None, "aud %r, want %r" % (claims.get("aud"), aud)
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int):
        return None, "iat/exp not integers"
    if abs(iat - now) > 300:
        return None, "iat %d too far from now %d" % (iat, now)
    if exp != iat + 3600:
        return None, "exp %d is not iat + 3600" % exp
    return claims, None


def new_token(kind):
    with lock:
        state[kind] += 1
        n = state["tokens"] + state["metadata"]
        tok = "ya29.test-%d-%s" % (n, os.urandom(6).hex())
        tokens[tok] = time.time() + args.expires_in
    return tok


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):  # quiet
        if args.verbose:
            BaseHTTPRequestHandler.log_message(self, fmt, *a)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, code, data=b"", ctype="application/json", headers=()):
        if isinstance(data, (dict, list)):
            data = json.dumps(data).encode()
        elif isinstance(data, str):
            data = data.encode()
        self.send_response(code)
        if data:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    # --- token endpoints ---

    def token(self):
        form = urllib.parse.parse_qs(self.body().decode())
        with lock:
            refuse = fail_tokens[0] > 0
            if refuse:
                fail_tokens[0] -= 1
                state["failed_on_purpose"] += 1
        if refuse:
            return self.reply(400, {"error": "invalid_request",
                                    "error_description": "test outage"})
        if form.get("grant_type") != [GRANT]:
            return self.reply(400, {"error": "unsupported_grant_type"})
        claims, why = verify_jwt(form.get("assertion", [""])[0])
        if why:
            with lock:
                state["jwt_fail"].append(why)
            desc = ("Invalid JWT Signature." if why == "bad signature"
                    else "Invalid JWT: " + why)
            return self.reply(400, {"error": "invalid_grant",
                                    "error_description": desc})
        with lock:
            state["jwt_ok"] += 1
            state["claims"] = claims
        tok = new_token("tokens")
        self.reply(200, {"access_token": tok, "expires_in": args.expires_in,
                         "token_type": "Bearer"})

    def metadata(self):
        if self.headers.get("Metadata-Flavor") != "Google":
            return self.reply(403, "Missing Metadata-Flavor:Google header.",
                              "text/plain")
        tok = new_token("metadata")
        self.reply(200, {"access_token": tok, "expires_in": args.expires_in,
                         "token_type": "Bearer"})

    # --- storage proxy ---

    def authorized(self):
        auth = self.headers.get("Authorization") or ""
        why = None
        if not auth.startswith("Bearer "):
            why = "no bearer token"
        else:
            tok = auth[7:]
            with lock:
                exp = tokens.get(tok)
                if exp is None:
                    why = "unknown or revoked token"
                elif time.time() >= exp:
                    why = "expired token"
                else:
                    state["used"][tok] = state["used"].get(tok, 0) + 1
        if why:
            with lock:
                state["rejected"].append(why)
            self.body()
            self.reply(401, {"error": {"code": 401,
                                       "message": "Invalid Credentials",
                                       "errors": [{"reason": "authError",
                                                   "message": why}]}})
            return False
        return True

    def upstream(self, method, path, data, headers):
        u = urllib.parse.urlsplit(args.upstream)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        out = r.read()
        hdrs = [(k, v) for k, v in r.getheaders()
                if k.lower() in ("content-type", "location", "range",
                                 "content-range")]
        c.close()
        return r.status, out, hdrs

    def forward(self):
        data = self.body()
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("content-type", "range", "host",
                                    "x-upload-content-type",
                                    "x-upload-content-length")}
        if data or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(data))
        st, out, hdrs = self.upstream(self.command, self.path, data, headers)
        ctype = dict((k.lower(), v) for k, v in hdrs).get("content-type", "")
        self.reply(st, out, ctype, [(k, v) for k, v in hdrs
                                    if k.lower() != "content-type"])

    def start_session(self, q):
        self.body()
        with lock:
            state["sessions"] += 1
            sid = "proxy-%d" % state["sessions"]
            sessions[sid] = {"bucket": self.path.split("/")[5],
                             "name": q["name"][0],
                             "total": int(self.headers.get(
                                 "X-Upload-Content-Length", "-1")),
                             "data": bytearray(), "chunks": 0}
        loc = ("http://127.0.0.1:%d/upload/storage/v1/b/%s/o?uploadType="
               "resumable&name=%s&upload_id=%s" % (
                   port, sessions[sid]["bucket"],
                   urllib.parse.quote(q["name"][0], safe=""), sid))
        self.reply(200, headers=[("Location", loc)])

    def put_chunk(self, sid):
        data = self.body()
        s = sessions.get(sid)
        if s is None:
            return self.reply(404, {"error": {"code": 404,
                                              "message": "No such upload"}})
        cr = self.headers.get("Content-Range", "")
        with lock:
            state["chunks"].append(cr)
        try:
            unit, rng = cr.split(" ", 1)
            span, total = rng.split("/")
            a, b = (int(x) for x in span.split("-"))
            total = int(total)
        except ValueError:
            return self.reply(400, {"error": {"code": 400, "message":
                                              "bad Content-Range %r" % cr}})
        if b - a + 1 != len(data) or a > len(s["data"]) or total != s["total"]:
            return self.reply(400, {"error": {"code": 400, "message":
                                              "Content-Range %r does not fit "
                                              "(have %d)" % (cr, len(s["data"]))}})
        final = b + 1 == total
        if not final and len(data) % CHUNK_UNIT:
            return self.reply(400, {"error": {"code": 400, "message":
                                              "chunk not a multiple of 256 KiB"}})
        new = data[len(s["data"]) - a:]
        if args.partial and s["chunks"] == 0 and len(new) >= 2 * CHUNK_UNIT:
            keep = (len(new) // 2) // CHUNK_UNIT * CHUNK_UNIT
            new = new[:keep]
        s["chunks"] += 1
        s["data"] += new
        if len(s["data"]) < total:
            return self.reply(308, headers=[("Range", "bytes=0-%d" %
                                              (len(s["data"]) - 1))])
        path = ("/upload/storage/v1/b/%s/o?uploadType=media&name=%s" %
                (s["bucket"], urllib.parse.quote(s["name"], safe="")))
        st, out, hdrs = self.upstream(
            "POST", path, bytes(s["data"]),
            {"Content-Type": "application/octet-stream",
             "Content-Length": str(len(s["data"]))})
        del sessions[sid]
        self.reply(st, out)

    def storage(self):
        if not self.authorized():
            return
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        if args.chunked and u.path.startswith("/upload/"):
            if self.command == "POST" and q.get("uploadType") == ["resumable"]:
                return self.start_session(q)
            if self.command == "PUT" and "upload_id" in q:
                return self.put_chunk(q["upload_id"][0])
        self.forward()

    def route(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/token" and self.command == "POST":
            return self.token()
        if path.startswith("/computeMetadata/") and self.command == "GET":
            return self.metadata()
        if path == "/_stats":
            with lock:
                return self.reply(200, state)
        if path == "/_fail_tokens":
            self.body()
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            with lock:
                fail_tokens[0] = int(q.get("n", ["1"])[0])
            return self.reply(200, {})
        if path == "/_revoke":
            self.body()
            with lock:
                tokens.clear()
            return self.reply(200, {})
        return self.storage()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = route


def main():
    global args, port
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--pubkey", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--expires-in", type=int, default=3600)
    p.add_argument("--upstream", required=True)
    p.add_argument("--chunked", action="store_true")
    p.add_argument("--partial", action="store_true")
    p.add_argument("--port", type=int, default=0,
                   help="listen here (0: any free port)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
