"""The container image, built offline and run from its own root filesystem.

scripts/build-image.sh builds the image twice from the release binary (the two archives must be
byte-identical); skopeo reads its configuration, umoci unpacks it, and bubblewrap runs the
sidecar from the unpacked root filesystem, read-only, as uid 65532, the way a kubelet would (the
sidecar is pid 1 of its own pid namespace). HTTPS peers on 127.0.0.1, a Pure1 and a PX-Backup
REST gateway, check that the binary's rustls finds the image's CA bundle and takes the extra CA
given with --telemetry-ca-file and --pxb-ca-file.
Nothing here talks to anything but 127.0.0.1.

Run with tests/image/run.sh (needs root, buildah, skopeo, umoci, bwrap, openssl).
"""

import gzip
import hashlib
import io
import http.server
import json
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

# tests/ports.py is shared with tests/assets.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ports import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("PXBACKUP_SIDECAR_BIN", ROOT / "target/release/pxbackup-sidecar"))
BUILD = ROOT / "scripts/build-image.sh"
ARCHIVE = ROOT / "target/pxbackup-sidecar-image.tar"
ENTRYPOINT = "/usr/local/bin/pxbackup-sidecar"
UID = 65532
SIZE_LIMIT = 25_000_000  # compressed, bytes
VERSION = re.search(
    r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M | re.S
).group(1)
NAME = f"docker.io/portworx/pxbackup-sidecar:{VERSION}"
# What the build puts in the image besides the shared libraries (derived from ldd below).
FIXED_ENTRIES = {
    "/dev",
    "/etc",
    "/etc/group",
    "/etc/passwd",
    "/etc/ssl",
    "/etc/ssl/certs",
    "/etc/ssl/certs/ca-certificates.crt",
    "/proc",
    "/tmp",
    "/usr",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/bin/pxbackup-sidecar",
}


def run(cmd, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        )
    return p


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ldd_libraries(binary):
    """The shared libraries the binary loads, as ldd resolves them (the vDSO excluded)."""
    out = run(["ldd", str(binary)]).stdout
    libs = set()
    for line in out.splitlines():
        m = re.match(r"\s*\S+ => (/\S+) \(0x[0-9a-f]+\)$", line) or re.match(
            r"\s*(/\S+) \(0x[0-9a-f]+\)$", line
        )
        if m:
            libs.add(m.group(1))
    return libs


def with_parents(paths):
    out = set()
    for p in paths:
        parts = Path(p).parts
        for i in range(2, len(parts) + 1):
            out.add("/" + "/".join(parts[1:i]))
    return out


def http_get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


def wait_for(what, cond, timeout, proc=None, context=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"the sidecar exited ({proc.returncode}) while waiting for {what}\n{context()}"
            )
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{context()}")


class Image:
    """What the module's setup built and unpacked, shared by the tests."""

    work: Path
    first_sha = ""
    second_sha = ""
    layout: Path
    rootfs: Path
    index: dict
    manifest: dict
    config: dict
    layer: bytes
    epoch = 0


def setUpModule():
    if not BIN.is_file():
        raise RuntimeError(
            f"no release binary at {BIN}: cargo build --release --locked --bin pxbackup-sidecar"
        )
    Image.work = Path(tempfile.mkdtemp(prefix="pxbackup-image-test-", dir="/tmp"))
    Image.work.chmod(0o755)  # uid 65532 reaches the root filesystem and the mounted files
    run(["bash", str(BUILD), "--binary", str(BIN)])
    Image.first_sha = sha256(ARCHIVE)
    shutil.copy(ARCHIVE, Image.work / "first.tar")
    run(["bash", str(BUILD), "--binary", str(BIN)])
    Image.second_sha = sha256(ARCHIVE)
    Image.epoch = int(
        os.environ.get("SOURCE_DATE_EPOCH")
        or run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"]).stdout
    )

    with tarfile.open(ARCHIVE) as t:
        def blob(digest):
            return t.extractfile("blobs/sha256/" + digest.split(":", 1)[1]).read()

        Image.index = json.loads(t.extractfile("index.json").read())
        Image.manifest = json.loads(blob(Image.index["manifests"][0]["digest"]))
        Image.config = json.loads(blob(Image.manifest["config"]["digest"]))
        assert len(Image.manifest["layers"]) == 1, Image.manifest
        Image.layer = blob(Image.manifest["layers"][0]["digest"])

    # skopeo copies the archive into an OCI layout, umoci unpacks that into a runtime bundle.
    Image.layout = Image.work / "layout"
    run(["skopeo", "copy", "--quiet", f"oci-archive:{ARCHIVE}", f"oci:{Image.layout}:test"])
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    run(["umoci", "unpack", *rootless, "--image", f"{Image.layout}:test", str(Image.work / "bundle")])
    Image.rootfs = Image.work / "bundle/rootfs"
    (Image.work / "bundle").chmod(0o755)


