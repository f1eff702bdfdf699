#!/usr/bin/python3
"""A stand-in for Amazon SES API v2 SendEmail, for twofactor's tests.

It checks each request's SigV4 signature independently of our signer, by
recomputing it with botocore (Debian's python3-botocore, hence /usr/bin/python3),
checks the JSON's shape, and answers according to the recipient's local part:

  throttle-N@...   429 TooManyRequestsException N times (per address), then 200
  fail500-N@...    500 InternalFailure N times (per address), then 200
  retryafter@...   429 TooManyRequestsException with Retry-After: 2
  reject@...       400 MessageRejected (naming the address, as SES does)
  suspended@...    400 AccountSuspendedException
  paused@...       400 SendingPausedException (code only in the body's "__type")
  limit@...        400 LimitExceededException (SES v2 sends throttling like this)
  slow@..., slow+TAG@...  sleeps --slow-seconds before answering 200
  anything else    200 {"MessageId": "<uuid>"}

While the file given by --down-file exists, every SendEmail is answered 503
ServiceUnavailable instead (an outage a test can start and end).

Every request is appended to --log as one JSON line (headers, parsed body,
region and service from the signature, the status answered). It exits by
itself after --max-seconds, and on SIGTERM.

Exit status 3: botocore is missing (apt-get install python3-botocore).
"""

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError as e:  # pragma: no cover - depends on the host
    print(f"ses_server.py: botocore is missing ({e}); apt-get install python3-botocore", file=sys.stderr)
    sys.exit(3)

SEND_EMAIL_PATH = "/v2/email/outbound-emails"
AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)
TOP_LEVEL_KEYS = {
    "FromEmailAddress", "FromEmailAddressIdentityArn", "Destination", "ReplyToAddresses",
    "FeedbackForwardingEmailAddress", "FeedbackForwardingEmailAddressIdentityArn", "Content",
    "EmailTags", "ConfigurationSetName", "ListManagementOptions",
}
TAG_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class State:
    def __init__(self, credentials, log_path, slow_seconds, down_file=None):
        self.credentials = credentials  # access key id -> (secret, token or None)
        self.down_file = down_file
        self.log_path = log_path
        self.slow_seconds = slow_seconds
        self.lock = threading.Lock()
        self.counts = {}  # address -> requests seen

    def seen(self, address):
        with self.lock:
            self.counts[address] = self.counts.get(address, 0) + 1
            return self.counts[address]

    def record(self, entry):
        line = json.dumps(entry, sort_keys=True)
        with self.lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def check_signature(state, method, path, headers, body):
    """None when the signature is right, else why not."""
    auth = headers.get("authorization", "")
    m = AUTH_RE.match(auth)
    if not m:
        return "malformed Authorization header", None
    scope = {k: m.group(k) for k in ("akid", "date", "region", "service")}
    if scope["service"] != "ses":
        return f"credential scope names service '{scope['service']}', SES signs as 'ses'", scope
    if m.group("akid") not in state.credentials:
        return "unknown access key id", scope
    secret, token = state.credentials[m.group("akid")]
    amz_date = headers.get("x-amz-date", "")
    if not re.fullmatch(r"\d{8}T\d{6}Z", amz_date) or amz_date[:8] != scope["date"]:
        return "missing or inconsistent X-Amz-Date", scope
    signed = m.group("signed").split(";")
    required = {"host", "x-amz-date", "content-type"} | ({"x-amz-security-token"} if token else set())
    if not required.issubset(signed):
        return f"SignedHeaders must include {sorted(required)}", scope
    if any(h not in headers for h in signed):
        return "a signed header is missing from the request", scope
    # Rebuild the request from what the client said it signed; botocore adds
    # X-Amz-Date and the session token itself, as it would when signing.
    rebuilt = {h: headers[h] for h in signed if h not in ("x-amz-date", "x-amz-security-token")}
    request = AWSRequest(method=method, url=f"http://{headers['host']}{path}", headers=rebuilt, data=body)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(m.group("akid"), secret, token), "ses", scope["region"])
    signer._modify_request_before_signing(request)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    signer._inject_signature_to_request(request, signer.signature(string_to_sign, request))
    if request.headers["Authorization"] != auth:
        return "The request signature we calculated does not match the signature you provided.", scope
    if token and headers.get("x-amz-security-token") != token:
        return "The security token included in the request is invalid.", scope
    return None, scope


