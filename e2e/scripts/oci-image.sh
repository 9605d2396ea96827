#!/usr/bin/env bash
# Builds a FROM-scratch-like OCI image from one statically linked binary,
# without Docker, and optionally imports it into containerd's k8s.io
# namespace so pods with imagePullPolicy: IfNotPresent run it.
#
# The image has one layer: the binary at /usr/local/bin/<name>, the host's CA
# bundle at /etc/ssl/certs/ca-certificates.crt, /etc/passwd and /etc/group
# with root, nobody and nonroot (65532:65532, home /home/nonroot), and /tmp
# (mode 1777). Timestamps, owners and entry order are fixed, so the same
# binary and flags always give the same image digest.
#
# usage: oci-image.sh --binary PATH --image REF [--entrypoint-arg ARG]...
#                     [--extra-binary PATH]... [--lib-dir DIR] [--user UID[:GID]]
#                     [--output FILE.tar] [--import] [--address CONTAINERD_SOCKET]
#   --extra-binary  another static binary beside the entrypoint in /usr/local/bin
#              (an exec prover image: zkfleet-prover plus the prover's own CLI)
#   --lib-dir  shared libraries for dynamically linked extra binaries (a C++
#              prover such as Stone): every file in DIR goes to
#              /lib/x86_64-linux-gnu/, and the dynamic loader the binaries
#              name must be among them (it also goes where they look for it).
#              Without it every binary must be statically linked.
#   --user     image config User (default 65532, the nonroot user; 0 for root)
#   --output   where to write the OCI image-layout tarball
#              (default $ZKFLEET_CACHE/images/<REF with / and : as _>.tar)
#   --import   import into containerd (namespace k8s.io) and check it is listed
#   --address  containerd socket for --import (default $CONTAINERD_ADDRESS,
#              else ctr's default /run/containerd/containerd.sock)
# Prints the tarball path and the manifest digest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/versions.sh"

usage() { sed -n '/^# usage:/,/^# Prints/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "oci-image.sh: $*" >&2; exit 1; }

binary= image= user=65532 output= import=0 lib_dir=
entry_args=() extra_binaries=()
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?}; shift 2 ;;
    --image) image=${2:?}; shift 2 ;;
    --entrypoint-arg) entry_args+=("${2?}"); shift 2 ;;
    --extra-binary) extra_binaries+=("${2:?}"); shift 2 ;;
    --lib-dir) lib_dir=${2:?}; shift 2 ;;
    --user) user=${2:?}; shift 2 ;;
    --output) output=${2:?}; shift 2 ;;
    --import) import=1; shift ;;
    --address) export CONTAINERD_ADDRESS=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "oci-image.sh: unknown argument $1" >&2; usage ;;
  esac
done
[ -n "$binary" ] && [ -n "$image" ] || usage
[ -f "$binary" ] || die "binary $binary does not exist"
for extra in ${extra_binaries[@]+"${extra_binaries[@]}"}; do
  [ -f "$extra" ] || die "binary $extra does not exist"