def tearDownModule():
    if getattr(Image, "work", None):
        shutil.rmtree(Image.work, ignore_errors=True)


class Sandbox:
    """The sidecar run from the image's root filesystem by bubblewrap: root read-only, fresh /proc,
    minimal /dev, a tmpfs /tmp (the chart's emptyDir), host network (127.0.0.1), uid/gid 65532,
    the entrypoint as pid 1, an empty environment but HOSTNAME. `binds` mounts host paths under
    /tmp, read-only. Bubblewrap itself runs as uid 65532 when the tests run as root."""

    def __init__(self, args, binds=(), rw_binds=()):
        self.stderr_path = Image.work / f"sidecar-{time.monotonic_ns()}.log"
        cmd = []
        if os.geteuid() == 0:
            cmd += ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--"]
        cmd += [
            "bwrap",
            "--ro-bind", str(Image.rootfs), "/",
            "--proc", "/proc",
            "--dev", "/dev",
            "--tmpfs", "/tmp",
            "--unshare-user", "--uid", str(UID), "--gid", str(UID),
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--as-pid-1",
            "--die-with-parent", "--new-session",
            "--clearenv", "--setenv", "HOSTNAME", "image-test",
        ]
        for src, dst in binds:
            cmd += ["--ro-bind", str(src), dst]
        for src, dst in rw_binds:
            cmd += ["--bind", str(src), dst]
        info_r, info_w = os.pipe()
        cmd += ["--info-fd", str(info_w), ENTRYPOINT, *args]
        self.stderr = open(self.stderr_path, "w+")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr, pass_fds=(info_w,)
        )
        os.close(info_w)
        with os.fdopen(info_r) as f:
            info = f.read()
        if not info:
            self.proc.wait(10)
            raise AssertionError(f"bwrap did not start the sidecar: {self.log()}")
        self.pid = json.loads(info)["child-pid"]

    def log(self):
        return self.stderr_path.read_text()

    def stop(self, timeout=20):
        """SIGTERM to the sidecar (pid 1 in the sandbox); returns its exit code."""
        os.kill(self.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"no exit {timeout}s after SIGTERM:\n{self.log()}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


class TestArchive(unittest.TestCase):
    def test_two_builds_of_one_commit_are_byte_identical(self):
        self.assertEqual(Image.first_sha, Image.second_sha)

    def test_index_names_the_image_for_podman_and_containerd(self):
        (desc,) = Image.index["manifests"]
        self.assertEqual(desc["annotations"]["org.opencontainers.image.ref.name"], NAME)
        self.assertEqual(desc["annotations"]["io.containerd.image.name"], NAME)
        digest_file = Path(str(ARCHIVE) + ".digest").read_text().strip()
        self.assertEqual(desc["digest"], digest_file)

    def test_archive_entries_are_fixed(self):
        with tarfile.open(ARCHIVE) as t:
            members = t.getmembers()
        for m in members:
            self.assertEqual((m.uid, m.gid, m.mtime), (0, 0, Image.epoch), m.name)
        self.assertEqual(
            [m.name for m in members][:2], ["oci-layout", "index.json"], "layout files come first"
        )

    def test_compressed_size_is_under_25_mb(self):
        layers = sum(layer["size"] for layer in Image.manifest["layers"])
        self.assertLess(layers, SIZE_LIMIT)
        self.assertLess(ARCHIVE.stat().st_size, SIZE_LIMIT)

    def test_skopeo_reads_user_entrypoint_cmd_port_labels_and_no_secrets(self):
        raw = json.loads(run(["skopeo", "inspect", "--config", f"oci-archive:{ARCHIVE}"]).stdout)
        self.assertEqual(raw["os"], "linux")
        self.assertEqual(raw["architecture"], "amd64" if os.uname().machine == "x86_64" else "arm64")
        cfg = raw["config"]
        self.assertEqual(cfg["User"], f"{UID}:{UID}")
        self.assertEqual(cfg["Entrypoint"], [ENTRYPOINT])
        self.assertEqual(cfg["Cmd"], ["run"])
        self.assertEqual(cfg["ExposedPorts"], {"9977/tcp": {}})
        labels = cfg["Labels"]
        head = run(["git", "-C", str(ROOT), "rev-parse", "HEAD"]).stdout.strip()
        self.assertEqual(labels["org.opencontainers.image.version"], VERSION)
        self.assertIn(labels["org.opencontainers.image.revision"], (head, head + "-dirty"))
        self.assertEqual(labels["org.opencontainers.image.licenses"], "Apache-2.0")
        self.assertTrue(labels["org.opencontainers.image.source"].startswith("https://"))
        # Only PATH: nothing secret-looking, no build argument leaked into the environment.
        env = dict(e.split("=", 1) for e in cfg.get("Env", []))
        self.assertLessEqual(set(env), {"PATH"}, env)
        for key, value in list(env.items()) + list(labels.items()):
            self.assertNotRegex(
                key + "=" + value, r"(?i)secret|token|passw|api_key|private|credential"
            )
        # Fixed creation time, the commit's.
        summary = json.loads(run(["skopeo", "inspect", f"oci-archive:{ARCHIVE}"]).stdout)
        self.assertEqual(summary["Created"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(Image.epoch)))

    def test_podman_loads_it_under_its_name(self):
        store = Image.work / "podman"
        p = ["podman", "--root", str(store / "root"), "--runroot", str(store / "run"), "--storage-driver", "vfs"]
        try:
            out = run([*p, "load", "--input", str(ARCHIVE)]).stdout
            self.assertIn(f"Loaded image: {NAME}", out)
            digest = run([*p, "image", "inspect", "--format", "{{.Digest}}", NAME]).stdout.strip()
            self.assertEqual(digest, Image.index["manifests"][0]["digest"])
        finally:
            run([*p, "rmi", "--all", "--force"], check=False)
            shutil.rmtree(store, ignore_errors=True)

    def test_containerd_imports_it_as_kind_load_does(self):
        # `kind load image-archive` pipes the archive into this command on each node.
        d = Image.work / "containerd"
        d.mkdir()
        sock = d / "containerd.sock"
        disabled = ", ".join(
            f'"io.containerd.{p}"'
            for p in ("grpc.v1.cri", "snapshotter.v1.overlayfs", "snapshotter.v1.btrfs",
                      "snapshotter.v1.zfs", "snapshotter.v1.devmapper", "snapshotter.v1.aufs")
        )
        (d / "config.toml").write_text(
            f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\ndisabled_plugins = [{disabled}]\n'
            f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{d}/ttrpc.sock"\n'
        )
        with open(d / "containerd.log", "w") as log:
            daemon = subprocess.Popen(["containerd", "--config", str(d / "config.toml")], stdout=log, stderr=log)
        try:
            ctr = ["ctr", "--address", str(sock), "--namespace", "k8s.io"]
            wait_for("containerd", lambda: run([*ctr, "version"], check=False).returncode == 0, 20, daemon,
                     lambda: (d / "containerd.log").read_text())
            with open(ARCHIVE, "rb") as f:
                run([*ctr, "images", "import", "--all-platforms", "--digests", "--snapshotter=native", "-"], stdin=f)
            refs = run([*ctr, "images", "ls", "--quiet"]).stdout.split()
            self.assertIn(NAME, refs)
        finally:
            daemon.terminate()
            daemon.wait(20)
            shutil.rmtree(d, ignore_errors=True)


class TestFiles(unittest.TestCase):
    def expected(self):
        return FIXED_ENTRIES | with_parents(ldd_libraries(BIN))

    def test_every_file_in_the_layer_is_one_the_build_put_there(self):
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(Image.layer))) as t:
            members = t.getmembers()
        names = {"/" + m.name.strip("./").rstrip("/") for m in members if m.name.strip("./")}
        self.assertEqual(names, self.expected())
        for m in members:
            self.assertEqual((m.uid, m.gid), (0, 0), m.name)
            self.assertEqual(m.mtime, Image.epoch, m.name)
            self.assertFalse(m.mode & (stat.S_ISUID | stat.S_ISGID), m.name)
            self.assertTrue(m.isfile() or m.isdir(), f"{m.name}: only files and directories")
            want = {"tmp": 0o1777}.get(m.name.strip("./").rstrip("/"))
            if want is None:
                want = 0o755 if m.isdir() or "/lib" in "/" + m.name or m.name.endswith("pxbackup-sidecar") else 0o644
            self.assertEqual(m.mode & 0o7777, want, m.name)

    def test_unpacked_root_filesystem_matches_and_holds_the_right_bytes(self):
        found = {"/" + str(p.relative_to(Image.rootfs)) for p in Image.rootfs.rglob("*")}
        self.assertEqual(found, self.expected())
        for lib in ldd_libraries(BIN):
            self.assertEqual(sha256(Image.rootfs / lib.lstrip("/")), sha256(os.path.realpath(lib)), lib)
        self.assertEqual(
            sha256(Image.rootfs / "etc/ssl/certs/ca-certificates.crt"),
            sha256("/etc/ssl/certs/ca-certificates.crt"),
        )
        binary = Image.rootfs / ENTRYPOINT.lstrip("/")
        sections = run(["readelf", "-S", "-W", str(binary)]).stdout
        self.assertNotIn(".symtab", sections, "the binary is stripped")
        self.assertNotIn(".debug_line", sections, "the binary is stripped")
        self.assertLess(binary.stat().st_size, BIN.stat().st_size)
        passwd = (Image.rootfs / "etc/passwd").read_text().splitlines()
        self.assertIn(f"nonroot:x:{UID}:{UID}:", "\n".join(passwd))
        self.assertEqual((Image.rootfs / "etc/group").read_text(), f"nonroot:x:{UID}:\n")
        for d in ("tmp", "proc", "dev"):
            self.assertEqual(list((Image.rootfs / d).iterdir()), [], d)


