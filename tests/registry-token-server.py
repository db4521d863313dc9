#!/usr/bin/env python3
"""registry-token-server.py: a token server of the distribution spec's token
auth, for tests, on 127.0.0.1: GET /token?service=S&scope=repository:R:A
with Basic USER:PASSWORD answers {"token": JWT}, the JWT signed RS256 (by
openssl) with KEY, its certificate CERT in the x5c header (the registry
trusts CERT as its rootcertbundle). Wrong credentials: 401.

  registry-token-server.py --key K --cert C --user U --password P
      --issuer I [--port-file F] [--timeout S] [--log F]
"""
import argparse, base64, http.server, json, os, subprocess, sys, threading, time

p = argparse.ArgumentParser()
p.add_argument("--key", required=True)
p.add_argument("--cert", required=True)
p.add_argument("--user", required=True)
p.add_argument("--password", required=True)
p.add_argument("--issuer", required=True)
p.add_argument("--port-file")
p.add_argument("--timeout", type=float, default=600)
p.add_argument("--log")
a = p.parse_args()

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

der = subprocess.run(["openssl", "x509", "-in", a.cert, "-outform", "DER"], check=True,
                     capture_output=True).stdout
want = "Basic " + base64.b64encode(f"{a.user}:{a.password}".encode()).decode()

def sign(claims):
    head = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
    msg = (b64u(json.dumps(head).encode()) + "." + b64u(json.dumps(claims).encode())).encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", a.key], input=msg, check=True,
                         capture_output=True).stdout
    return msg.decode() + "." + b64u(sig)

class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        from urllib.parse import urlparse, parse_qs
        u = urlparse(self.path)
        q = parse_qs(u.query)
        ok = self.headers.get("Authorization") == want
        if a.log:
            with open(a.log, "a") as f:
                f.write(f"GET {u.path} {'ok' if ok else 'refused'} {' '.join(q.get('scope', []))}\n")
        if u.path != "/token" or not ok:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        access = []
        for s in q.get("scope", []):
            t, name, actions = s.split(":", 2) if s.count(":") >= 2 else (None, None, None)
            if t == "repository":
                access.append({"type": t, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        tok = sign({"iss": a.issuer, "sub": a.user, "aud": q.get("service", [""])[0],
                    "exp": now + 300, "nbf": now - 10, "iat": now,
                    "jti": base64.b16encode(os.urandom(8)).decode(), "access": access})
        body = json.dumps({"token": tok, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
if a.port_file:
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
threading.Timer(a.timeout, lambda: os._exit(0)).start()
srv.serve_forever()
