#!/usr/bin/python3
"""A stand-in for the WhatsApp Business Cloud API (Graph) send endpoint, for twofactor's tests.

It accepts POST /vNN.N/<--phone-number-id>/messages with
Authorization: Bearer <--token> and an authentication-template body of exactly
the shape twofactor sends (the code in the body and in the url button, the same
both times), and answers 400 with Graph error code 100 to anything else. A wrong
token gets 401 with code 190, as Graph does.

What a well-formed request gets is decided by --control, a JSON file re-read on
every request, mapping E.164 numbers to answers given in turn, then success:

  {"+4915112345678": [130429, 130429],
   "+4915100000001": [{"code": 999, "status": 503, "message": "...", "details": "..."}],
   "+4915100000002": [{"sleep": 3}],
   "+4915100000003": [{"status": 502, "raw": "Bad Gateway"}]}

An integer is that Graph error code, answered with HTTP 400, except 2 and
131000 with 500: the driver must go by the code, not the status. An object may
set code, status, message, details; "sleep" delays a success; "raw" answers a
non-JSON body. The n-th request to a number takes the n-th entry.

Success: {"messaging_product":"whatsapp","contacts":[{"input":to,"wa_id":to without +}],
"messages":[{"id":"wamid.<uuid>"}]}. Every request is appended to --log as one
JSON line (path, headers, parsed body, status answered) before the answer. It
exits by itself after --max-seconds, and on SIGTERM.
"""

import argparse
import json
import os
import re
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
CODE_RE = re.compile(r"^[0-9]{4,15}$")
VERSION_RE = r"v[0-9]+\.[0-9]+"

# Graph's own wording for the codes tests use (the driver must not depend on it).
MESSAGES = {
    2: "Service temporarily unavailable",
    4: "Application request limit reached",
    100: "Invalid parameter",
    190: "Invalid OAuth access token - Cannot parse access token",
    368: "Temporarily blocked for policies violations",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    131000: "Something went wrong",
    131016: "Service unavailable",
    131026: "Message undeliverable",
    131031: "Account has been locked",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
}