class TestRun(unittest.TestCase):
    def test_demo_read_only_as_65532_serves_metrics_and_stops_on_sigterm(self):
        port = free_port()
        state = Image.work / "state"
        state.mkdir()
        if os.geteuid() == 0:
            os.chown(state, UID, UID)
        sb = Sandbox(
            ["run", "--source", "demo", "--listen", f"127.0.0.1:{port}", "--state-dir", "/tmp/state"],
            rw_binds=[(state, "/tmp/state")],
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for("/readyz 200", lambda: http_get(base + "/readyz")[0] == 200, 30, sb.proc, sb.log)
            status, body = http_get(base + "/metrics")
            self.assertEqual(status, 200)
            self.assertIn(f'pxbackup_sidecar_build_info{{version="{VERSION}"}} 1', body)
            self.assertIn('pxbackup_sidecar_source_up{source="demo"} 1', body)
            self.assertIn("pxbackup_backup_object_info{", body)
            # Pid 1 of the sandbox, uid and gid 65532 from outside too.
            status_lines = Path(f"/proc/{sb.pid}/status").read_text()
            if os.geteuid() == 0:
                self.assertRegex(status_lines, rf"(?m)^Uid:\s+{UID}\s+{UID}\s+{UID}\s+{UID}$")
                self.assertRegex(status_lines, rf"(?m)^Gid:\s+{UID}\s+{UID}\s+{UID}\s+{UID}$")
            self.assertRegex(status_lines, r"(?m)^NSpid:\s+\d+\s+1$")
            # Its root is the image's root filesystem, mounted read-only.
            root_mount = [m.split() for m in Path(f"/proc/{sb.pid}/mountinfo").read_text().splitlines()
                          if m.split()[4] == "/"]
            self.assertEqual(len(root_mount), 1, root_mount)
            self.assertIn("ro", root_mount[0][5].split(","), root_mount)
            self.assertEqual(sb.stop(), 0, sb.log())
            journal = state / "tombstones.journal"
            self.assertTrue(journal.is_file(), sb.log())
            if os.geteuid() == 0:
                self.assertEqual((journal.stat().st_uid, journal.stat().st_gid), (UID, UID))
            self.assertNotIn(" ERROR ", sb.log())
        finally:
            sb.close()


def peer_certificate(dir):
    """A test CA and a server certificate it signs for IP 127.0.0.1 (openssl CLI), in `dir`.
    Returns (CA certificate, CA key, server certificate, server key). EC P-256, X.509 v3 with
    the extensions webpki insists on: rustls refuses v1 certificates and CAs without them."""
    ca_key, ca, key, crt = (dir / n for n in ("ca.key", "ca.crt", "peer.key", "peer.crt"))
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=pxbackup image test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", dir / "peer.csr", "-subj", "/CN=127.0.0.1"])
    (dir / "peer.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n"
    )
    run(["openssl", "x509", "-req", "-in", dir / "peer.csr", "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-days", "2", "-extfile", dir / "peer.ext", "-out", crt])
    ca.chmod(0o644)  # mounted into the sandbox, read by uid 65532
    return ca, ca_key, crt, key


class Peer:
    """A Pure1 stand-in: HTTPS on 127.0.0.1 with a test CA (openssl CLI). Answers the ping,
    signs the registration CSR with the test CA, accepts uploads and notes whether they came
    with a client certificate the test CA issued."""

    def __init__(self, dir):
        self.dir = dir
        self.requests = []
        self.lock = threading.Lock()
        dir.mkdir(mode=0o755)
        self.ca, ca_key, crt, key = peer_certificate(dir)
        (dir / "client.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=clientAuth\n"
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(self.ca)
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, code, body=b"{}"):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                peer.note(self, b"")
                self.answer(200 if self.path == "/auth/1.0/ping" else 404)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                peer.note(self, body)
                if self.path == "/auth/1.0/register":
                    self.answer(200, json.dumps({"certificate": peer.sign(json.loads(body)["csr"])}).encode())
                elif self.path.startswith("/telemetry/1.0/"):
                    self.answer(200)
                else:
                    self.answer(404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.ca_key = ca_key
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def note(self, handler, body):
        with self.lock:
            self.requests.append(
                {
                    "method": handler.command,
                    "path": handler.path,
                    "appliance-id": handler.headers.get("appliance-id"),
                    "client_cert": bool(handler.connection.getpeercert()),
                }
            )

    def sign(self, csr_pem):
        with self.lock:
            n = len(self.requests)
        csr = self.dir / f"client-{n}.csr"
        csr.write_text(csr_pem)
        out = self.dir / f"client-{n}.crt"
        # An X.509 v3 certificate, as Pure1 issues: rustls (webpki) refuses v1 ones.
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
             "-CAcreateserial", "-days", "365", "-extfile", self.dir / "client.ext", "-out", out])
        return out.read_text()

    def seen(self):
        with self.lock:
            return [(r["method"], r["path"], r["client_cert"]) for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class PxBackupGateway:
    """A PX-Backup stand-in: its REST gateway (grpc-gateway v1) over HTTPS on 127.0.0.1, with a
    certificate from a test CA (openssl CLI). One organization, `default`, holding one
    successful backup and no restores, schedules, schedule policies, clusters or backup
    locations. It pages as PX-Backup does (`enumerate_options.max_objects` / `object_index`;
    `total_count` as a string and `complete: true` on the last page, both left out when zero as
    grpc-gateway's marshaler leaves zero values out; schedule policies in one answer), answers
    401 to a call without the bearer token, and records every request."""

    ORG = "default"
    TOKEN = "image-test-pxb-token"
    BACKUP_UID = "5b1c6a8e-0d2f-4e7a-9c3b-1f2e3d4c5b6a"
    BACKUP = {
        "metadata": {"name": "nightly-shop", "uid": BACKUP_UID, "org_id": ORG,
                     "create_time": "2026-11-23T01:00:00Z"},
        "backup_info": {"cluster": "prod-east", "namespaces": ["shop"],
                        "status": {"status": "Success", "reason": ""},
                        "total_size": "1073741824", "resource_count": "42",
                        "completion_time_info": {"total_completion_time": "2026-11-23T01:04:10Z"}},
    }
    # The enumerations of one organization and the key of each answer's list.
    LIST_KEYS = {
        "cluster": "clusters",
        "backuplocation": "backup_locations",
        "schedulepolicy": "schedule_policies",
        "backupschedule": "backup_schedules",
        "backup": "backups",
        "restore": "restores",
    }

    def __init__(self, dir):
        self.requests = []
        self.lock = threading.Lock()
        dir.mkdir(mode=0o755)
        self.ca, _, crt, key = peer_certificate(dir)
        self.token_file = dir / "token"
        self.token_file.write_text(self.TOKEN + "\n")  # a Secret's file, newline and all
        self.token_file.chmod(0o644)
        objects = {"backup": [self.BACKUP]}
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        gateway = self

        def page(kind, query):
            listed = objects.get(kind, [])
            body = {self.LIST_KEYS[kind]: listed}
            if kind == "schedulepolicy":
                return body
            start = int(query.get("enumerate_options.object_index", 0))
            count = int(query.get("enumerate_options.max_objects", 0)) or len(listed)
            body[self.LIST_KEYS[kind]] = listed[start:start + count]
            if listed:
                body["total_count"] = str(len(listed))
            if start + count >= len(listed):
                body["complete"] = True
            return body

        def gateway_error(code, message):
            return {"error": message, "code": code, "message": message, "details": []}

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, code, doc):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                authorization = self.headers.get("Authorization")
                gateway.note(url.path, query, authorization)
                parts = url.path.split("/")  # "", "v1", kind, org
                if authorization != f"Bearer {gateway.TOKEN}":
                    self.answer(401, gateway_error(16, "access denied: invalid or expired token"))
                elif url.path == "/v1/organization":
                    self.answer(200, {"organizations": [{"metadata": {"name": gateway.ORG, "uid": "org-uid"}}]})
                elif len(parts) == 4 and parts[1] == "v1" and parts[2] in gateway.LIST_KEYS:
                    if parts[3] == gateway.ORG:
                        self.answer(200, page(parts[2], query))
                    else:
                        self.answer(404, gateway_error(5, f"organization {parts[3]} not found"))
                else:
                    self.answer(404, gateway_error(5, "Not Found"))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def note(self, path, query, authorization):
        with self.lock:
            self.requests.append({"path": path, "query": query, "authorization": authorization})

    def recorded(self):
        """The requests so far (the sidecar goes on polling while the test reads them)."""
        with self.lock:
            return list(self.requests)

    def seen(self):
        return [r["path"] for r in self.recorded()]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TestTls(unittest.TestCase):
    APPLIANCE = "image-test-appliance"

    def start(self, name, with_ca):
        peer = Peer(Image.work / f"peer-{name}")
        self.addCleanup(peer.close)
        conf = Image.work / f"telemetry-{name}"
        conf.mkdir(mode=0o755)
        for key, value in {"enabled": "true", "appliance-id": self.APPLIANCE, "health-interval": "1s"}.items():
            (conf / key).write_text(value)
            (conf / key).chmod(0o644)
        port = free_port()
        args = [
            "run", "--source", "demo", "--listen", f"127.0.0.1:{port}",
            "--telemetry-config-file", "/tmp/telemetry",
            "--telemetry-endpoint", f"https://127.0.0.1:{peer.port}",
            # rustls-platform-verifier says how many roots it loaded from the system (the image).
            "--log-level", "info,rustls_platform_verifier=debug",
        ]
        binds = [(conf, "/tmp/telemetry")]
        if with_ca:
            args += ["--telemetry-ca-file", "/tmp/peer-ca.pem"]
            binds.append((peer.ca, "/tmp/peer-ca.pem"))
        sb = Sandbox(args, binds=binds)
        self.addCleanup(sb.close)
        return peer, sb, port

    def system_roots(self, sb):
        counts = [int(n) for n in re.findall(r"Loaded (\d+) CA root certificates from the system", sb.log())]
        self.assertTrue(counts, f"no root count in the log:\n{sb.log()}")
        return min(counts)

    def test_https_peer_with_the_extra_ca_registers_and_uploads_over_mtls(self):
        peer, sb, port = self.start("trusted", with_ca=True)
        wait_for(
            "ping, registration and an mTLS upload at the peer",
            lambda: ("POST", "/telemetry/1.0/health", True) in peer.seen(),
            45,
            sb.proc,
            lambda: f"peer saw {peer.seen()}\n{sb.log()}",
        )
        seen = peer.seen()
        self.assertEqual(seen[0], ("GET", "/auth/1.0/ping", False), seen)
        self.assertIn(("POST", "/auth/1.0/register", False), seen)
        self.assertTrue(all(r["appliance-id"] == self.APPLIANCE for r in peer.requests))
        # The image's CA bundle was read too: Debian's bundle has well over 100 roots.
        self.assertGreater(self.system_roots(sb), 100)
        _, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        self.assertIn("pxbackup_telemetry_registered 1", metrics)
        self.assertNotIn(" ERROR ", sb.log())
        self.assertEqual(sb.stop(), 0, sb.log())

    def test_without_the_extra_ca_the_peer_is_refused(self):
        # The control: the image's roots alone do not trust the test CA, so certificates are
        # really verified and the success above is the extra CA's doing.
        peer, sb, _ = self.start("untrusted", with_ca=False)
        wait_for(
            "an UnknownIssuer refusal and a failed registration in the log",
            lambda: "invalid peer certificate: UnknownIssuer" in sb.log()
            and "Pure1 registration failed error=ping" in sb.log(),
            30,
            sb.proc,
            lambda: f"peer saw {peer.seen()}\n{sb.log()}",
        )
        self.assertEqual(peer.seen(), [], "no request may get through an untrusted handshake")
        self.assertGreater(self.system_roots(sb), 100)
        self.assertEqual(sb.stop(), 0, sb.log())

    def start_pxb(self, name, with_ca):
        gateway = PxBackupGateway(Image.work / f"pxb-{name}")
        self.addCleanup(gateway.close)
        port = free_port()
        args = [
            "run", "--source", "pxb", "--listen", f"127.0.0.1:{port}",
            "--pxb-url", f"https://127.0.0.1:{gateway.port}",
            "--pxb-token-file", "/tmp/pxb-token",
            "--pxb-poll-interval", "1s",
            "--log-level", "info,rustls_platform_verifier=debug",
        ]
        binds = [(gateway.token_file, "/tmp/pxb-token")]
        if with_ca:
            args += ["--pxb-ca-file", "/tmp/pxb-ca.pem"]
            binds.append((gateway.ca, "/tmp/pxb-ca.pem"))
        sb = Sandbox(args, binds=binds)
        self.addCleanup(sb.close)
        return gateway, sb, f"http://127.0.0.1:{port}"

    def test_https_px_backup_with_the_extra_ca_is_polled_and_its_backup_exported(self):
        gateway, sb, base = self.start_pxb("trusted", with_ca=True)
        # Ready only after a first complete poll of every organization.
        wait_for("/readyz 200", lambda: http_get(base + "/readyz")[0] == 200, 45, sb.proc,
                 lambda: f"PX-Backup saw {gateway.seen()}\n{sb.log()}")
        _, metrics = http_get(base + "/metrics")
        status = [line for line in metrics.splitlines()
                  if line.startswith("pxbackup_backup_status{")
                  and f'uid="{PxBackupGateway.BACKUP_UID}"' in line]
        self.assertEqual(len(status), 1, metrics)
        self.assertIn('org_id="default"', status[0])
        self.assertIn('name="nightly-shop"', status[0])
        self.assertTrue(status[0].endswith(" 6"), f"Success is 6: {status[0]}")
        self.assertIn('pxbackup_sidecar_source_up{source="pxb"} 1', metrics)
        # A whole poll went over the verified connection: the organizations, then each
        # enumeration of the one organization, every call with the token from the file.
        recorded = gateway.recorded()
        seen = [r["path"] for r in recorded]
        self.assertEqual(seen[0], "/v1/organization", seen)
        for kind in PxBackupGateway.LIST_KEYS:
            self.assertIn(f"/v1/{kind}/default", seen)
        backup_pages = [r["query"] for r in recorded if r["path"] == "/v1/backup/default"]
        self.assertEqual(backup_pages[0].get("enumerate_options.include_detailed_resources"), "true")
        self.assertEqual(backup_pages[0].get("enumerate_options.object_index"), "0")
        self.assertEqual({r["authorization"] for r in recorded}, {f"Bearer {PxBackupGateway.TOKEN}"})
        self.assertNotIn(PxBackupGateway.TOKEN, sb.log(), "the token is never logged")
        # The image's CA bundle was read too, the extra CA added to it, not in its place.
        self.assertGreater(self.system_roots(sb), 100)
        self.assertNotIn(" ERROR ", sb.log())
        self.assertEqual(sb.stop(), 0, sb.log())

    def test_without_the_extra_ca_px_backup_is_refused(self):
        # The control: the image's roots alone do not trust the test CA, so the poll fails at
        # the handshake, nothing reaches the gateway, and the source stays down and unready.
        gateway, sb, base = self.start_pxb("untrusted", with_ca=False)
        wait_for(
            "a poll failed on the untrusted certificate in the log",
            lambda: re.search(r"(?m)PX-Backup poll failed.*/v1/organization: .*invalid peer certificate: UnknownIssuer$",
                              sb.log()),
            30,
            sb.proc,
            lambda: f"PX-Backup saw {gateway.seen()}\n{sb.log()}",
        )
        self.assertEqual(http_get(base + "/readyz")[0], 503, sb.log())
        _, metrics = http_get(base + "/metrics")
        self.assertIn('pxbackup_sidecar_source_up{source="pxb"} 0', metrics)
        self.assertNotIn("pxbackup_backup_status{", metrics)
        self.assertEqual(gateway.seen(), [], "no request may get through an untrusted handshake")
        self.assertGreater(self.system_roots(sb), 100)
        self.assertEqual(sb.stop(), 0, sb.log())


