//! A registry served from two regions: a project's writes are redirected to its home,
//! reads a region cannot answer yet too, at most one hop; replication's own writes are
//! taken where they arrive; two clients moving one tag through both regions end with one
//! tag everywhere.

mod support;

use futures_executor::block_on;
use http::{Method, StatusCode};
use support::*;
use wharf_core::Config;
use wharf_core::jobs::replicate::pass::PassOptions;
use wharf_core::jobs::replicate::v2::V2Target;
use wharf_core::settings::Regions;
use wharf_core::{Digest, MetadataStore};

const A: &str = "http://a.registry.test";
const B: &str = "http://b.registry.test";

fn config(here: &str, identity_home: Option<&str>) -> Config {
    Config {
        identity_home: identity_home.map(str::to_owned),
        regions: Some(Regions {
            here: here.into(),
            urls: vec![("a".into(), A.into()), ("b".into(), B.into())],
            default_home: identity_home.unwrap_or(here).into(),
        }),
        ..Config::default()
    }
}

/// Region a (identity home) and b (mirroring it), with project `team` (default home a)
/// and `eu` homed in b.
fn regions() -> (Reg, Reg) {
    let a = registry_with(config("a", None));
    let b = registry_with(config("b", Some("a")));
    bootstrap_admin(&a);
    bootstrap_admin(&b);
    for p in ["team", "eu"] {
        admin(
            &a,
            Method::POST,
            "/api/v1/projects",
            serde_json::json!({ "name": p }),
        );
    }
    let r = admin(
        &a,
        Method::PUT,
        "/api/v1/projects/eu",
        serde_json::json!({"home_region": "b"}),
    );
    assert_eq!(r.body["home_region"], "b", "{}", r.body);
    block_on(a.mirror_identity(&b.meta)).expect("mirror");
    (a, b)
}

fn tok(reg: &Reg, repo: &str) -> String {
    token(
        reg,
        Some(("admin", "admin-pass-1")),
        &format!("repository:{repo}:pull,push,delete"),
    )
}

/// The digest `reg` itself stores for `repo:reference`.
fn stored(reg: &Reg, repo: &str, reference: &str) -> Option<Digest> {
    block_on(
        reg.meta
            .manifest(repo, &wharf_core::Reference::parse(reference).expect("ref")),
    )
    .expect("read")
    .map(|m| m.info.digest)
}

fn location(r: &Resp) -> String {
    r.headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn replicate(a: &Reg, b: &Reg) {
    let t = V2Target {
        transport: b,
        base: String::new(),
    };
    let out = block_on(a.replicate_until(&t, "b", PassOptions::default(), u64::MAX)).expect("run");
    assert_eq!(out["finished"], true, "{out}");
}

/// Sends a request to region `to` as a client would, and forwards it as a runtime does:
/// to the home region, once, marked with `Wharf-Forwarded-To`, when the region answers with
/// a redirect to another region. Returns the final answer and the regions it went through.
fn send(
    regs: &[(&str, &Reg)],
    to: &str,
    m: Method,
    uri: &str,
    token: &str,
    body: &[u8],
) -> (Resp, Vec<String>) {
    let reg = |n: &str| regs.iter().find(|(r, _)| *r == n).expect("region").1;
    let auth = bearer(token);
    let r = call(reg(to), m.clone(), uri, Some(&auth), body);
    let loc = location(&r);
    let home = if r.status != StatusCode::TEMPORARY_REDIRECT {
        None
    } else if loc.starts_with(A) {
        Some("a")
    } else if loc.starts_with(B) {
        Some("b")
    } else {
        None // out of the registry (a presigned URL)
    };
    let Some(home) = home else {
        return (r, vec![to.to_owned()]);
    };
    assert_eq!(
        loc,
        format!("{}{uri}", if home == "a" { A } else { B }),
        "the same request at home"
    );
    let again = call_with(
        reg(home),
        m,
        uri,
        &[("authorization", &auth), ("wharf-forwarded-to", home)],
        body,
    );
    (again, vec![to.to_owned(), home.to_owned()])
}

fn manifest_body(config: &Digest, layer: &Digest, size: usize) -> Vec<u8> {
    serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}]})
    .to_string()
    .into_bytes()
}

