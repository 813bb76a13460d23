#!/usr/bin/env python3
"""Static file server for the proxy-mode tool tests: serves DIR on 127.0.0.1 (over TLS
when CERT and KEY are given) and logs every request, one JSON object a line on stdout
({"port": N} first, then {"event": "request", "path": ..., "host": ...}).

  static.py DIR [CERT KEY]
A path without a file that has DIR/PATH.json is answered with that file (an npm
packument next to its tarball directory).
"""
import functools
import http.server
import json
import os
import ssl
import sys
import threading

lock = threading.Lock()


def log(**kw):
    with lock:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_head(self):
        log(event="request", path=self.path, host=self.headers.get("Host"))
        local = self.translate_path(self.path)
        if not os.path.exists(local) and os.path.isfile(local + ".json"):
            self.path = self.path.split("?")[0] + ".json"
        return super().send_head()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


root = sys.argv[1]
srv = Server(("127.0.0.1", 0), functools.partial(Handler, directory=root))
if len(sys.argv) > 3:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
log(port=srv.server_address[1])
srv.serve_forever()