class TestContainerfile(unittest.TestCase):
    """The Containerfile's own two-stage build, offline: a stand-in for the Rust builder image
    (this machine's bash, coreutils, binutils, ldd, CA bundle, and a `cargo` that hands over the
    release binary) lets buildah run both stages. Its layer must be the offline build's, byte for
    byte: one root filesystem, whichever way the image is built."""

    TOOLS = ("bash", "sh", "mkdir", "ls", "cp", "chmod", "chown", "find", "touch", "sort", "sed",
             "grep", "tr", "dirname", "id", "cat", "head", "readelf", "strip", "ldd")

    def test_two_stage_build_gives_the_offline_layer(self):
        builder_ref = re.search(r"(?m)^FROM\s+(\S+)\s+AS build", (ROOT / "Containerfile").read_text()).group(1)
        d = Image.work / "containerfile"
        fake = d / "builder"
        for tool in self.TOOLS:
            path = os.path.realpath(shutil.which(tool)) if tool != "sh" else "/usr/bin/bash"
            dst = fake / ("usr/bin/" + tool)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dst)
            for lib in ldd_libraries(path) if run(["ldd", path], check=False).returncode == 0 else ():
                (fake / lib.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(os.path.realpath(lib), fake / lib.lstrip("/"))
        for lib in ldd_libraries(BIN):  # ldd of the release binary needs them all in the builder
            (fake / lib.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.realpath(lib), fake / lib.lstrip("/"))
        (fake / "bin").symlink_to("usr/bin")
        (fake / "etc/ssl/certs").mkdir(parents=True)
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", fake / "etc/ssl/certs")
        (fake / "usr/local/bin").mkdir(parents=True)
        shutil.copy(BIN, fake / "usr/local/bin/pxbackup-sidecar.release")
        cargo = fake / "usr/local/bin/cargo"
        cargo.write_text(
            "#!/bin/bash\nset -e\n[ \"$*\" = 'build --release --locked --bin pxbackup-sidecar' ]\n"
            "mkdir -p target/release\ncp /usr/local/bin/pxbackup-sidecar.release target/release/pxbackup-sidecar\n"
        )
        cargo.chmod(0o755)
        b = ["buildah", "--root", str(d / "root"), "--runroot", str(d / "run"), "--storage-driver", "vfs"]
        try:
            c = run([*b, "from", "scratch"]).stdout.strip()
            run([*b, "copy", c, str(fake) + "/", "/"])
            run([*b, "config", "--env", "PATH=/usr/local/bin:/usr/bin:/bin", c])
            run([*b, "commit", "--quiet", c, builder_ref])
            head = run(["git", "-C", str(ROOT), "rev-parse", "HEAD"]).stdout.strip()
            run([*b, "build", "--quiet", "--isolation", "chroot", "--pull=never", "--layers=false",
                 "--timestamp", str(Image.epoch), "--build-arg", f"SOURCE_DATE_EPOCH={Image.epoch}",
                 "--build-arg", f"VERSION={VERSION}", "--build-arg", f"REVISION={head}",
                 "-f", str(ROOT / "Containerfile"), "-t", "localhost/two-stage:test", str(ROOT)])
            built = json.loads(run([*b, "inspect", "--type", "image", "localhost/two-stage:test"]).stdout)["OCIv1"]
        finally:
            run([*b, "rmi", "--all", "--force"], check=False)
            shutil.rmtree(d, ignore_errors=True)
        self.assertEqual(built["rootfs"]["diff_ids"], Image.config["rootfs"]["diff_ids"])
        for key in ("User", "Entrypoint", "Cmd", "ExposedPorts", "Env"):
            self.assertEqual(built["config"].get(key), Image.config["config"].get(key), key)
        def labels(config):  # the revision is HEAD here, HEAD-dirty offline in a dirty tree
            return {k: v for k, v in config["config"]["Labels"].items() if not k.endswith(".revision")}

        self.assertEqual(labels(built), labels(Image.config))


class TestSources(unittest.TestCase):
    def test_containerfile_bases_are_pinned(self):
        froms = re.findall(r"(?m)^FROM\s+(\S+)", (ROOT / "Containerfile").read_text())
        self.assertEqual(froms[-1], "scratch", "the runtime stage is FROM scratch")
        for ref in froms[:-1]:
            self.assertRegex(ref, r"@sha256:[0-9a-f]{64}$|:\d+\.\d+\.\d+[-\w.]*$", f"{ref} is not pinned")

    def test_ignore_files_agree(self):
        # buildah/podman read .containerignore, docker .dockerignore: the same build context.
        self.assertEqual((ROOT / ".containerignore").read_text(), (ROOT / ".dockerignore").read_text())

    def test_build_script_explains_bad_input(self):
        p = run(["bash", str(BUILD), "--binary", "/nonexistent/pxbackup-sidecar"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("cargo build --release --locked --bin pxbackup-sidecar", p.stderr)
        p = run(["bash", str(BUILD), "--binary", str(BIN), "--image", "Not A Name"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("is not REGISTRY/REPOSITORY:TAG", p.stderr)
        p = run(["bash", str(BUILD), "--frobnicate"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("unknown argument", p.stderr)
        # None of this touched the archive the module built.
        self.assertEqual(sha256(ARCHIVE), Image.second_sha)

    @unittest.skipUnless(shutil.which("shellcheck"), "shellcheck not installed")
    def test_scripts_are_shellcheck_clean(self):
        scripts = sorted(map(str, [*ROOT.glob("scripts/*.sh"), *ROOT.glob("tests/image/*.sh")]))
        run(["shellcheck", *scripts])


if __name__ == "__main__":
    unittest.main()