done
# name[:tag], lower-case repository path, optional registry host[:port].
[[ $image =~ ^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] \
  || die "image reference $image must look like host/name:tag (e.g. zkfleet.local/operator:0.1.0)"
[[ $user =~ ^[0-9]+(:[0-9]+)?$ ]] || die "--user must be numeric, UID or UID:GID (got $user)"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca_bundle" ] || die "$ca_bundle is missing (apt-get install ca-certificates)"

if [ -z "$output" ]; then
  output=$ZKFLEET_CACHE/images/$(printf '%s' "$image" | tr '/:' '__').tar
fi
mkdir -p "$(dirname "$output")"

# Writes to a temporary file next to the output, renamed into place on success.
extra_list=$(printf '%s\n' ${extra_binaries[@]+"${extra_binaries[@]}"})
[ -z "$lib_dir" ] || [ -d "$lib_dir" ] || die "--lib-dir $lib_dir is not a directory"
digest=$(OCI_EXTRA_BINARIES=$extra_list OCI_LIB_DIR=$lib_dir python3 - "$binary" "$image" "$user" "$ca_bundle" "$output" "${entry_args[@]}" <<'PY'
import hashlib, io, json, os, struct, sys, tarfile, tempfile

binary, ref, user, ca_bundle, output = sys.argv[1:6]
entry_args = sys.argv[6:]
name = os.path.basename(binary)

def fail(msg):
    sys.exit(f"oci-image.sh: {msg}")

extras = [p for p in os.environ.get("OCI_EXTRA_BINARIES", "").split("\n") if p]
lib_dir = os.environ.get("OCI_LIB_DIR", "")
libs = sorted(os.listdir(lib_dir)) if lib_dir else []

# Refuse what cannot run in a scratch image: non-ELF files and dynamically
# linked executables (a PT_INTERP program header names the loader they need).
def static_elf_arch(binary, loaders=()):
    """The ELF machine of an executable that runs in the image: static, or dynamic with its
    loader (PT_INTERP) among `loaders`, the --lib-dir files."""
    with open(binary, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            fail(f"{binary} is not a 64-bit little-endian ELF executable")
        machine = struct.unpack_from("<H", head, 18)[0]
        arch = {0x3E: "amd64", 0xB7: "arm64"}.get(machine) or fail(f"{binary}: unsupported ELF machine {machine:#x}")
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            header = f.read(phentsize)
            if struct.unpack_from("<I", header)[0] == 3:  # PT_INTERP
                offset, = struct.unpack_from("<Q", header, 8)
                size, = struct.unpack_from("<Q", header, 32)
                f.seek(offset)
                interp = f.read(size).rstrip(b"\0").decode()
                if os.path.basename(interp) in loaders:
                    interpreters.add(interp)
                    continue
                fail(f"{binary} is dynamically linked; build it statically "
                     "(Rust: --target x86_64-unknown-linux-musl, Go: CGO_ENABLED=0)")
    return arch

interpreters = set()
arch = static_elf_arch(binary)
for extra in extras:
    if static_elf_arch(extra, libs) != arch:
        fail(f"{extra} is not built for {arch}, as {binary} is")

EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"
NONROOT = 65532

def info(path, kind, mode, size=0, uid=0):
    ti = tarfile.TarInfo(path)
    ti.type, ti.mode, ti.size, ti.mtime = kind, mode, size, EPOCH
    ti.uid = ti.gid = uid
    ti.uname = ti.gname = ""
    return ti

passwd = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
).encode()
group = (
    "root:x:0:\n"
    "nobody:x:65534:\n"
    f"nonroot:x:{NONROOT}:\n"
).encode()

# (path, kind, mode, uid, source): source is bytes or a file path.
entries = [
    ("etc", tarfile.DIRTYPE, 0o755, 0, None),
    ("etc/group", tarfile.REGTYPE, 0o644, 0, group),
    ("etc/passwd", tarfile.REGTYPE, 0o644, 0, passwd),
    ("etc/ssl", tarfile.DIRTYPE, 0o755, 0, None),
    ("etc/ssl/certs", tarfile.DIRTYPE, 0o755, 0, None),
    ("etc/ssl/certs/ca-certificates.crt", tarfile.REGTYPE, 0o644, 0, ca_bundle),
    ("home", tarfile.DIRTYPE, 0o755, 0, None),
    ("home/nonroot", tarfile.DIRTYPE, 0o700, NONROOT, None),
    ("root", tarfile.DIRTYPE, 0o700, 0, None),
    ("tmp", tarfile.DIRTYPE, 0o1777, 0, None),
    ("usr", tarfile.DIRTYPE, 0o755, 0, None),
    ("usr/local", tarfile.DIRTYPE, 0o755, 0, None),
    ("usr/local/bin", tarfile.DIRTYPE, 0o755, 0, None),
    (f"usr/local/bin/{name}", tarfile.REGTYPE, 0o755, 0, binary),
] + [
    (f"usr/local/bin/{os.path.basename(extra)}", tarfile.REGTYPE, 0o755, 0, extra)
    for extra in extras
]
if libs:
    entries += [
        ("lib", tarfile.DIRTYPE, 0o755, 0, None),
        ("lib/x86_64-linux-gnu", tarfile.DIRTYPE, 0o755, 0, None),
    ] + [
        (f"lib/x86_64-linux-gnu/{lib}", tarfile.REGTYPE, 0o755, 0, os.path.join(lib_dir, lib))
        for lib in libs
    ]
    # The loader where the binaries name it (/lib64/ld-linux-x86-64.so.2 on amd64).
    for interp in sorted(interpreters):
        parent = os.path.dirname(interp).lstrip("/")
        if parent != "lib/x86_64-linux-gnu":
            entries.append((parent, tarfile.DIRTYPE, 0o755, 0, None))
            entries.append((interp.lstrip("/"), tarfile.REGTYPE, 0o755, 0,
                            os.path.join(lib_dir, os.path.basename(interp))))
entries.sort(key=lambda e: e[0])

class Hashing(io.RawIOBase):
    """A write-only file that hashes and counts what goes through it."""
    def __init__(self, out):
        self.out, self.sha, self.size = out, hashlib.sha256(), 0
    def writable(self):
        return True
    def write(self, b):
        self.out.write(b)
        self.sha.update(b)
        self.size += len(b)
        return len(b)

out_dir = os.path.dirname(os.path.abspath(output))
with tempfile.TemporaryDirectory(dir=out_dir, prefix=".oci-image-") as work:
    blobs = {}  # digest -> path of the blob file

    def add_blob(path, sha, size):
        digest = "sha256:" + sha.hexdigest()
        final = os.path.join(work, sha.hexdigest())
        os.replace(path, final)
        blobs[digest] = final
        return digest, size

    def json_blob(obj):
        data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        path = os.path.join(work, "json.tmp")
        with open(path, "wb") as f:
            f.write(data)
        return add_blob(path, hashlib.sha256(data), len(data))

    layer_path = os.path.join(work, "layer.tmp")
    with open(layer_path, "wb") as raw:
        hashing = Hashing(raw)
        with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
            for path, kind, mode, uid, source in entries:
                if kind == tarfile.DIRTYPE:
                    tar.addfile(info(path, kind, mode, uid=uid))
                elif isinstance(source, bytes):
                    tar.addfile(info(path, kind, mode, len(source), uid), io.BytesIO(source))
                else:
                    with open(source, "rb") as f:
                        tar.addfile(info(path, kind, mode, os.fstat(f.fileno()).st_size, uid), f)
    # Uncompressed layer: digest and diff_id are the same, and no compressor
    # can make the bytes differ between machines.
    layer_digest, layer_size = add_blob(layer_path, hashing.sha, hashing.size)

    config = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {
            "User": user,
            "Entrypoint": [f"/usr/local/bin/{name}", *entry_args],
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            ],
            "WorkingDir": "/",
            "Labels": {"org.opencontainers.image.title": name},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": CREATED, "created_by": f"e2e/scripts/oci-image.sh {name}"}],
    }
    config_digest, config_size = json_blob(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }],
    }
    manifest_digest, manifest_size = json_blob(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": arch, "os": "linux"},
            # ctr import names the image after io.containerd.image.name, else
            # after the OCI ref.name; both carry the full reference.
            "annotations": {
                "io.containerd.image.name": ref,
                "org.opencontainers.image.ref.name": ref,
            },
        }],
    }
    index_data = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
    layout_data = b'{"imageLayoutVersion":"1.0.0"}'

    tmp_output = os.path.join(work, "image.tar")
    with tarfile.open(tmp_output, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info("blobs", tarfile.DIRTYPE, 0o755))
        tar.addfile(info("blobs/sha256", tarfile.DIRTYPE, 0o755))
        for digest in sorted(blobs):
            with open(blobs[digest], "rb") as f:
                size = os.fstat(f.fileno()).st_size
                tar.addfile(info("blobs/sha256/" + digest.split(":", 1)[1], tarfile.REGTYPE, 0o644, size), f)
        tar.addfile(info("index.json", tarfile.REGTYPE, 0o644, len(index_data)), io.BytesIO(index_data))
        tar.addfile(info("oci-layout", tarfile.REGTYPE, 0o644, len(layout_data)), io.BytesIO(layout_data))
    os.chmod(tmp_output, 0o644)
    os.replace(tmp_output, output)
print(manifest_digest)
PY
)
echo "image $image ($digest) written to $output"

if [ "$import" = 1 ]; then
  command -v ctr >/dev/null || die "ctr not found: install containerd (apt-get install -y containerd)"
  listed() { ctr -n k8s.io images ls "name==$image" | awk -v ref="$image" '$1 == ref { print $3 }'; }
  if [ "$(listed)" = "$digest" ]; then
    echo "$image ($digest) is already in containerd namespace k8s.io"
    exit 0
  fi
  ctr_out=$(ctr -n k8s.io images import --all-platforms "$output" 2>&1) \
    || die "ctr images import of $output failed (containerd at ${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}):"$'\n'"$ctr_out"
  # The import must have tagged exactly this digest under the reference.
  listed=$(listed)
  [ "$listed" = "$digest" ] \
    || die "after import, containerd lists $image as '${listed:-nothing}', expected $digest; ctr said:"$'\n'"$ctr_out"
  echo "imported $image into containerd namespace k8s.io"
fi