/// Pushes an image through region `to` (following redirects), as a client of the
/// distribution API does: blobs by POST with `?digest=`, then the manifest under `tag`.
fn push_via(regs: &[(&str, &Reg)], to: &str, repo: &str, tag: &str, layer: &[u8]) -> Digest {
    let home = regs[0].1;
    let t = tok(home, repo);
    let mut ds = Vec::new();
    for data in [&b"{}"[..], layer] {
        let d = Digest::sha256_of(data);
        let (r, _) = send(
            regs,
            to,
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &t,
            data,
        );
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        ds.push(d);
    }
    let body = manifest_body(&ds[0], &ds[1], layer.len());
    let (r, _) = send(
        regs,
        to,
        Method::PUT,
        &format!("/v2/{repo}/manifests/{tag}"),
        &t,
        &body,
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    Digest::sha256_of(&body)
}

#[test]
fn writes_go_to_the_projects_home_and_reads_there_until_replication_catches_up() {
    let (a, b) = regions();
    let regs = [("a", &a), ("b", &b)];
    let t = tok(&a, "team/app");
    // A write at b for a project homed at a is a's: b's runtime is told to forward it,
    // and b itself answers a 307 to the same URL at a (without a token too: a verifies it).
    for (m, uri) in [
        (Method::POST, "/v2/team/app/blobs/uploads/?mount=x"),
        (Method::PUT, "/v2/team/app/manifests/v1"),
        (Method::DELETE, "/v2/team/app/manifests/v1"),
        (Method::PATCH, "/v2/team/app/blobs/uploads/some-id"),
    ] {
        let (parts, ()) = http::Request::builder()
            .method(m.clone())
            .uri(uri)
            .body(())
            .expect("request")
            .into_parts();
        let f = block_on(b.forward_target(&parts)).expect("forwarded");
        assert_eq!((f.region.as_str(), f.base.as_str()), ("a", A));
        assert_eq!(block_on(a.forward_target(&parts)), None, "a is the home");
        let r = call(&b, m.clone(), uri, None, b"{}");
        assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT, "{m} {uri}");
        assert_eq!(location(&r), format!("{A}{uri}"));
    }
    // Reads and what was forwarded already are not forwarded again.
    for (m, hop) in [(Method::GET, None), (Method::PUT, Some("a"))] {
        let mut rb = http::Request::builder()
            .method(m)
            .uri("/v2/team/app/manifests/v1");
        if let Some(h) = hop {
            rb = rb.header("wharf-forwarded-to", h);
        }
        let (parts, ()) = rb.body(()).expect("request").into_parts();
        assert_eq!(block_on(b.forward_target(&parts)), None);
    }

    // A push through b lands at a; b answers reads of it from a until replication.
    let digest = push_via(&regs, "b", "team/app", "v1", b"layer one");
    assert!(
        stored(&b, "team/app", "v1").is_none(),
        "b stored a write for a project homed at a"
    );
    let tb = tok(&b, "team/app");
    let (r, path) = send(
        &regs,
        "b",
        Method::GET,
        "/v2/team/app/manifests/v1",
        &tb,
        b"",
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(path, ["b", "a"]);
    let layer = Digest::sha256_of(b"layer one");
    let (r, path) = send(
        &regs,
        "b",
        Method::GET,
        &format!("/v2/team/app/blobs/{layer}"),
        &tb,
        b"",
    );
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(path, ["b", "a"]);
    // After replication b answers itself; replication's writes were not sent home.
    replicate(&a, &b);
    let (r, path) = send(
        &regs,
        "b",
        Method::GET,
        "/v2/team/app/manifests/v1",
        &tb,
        b"",
    );
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(path, ["b"]);
    assert_eq!(
        r.headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        Some(digest.to_string().as_str())
    );
    // What neither has is a 404 from home.
    let (r, path) = send(
        &regs,
        "b",
        Method::GET,
        "/v2/team/app/manifests/nope",
        &tb,
        b"",
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(path, ["b", "a"]);

    // A project homed at b: a's writes go to b, b's stay.
    let r = call(
        &a,
        Method::PUT,
        "/v2/eu/app/manifests/v1",
        Some(&bearer(&t)),
        b"{}",
    );
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(location(&r), format!("{B}/v2/eu/app/manifests/v1"));
    push_via(&[("a", &a), ("b", &b)], "a", "eu/app", "v1", b"eu layer");
    assert!(stored(&b, "eu/app", "v1").is_some());

    // One hop at most: a write forwarded to b by a region that took b for the home, which
    // b does not think it is (a home changing while identity is mirrored), is refused for
    // a retry, neither written at b nor sent on; at the home it is served.
    let r = call_with(
        &b,
        Method::POST,
        "/v2/team/app/blobs/uploads/",
        &[("authorization", &bearer(&tb)), ("wharf-forwarded-to", "b")],
        b"",
    );
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.to_string().contains("region a is"), "{}", r.body);
    let r = call_with(
        &a,
        Method::POST,
        "/v2/team/app/blobs/uploads/",
        &[("authorization", &bearer(&t)), ("wharf-forwarded-to", "a")],
        b"",
    );
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // A forwarded read that misses at home is a 404 there, not sent back.
    let r = call_with(
        &b,
        Method::GET,
        "/v2/eu/app/manifests/nope",
        &[
            ("authorization", &bearer(&tok(&b, "eu/app"))),
            ("wharf-forwarded-to", "b"),
        ],
        b"",
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[test]
fn replication_over_http_is_taken_where_it_arrives_from_a_system_administrator_only() {
    let (a, b) = regions();
    admin(
        &a,
        Method::POST,
        "/api/v1/users",
        serde_json::json!({"username": "dev", "password": "dev-password-1"}),
    );
    admin(
        &a,
        Method::POST,
        "/api/v1/projects/team/members",
        serde_json::json!({"username": "dev", "role": "developer"}),
    );
    block_on(a.mirror_identity(&b.meta)).expect("mirror");
    let data = b"replicated layer";
    let d = Digest::sha256_of(data);
    let uri = format!("/v2/team/app/blobs/uploads/?digest={d}");
    let dev = token(
        &b,
        Some(("dev", "dev-password-1")),
        "repository:team/app:pull,push",
    );
    // A developer marking a push as replication is refused, not written at b.
    let r = call_with(
        &b,
        Method::POST,
        &uri,
        &[
            ("authorization", &bearer(&dev)),
            ("wharf-replicated-from", "a"),
        ],
        data,
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(code(&r), "DENIED");
    // The same without the mark is forwarded home, as any write.
    let r = call(&b, Method::POST, &uri, Some(&bearer(&dev)), data);
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    // The system administrator replication logs in as: taken at b.
    let r = call_with(
        &b,
        Method::POST,
        &uri,
        &[
            ("authorization", &bearer(&tok(&b, "team/app"))),
            ("wharf-replicated-from", "a"),
        ],
        data,
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(
        block_on(b.meta.blob_link("team/app", &d))
            .expect("link")
            .is_some()
    );
}

#[test]
fn two_clients_moving_one_tag_through_two_regions_end_with_one_tag_everywhere() {
    let (a, b) = regions();
    let regs = [("a", &a), ("b", &b)];
    // Rounds of two pushes of the same tag, one through each region, in both orders: each
    // client sees 201, and after replication both regions name the last one home took.
    for round in 0..6 {
        let (first, second) = if round % 2 == 0 {
            ("a", "b")
        } else {
            ("b", "a")
        };
        let x = push_via(
            &regs,
            first,
            "team/app",
            "moving",
            format!("x{round}").as_bytes(),
        );
        let y = push_via(
            &regs,
            second,
            "team/app",
            "moving",
            format!("y{round}").as_bytes(),
        );
        replicate(&a, &b);
        let at = |reg: &Reg| stored(reg, "team/app", "moving");
        assert_eq!(
            at(&a),
            Some(y.clone()),
            "round {round}: a took the later push"
        );
        assert_eq!(at(&b), at(&a), "round {round}: the regions disagree");
        assert_ne!(x, y);
    }
}

#[test]
fn a_home_must_be_a_region_and_a_one_region_registry_has_none() {
    let (a, _b) = regions();
    let r = call(
        &a,
        Method::PUT,
        "/api/v1/projects/team",
        Some(&basic("admin", "admin-pass-1")),
        br#"{"home_region": "mars"}"#,
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.to_string().contains("a, b"), "{}", r.body);
    // "" returns a project to the default home.
    let r = admin(
        &a,
        Method::PUT,
        "/api/v1/projects/eu",
        serde_json::json!({"home_region": ""}),
    );
    assert_eq!(r.body.get("home_region"), None, "{}", r.body);
    let one = registry();
    bootstrap_admin(&one);
    let r = call(
        &one,
        Method::POST,
        "/api/v1/projects",
        Some(&basic("admin", "admin-pass-1")),
        br#"{"name": "p", "home_region": "a"}"#,
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}
