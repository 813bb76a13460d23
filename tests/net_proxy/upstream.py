#!/usr/bin/env python3
"""HTTPS upstream for the proxy tests: serves on 127.0.0.1 with the given certificate and
logs, one JSON object a line on stdout, every TCP connection it accepts ("conn"), every TLS
server name it is asked for ("sni") and every request it answers ("request").

  upstream.py CERT KEY [PORT]     prints {"port": N} first
GET /redirect?to=URL answers 302 to URL; anything else 200 "hello from HOST".
"""
import http.server
import json
import socket
import ssl
import sys
import threading

lock = threading.Lock()


def log(**kw):
    with lock:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        log(event="request", path=self.path, host=self.headers.get("Host"),
            headers=dict(self.headers.items()))
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = ("hello from %s\n" % self.headers.get("Host")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def get_request(self):
        sock, addr = self.socket.accept()
        log(event="conn", peer=addr[0])
        sock.settimeout(10)
        # The handshake happens on the handler thread (first read), not in the accept loop.
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        log(event="error", detail=str(sys.exc_info()[1]))


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])


def on_sni(sslobj, name, _ctx):
    log(event="sni", name=name)


ctx.sni_callback = on_sni
port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
srv = Server(("127.0.0.1", port), Handler)
log(port=srv.server_address[1])
srv.serve_forever()