class State:
    def __init__(self, args):
        self.args = args
        self.path_re = re.compile(rf"^/{VERSION_RE}/{re.escape(args.phone_number_id)}/messages$")
        self.lock = threading.Lock()
        self.counts = {}  # number -> well-formed requests seen

    def seen(self, number):
        with self.lock:
            self.counts[number] = self.counts.get(number, 0) + 1
            return self.counts[number]

    def control(self):
        if not self.args.control:
            return {}
        try:
            with open(self.args.control, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def record(self, entry):
        line = json.dumps(entry, sort_keys=True)
        with self.lock, open(self.args.log, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def graph_error(status, code, message=None, details=None):
    """An error as Graph sends it (providers.md)."""
    text = message if message is not None else MESSAGES.get(code, "Unknown error")
    doc = {"error": {
        "message": f"(#{code}) {text}",
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details if details is not None else text},
        "fbtrace_id": uuid.uuid4().hex[:20],
    }}
    return (status, doc)


def text_parameter(parameters, what):
    if not isinstance(parameters, list) or len(parameters) != 1:
        return None, f"{what}.parameters must hold one parameter"
    p = parameters[0]
    if not isinstance(p, dict) or set(p) != {"type", "text"} or p["type"] != "text":
        return None, f'{what}.parameters[0] must be {{"type":"text","text":...}}'
    if not isinstance(p["text"], str) or not CODE_RE.match(p["text"]):
        return None, f"{what}.parameters[0].text must be the code (4-15 digits)"
    return p["text"], None


def check_shape(doc):
    """None when the body is the authentication template twofactor sends, else why not."""
    if not isinstance(doc, dict):
        return "body is not a JSON object"
    if set(doc) != {"messaging_product", "recipient_type", "to", "type", "template"}:
        return f"top-level keys must be exactly messaging_product, recipient_type, to, type, template; got {sorted(doc)}"
    if doc["messaging_product"] != "whatsapp":
        return "messaging_product must be whatsapp"
    if doc["recipient_type"] != "individual":
        return "recipient_type must be individual"
    if not isinstance(doc["to"], str) or not E164_RE.match(doc["to"]):
        return "to must be an E.164 number"
    if doc["type"] != "template":
        return "type must be template"
    t = doc["template"]
    if not isinstance(t, dict) or set(t) != {"name", "language", "components"}:
        return "template must have exactly name, language, components"
    if not isinstance(t["name"], str) or not re.fullmatch(r"[a-z0-9_]{1,512}", t["name"]):
        return "template.name must be a template name"
    lang = t["language"]
    if not isinstance(lang, dict) or set(lang) != {"code"} or not isinstance(lang["code"], str) \
            or not re.fullmatch(r"[a-z]{2,3}(_[A-Z]{2})?", lang["code"]):
        return 'template.language must be {"code": "en_US"}'
    comps = t["components"]
    if not isinstance(comps, list) or len(comps) != 2:
        return "template.components must hold the body and the button"
    body, button = comps
    if not isinstance(body, dict) or set(body) != {"type", "parameters"} or body["type"] != "body":
        return 'components[0] must be {"type":"body","parameters":[...]}'
    code1, why = text_parameter(body["parameters"], "components[0]")
    if why:
        return why
    if not isinstance(button, dict) or set(button) != {"type", "sub_type", "index", "parameters"}:
        return "components[1] must have exactly type, sub_type, index, parameters"
    if button["type"] != "button" or button["sub_type"] != "url":
        return 'components[1] must be a "button" of sub_type "url"'
    if button["index"] != "0":
        return 'components[1].index must be the string "0"'
    code2, why = text_parameter(button["parameters"], "components[1]")
    if why:
        return why
    if code1 != code2:
        return "the body and the button must carry the same code"
    return None


def answer(state, number):
    entries = state.control().get(number, [])
    n = state.seen(number)
    entry = entries[n - 1] if isinstance(entries, list) and n <= len(entries) else None
    if isinstance(entry, int):
        return graph_error(500 if entry in (2, 131000) else 400, entry), 0, None
    if isinstance(entry, dict):
        if "raw" in entry:
            return (int(entry.get("status", 502)), None), 0, str(entry["raw"])
        if "code" in entry:
            code = int(entry["code"])
            status = int(entry.get("status", 500 if code in (2, 131000) else 400))
            return graph_error(status, code, entry.get("message"), entry.get("details")), 0, None
        sleep = float(entry.get("sleep", 0))
    else:
        sleep = 0
    doc = {"messaging_product": "whatsapp",
           "contacts": [{"input": number, "wa_id": number.lstrip("+")}],
           "messages": [{"id": f"wamid.{uuid.uuid4().hex}"}]}
    return (200, doc), sleep, None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "graph-mock"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # the JSON log is the record; stderr stays quiet

    def send(self, reply, raw=None):
        status, doc = reply
        data = raw.encode() if raw is not None else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if raw is not None else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send(graph_error(400, 100, "Unsupported get request", "only POST .../messages"))

    def do_POST(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        raw_body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = {"method": "POST", "path": self.path, "headers": headers, "time": time.time()}
        try:
            doc = json.loads(raw_body.decode("utf-8"))
        except ValueError:
            doc = None
        entry["json"] = doc
        sleep, raw = 0, None
        if not state.path_re.match(self.path):
            reply = graph_error(400, 100, "Unsupported post request", f"no such path {self.path}")
        elif headers.get("authorization") != "Bearer " + state.args.token:
            reply = graph_error(401, 190)
        elif headers.get("content-type", "").split(";")[0].strip() != "application/json":
            reply = graph_error(400, 100, None, "Content-Type must be application/json")
        elif (why := check_shape(doc)) is not None:
            reply = graph_error(400, 100, None, why)
            entry["shapeError"] = why
        else:
            reply, sleep, raw = answer(state, doc["to"])
        entry["status"] = reply[0]
        if reply[0] == 200:
            entry["messageId"] = reply[1]["messages"][0]["id"]
        elif reply[1] is not None:
            entry["errorCode"] = reply[1]["error"]["code"]
        # Recorded before answering, so a test that has its answer finds the entry.
        state.record(entry)
        if sleep:
            time.sleep(sleep)
        self.send(reply, raw)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True, help="where to write the port, once listening")
    parser.add_argument("--log", required=True, help="JSON lines, one per request")
    parser.add_argument("--token", required=True, help="the bearer token to accept")
    parser.add_argument("--phone-number-id", default="106540352242922")
    parser.add_argument("--control", help="JSON: E.164 number -> answers in turn")
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True  # a sleeping answer must not hold up the exit
    server.state = State(args)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    # Written whole, then renamed: the test never reads half a port.
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{server.server_address[1]}\n")
    os.rename(tmp, args.port_file)

    stop.wait(args.max_seconds)
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
