#!/usr/bin/env python3
"""Stand-ins for the AWS credential endpoints, for the S3 tests (stdlib).

  PUT  /latest/api/token                         IMDSv2 session token
  GET  /latest/meta-data/iam/security-credentials/        role name
  GET  /latest/meta-data/iam/security-credentials/ROLE    JSON credentials
  GET  /container                                 ECS-style JSON credentials
                                                  (needs Authorization)
  POST /sts                                       STS AssumeRoleWithWebIdentity
  GET  /stats                                     {"path": count, ...}

Every answer hands out --key/--secret with a session token, expiring
--ttl seconds from now.  IMDS metadata requests without the session token
get 401, as IMDSv2 enforces.  Prints "PORT <n>" once listening.
"""
import argparse
import datetime
import json
import socketserver
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

ROLE = "sluice-test-role"
TOKEN = "imds-session-token-123"


class S:
    lock = threading.Lock()
    stats = {}
    key = secret = None
    ttl = 3600
    auth = "Bearer container-secret"
    web_token = "web-identity-jwt"


def expiration():
    t = datetime.datetime.now(datetime.timezone.utc) + \
        datetime.timedelta(seconds=S.ttl)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def count(self):
        with S.lock:
            S.stats[self.command + " " + self.path] = \
                S.stats.get(self.command + " " + self.path, 0) + 1

    def creds_json(self):
        return json.dumps({"Code": "Success", "AccessKeyId": S.key,
                           "SecretAccessKey": S.secret,
                           "Token": "session-token-%d" % sum(S.stats.values()),
                           "Expiration": expiration()})

    def do_PUT(self):
        self.count()
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        if self.path == "/latest/api/token" and \
                self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.reply(200, TOKEN)
        self.reply(400, "bad token request")

    def do_GET(self):
        self.count()
        if self.path == "/stats":
            with S.lock:
                return self.reply(200, json.dumps(S.stats), "application/json")
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path.startswith(base):
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                return self.reply(401, "")
            if self.path == base:
                return self.reply(200, ROLE + "\n")
            if self.path == base + ROLE:
                return self.reply(200, self.creds_json(), "application/json")
            return self.reply(404, "")
        if self.path == "/container":
            if self.headers.get("Authorization") != S.auth:
                return self.reply(403, "{}")
            return self.reply(200, self.creds_json(), "application/json")
        self.reply(404, "")

    def do_POST(self):
        self.count()
        n = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        if self.path.startswith("/sts"):
            ok = (form.get("Action") == ["AssumeRoleWithWebIdentity"] and
                  form.get("WebIdentityToken") == [S.web_token] and
                  form.get("RoleArn"))
            if not ok:
                return self.reply(400, "<ErrorResponse><Error><Code>"
                                  "InvalidIdentityToken</Code><Message>bad "
                                  "token</Message></Error></ErrorResponse>",
                                  "text/xml")
            xml = ("<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts."
                   "amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentity"
                   "Result><Credentials><AccessKeyId>%s</AccessKeyId>"
                   "<SecretAccessKey>%s</SecretAccessKey><SessionToken>sts-"
                   "token</SessionToken><Expiration>%s</Expiration>"
                   "</Credentials></AssumeRoleWithWebIdentityResult>"
                   "</AssumeRoleWithWebIdentityResponse>" %
                   (S.key, S.secret, expiration()))
            return self.reply(200, xml, "text/xml")
        self.reply(404, "")


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", default="S3RVER")
    ap.add_argument("--secret", default="S3RVER")
    ap.add_argument("--ttl", type=int, default=3600)
    a = ap.parse_args()
    S.key, S.secret, S.ttl = a.key, a.secret, a.ttl
    srv = Server(("127.0.0.1", 0), H)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
