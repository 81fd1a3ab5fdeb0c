"""Writes an OCI image layout holding a two-platform index (amd64, arm64), made offline."""
import gzip, hashlib, io, json, os, sys, tarfile

out = sys.argv[1]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)

def put(data: bytes, media_type: str) -> dict:
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": f"sha256:{d}", "size": len(data)}

manifests = []
for arch in ["amd64", "arm64"]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        payload = os.urandom(256 * 1024)
        info = tarfile.TarInfo(f"{arch}.bin")
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    diff_id = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    layer = gzip.compress(buf.getvalue(), mtime=0)
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": put(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [put(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
    }).encode()
    desc = put(manifest, "application/vnd.oci.image.manifest.v1+json")
    desc["platform"] = {"architecture": arch, "os": "linux"}
    manifests.append(desc)
index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}).encode()
idesc = put(index, "application/vnd.oci.image.index.v1+json")
idesc["annotations"] = {"org.opencontainers.image.ref.name": "multi"}
with open(f"{out}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [idesc]}, f)
with open(f"{out}/oci-layout", "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
print(idesc["digest"])
