"""oras (Python SDK) against wharf: push an image, push an artifact whose subject is that
image, list it through the referrers API, pull it back. Prints `ok`/`FAIL` lines."""
import hashlib, json, os, sys, tempfile
import oras.oci
import oras.provider

R, USER, PASSWORD = sys.argv[1], sys.argv[2], sys.argv[3]
failed = 0
passed = 0


def check(name, cond, detail=""):
    global failed, passed
    passed += 1 if cond else 0
    print(f"  {'ok  ' if cond else 'FAIL'} {name}" + ("" if cond else f"\n       {detail}"))
    failed += 0 if cond else 1


client = oras.provider.Registry(hostname=R, insecure=True)
client.login(username=USER, password=PASSWORD, hostname=R)
work = tempfile.mkdtemp()
os.chdir(work)
with open("layer.bin", "wb") as f:
    f.write(os.urandom(300 * 1024))
resp = client.push(target=f"{R}/or/app:v1", files=["layer.bin"], quiet=True)
check("oras push of an image", resp.status_code == 201, resp.text)

head = client.do_request(f"http://{R}/v2/or/app/manifests/v1", "HEAD",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
subject_digest = head.headers.get("Docker-Content-Digest", "")
subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json",
                           digest=subject_digest, size=int(head.headers.get("Content-Length", "0")))
check("HEAD gives the image digest", subject_digest.startswith("sha256:"), str(head.headers))

with open("sbom.json", "w") as f:
    json.dump({"packages": ["a", "b"]}, f)
with open("config.json", "w") as f:
    f.write("{}")
resp = client.push(target=f"{R}/or/app:sbom", files=["sbom.json"], subject=subject,
                   manifest_config="config.json:application/vnd.example.sbom",
                   manifest_annotations={"org.example.kind": "sbom"}, quiet=True)
check("oras push of an artifact with a subject", resp.status_code == 201, resp.text)
check("the PUT answered OCI-Subject", resp.headers.get("OCI-Subject") == subject_digest, str(resp.headers))

refs = client.do_request(f"http://{R}/v2/or/app/referrers/{subject_digest}", "GET")
index = refs.json()
arts = [m for m in index.get("manifests", []) if m.get("artifactType") == "application/vnd.example.sbom"]
check("the referrers API lists the artifact", refs.status_code == 200 and len(arts) == 1, refs.text)
check("with its annotations", arts and arts[0].get("annotations", {}).get("org.example.kind") == "sbom", refs.text)
filtered = client.do_request(f"http://{R}/v2/or/app/referrers/{subject_digest}?artifactType=application/vnd.example.sig", "GET")
check("an artifactType filter that matches nothing gives an empty list",
      filtered.json().get("manifests") == [] and filtered.headers.get("OCI-Filters-Applied") == "artifactType", filtered.text)

os.makedirs("out")
files = client.pull(target=f"{R}/or/app:sbom", outdir="out")
got = open(os.path.join("out", "sbom.json"), "rb").read() if os.path.exists("out/sbom.json") else b""
check("oras pull gives the artifact back", got == open("sbom.json", "rb").read(), str(files))
print(f"oras: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