def check_shape(doc):
    """None when the SendEmail body is well-formed (for what we send), else why not."""
    if not isinstance(doc, dict):
        return "body is not a JSON object"
    unknown = set(doc) - TOP_LEVEL_KEYS
    if unknown:
        return f"unknown top-level keys {sorted(unknown)}"
    if not isinstance(doc.get("FromEmailAddress"), str) or not doc["FromEmailAddress"]:
        return "FromEmailAddress is required"
    to = doc.get("Destination", {}).get("ToAddresses")
    if not isinstance(to, list) or len(to) != 1 or not isinstance(to[0], str):
        return "Destination.ToAddresses must hold one address"
    simple = doc.get("Content", {}).get("Simple")
    if not isinstance(simple, dict) or set(simple) - {"Subject", "Body", "Headers"}:
        return "Content.Simple is required (Subject, Body)"
    parts = [simple.get("Subject")]
    body = simple.get("Body")
    if not isinstance(body, dict) or not body or set(body) - {"Text", "Html"}:
        return "Content.Simple.Body must have Text and/or Html"
    parts += list(body.values())
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("Data"), str):
            return "every content part needs Data"
        if part.get("Charset") != "UTF-8":
            return "every content part must say Charset UTF-8"
    for tag in doc.get("EmailTags", []):
        if not isinstance(tag, dict) or set(tag) != {"Name", "Value"}:
            return "EmailTags entries are {Name, Value}"
        if not TAG_RE.match(str(tag["Name"])) or not TAG_RE.match(str(tag["Value"])):
            return "EmailTags must match [A-Za-z0-9_-]{1,256}"
    if "ReplyToAddresses" in doc and not isinstance(doc["ReplyToAddresses"], list):
        return "ReplyToAddresses must be a list"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ses-mock"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # the JSON log is the record; stderr stays quiet

    def send(self, reply):
        status, doc, headers = reply
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send(error(404, "NotFoundException", "only POST " + SEND_EMAIL_PATH))

    def do_POST(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = {"method": "POST", "path": self.path, "headers": headers, "time": time.time()}
        try:
            doc = json.loads(body.decode("utf-8"))
        except ValueError:
            doc = None
        entry["json"] = doc
        bad_sig, scope = check_signature(state, "POST", self.path, headers, body)
        entry["scope"] = scope
        slow = False
        if self.path != SEND_EMAIL_PATH:
            reply = error(404, "NotFoundException", "no such path")
        elif bad_sig:
            reply = error(403, "SignatureDoesNotMatch", bad_sig, where="both")
        elif headers.get("content-type") != "application/json":
            reply = error(400, "BadRequestException", "Content-Type must be application/json")
        elif (shape := check_shape(doc)) is not None:
            reply = error(400, "BadRequestException", shape)
        elif state.down_file and os.path.exists(state.down_file):
            reply = error(503, "ServiceUnavailable", "Service is unavailable, try again later")
        else:
            address = doc["Destination"]["ToAddresses"][0]
            slow = address.split("@", 1)[0].lower().split("+", 1)[0] == "slow"
            reply = behave(state, address)
        entry["status"] = reply[0]
        if reply[0] == 200:
            entry["messageId"] = reply[1]["MessageId"]
        # Recorded before answering, so a test that has its answer finds the entry.
        state.record(entry)
        if slow:
            time.sleep(state.slow_seconds)
        self.send(reply)


def error(status, code, message, headers=(), where="header"):
    """An error as SES v2 sends it: the code in x-amzn-ErrorType, the text in the body.
    where="body" puts it only in a namespaced "__type" (as other AWS front ends do);
    where="both" in both places."""
    doc = {"message": message}
    if where in ("body", "both"):
        doc["__type"] = code if where == "both" else f"com.amazonaws.sesv2#{code}"
    if where in ("header", "both"):
        headers = [("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazonaws.sesv2/")] + list(headers)
    return (status, doc, list(headers))


def behave(state, address):
    local = address.split("@", 1)[0].lower()
    n = state.seen(address.lower())
    counted = re.fullmatch(r"(throttle|fail500)-(\d+)", local)
    if counted and n <= int(counted.group(2)):
        if counted.group(1) == "throttle":
            return error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
        return error(500, "InternalFailure", "The request processing has failed.")
    if local == "retryafter":
        return error(429, "TooManyRequestsException", "Maximum sending rate exceeded.", [("Retry-After", "2")])
    if local == "reject":
        return error(400, "MessageRejected",
                     "Email address is not verified. The following identities failed the check "
                     f"in region EU-WEST-1: {address}")
    if local == "suspended":
        return error(400, "AccountSuspendedException", "Your account has been suspended.")
    if local == "paused":
        return error(400, "SendingPausedException", "Sending is paused for this account.", where="body")
    if local == "limit":
        return error(400, "LimitExceededException", "Daily message quota exceeded.")
    return (200, {"MessageId": str(uuid.uuid4())}, [])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True, help="where to write the port, once listening")
    parser.add_argument("--log", required=True, help="JSON lines, one per request")
    parser.add_argument("--credentials", required=True,
                        help='a JSON file: [{"accessKeyId":..., "secretAccessKey":..., "sessionToken":...}]')
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--slow-seconds", type=float, default=3)
    parser.add_argument("--down-file", help="while this file exists, answer 503 to every send")
    args = parser.parse_args()

    with open(args.credentials, encoding="utf-8") as f:
        credentials = {c["accessKeyId"]: (c["secretAccessKey"], c.get("sessionToken") or None) for c in json.load(f)}

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True  # a slow@ answer must not hold up the exit
    server.state = State(credentials, args.log, args.slow_seconds, args.down_file)

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
