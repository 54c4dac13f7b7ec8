#!/usr/bin/env python3
"""A demo citations API for examples/research, on 127.0.0.1 (port 8787, or argv[1];
0 picks a free port, printed on the first line).

GET /related?topic=T answers JSON: works related to topic T, each with a
title, year and citation count. Every request must carry
`Authorization: Bearer <token>`, the token being $RESEARCH_TOKEN (default
`demo-token`): the workflow passes it to its `scout` agent as a secret.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TOKEN = os.environ.get("RESEARCH_TOKEN", "demo-token")

WORKS = {
    "scheduling": [
        {"title": "Critical-path scheduling of task graphs", "year": 1961, "citations": 2140},
        {"title": "Work stealing for fork-join parallelism", "year": 1999, "citations": 1310},
    ],
    "isolation": [
        {"title": "Snapshot isolation in multiversion databases", "year": 1995, "citations": 1720},
        {"title": "Software fault isolation for untrusted code", "year": 1993, "citations": 1480},
    ],
    "caching": [
        {"title": "Content-addressed storage for build systems", "year": 2018, "citations": 380},
    ],
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.answer(401, {"error": "missing or wrong bearer token"})
        if url.path != "/related":
            return self.answer(404, {"error": f"no such endpoint {url.path}"})
        topic = parse_qs(url.query).get("topic", [""])[0].lower()
        return self.answer(200, {"topic": topic, "works": WORKS.get(topic, [])})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("api: " + fmt % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8787
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    port = server.server_address[1]
    print(f"research API on http://127.0.0.1:{port} (token from $RESEARCH_TOKEN, default demo-token)", flush=True)
    server.serve_forever()
