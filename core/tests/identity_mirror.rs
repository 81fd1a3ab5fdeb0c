//! Identity across regions: the home region's users, robots, members, projects and
//! policies mirrored to a region that only holds copies (and refuses to write them), so a
//! token issued at home works there and a deletion or a password change holds there after
//! the next mirror.

mod support;

use futures_executor::block_on;
use http::{Method, StatusCode};
use support::*;
use wharf_core::Config;
use wharf_core::ports::DocumentStore;

/// Region A (home) and B, which mirrors A's identity; both sign with the same key, as one
/// configured secret makes them.
fn regions() -> (Reg, Reg) {
    let a = registry();
    let b = registry_with(Config {
        identity_home: Some("region-a".into()),
        ..Config::default()
    });
    bootstrap_admin(&a);
    bootstrap_admin(&b);
    admin(
        &a,
        Method::POST,
        "/api/v1/users",
        serde_json::json!({"username": "carol", "password": "carol-password"}),
    );
    admin(
        &a,
        Method::POST,
        "/api/v1/projects",
        serde_json::json!({"name": "team"}),
    );
    admin(
        &a,
        Method::POST,
        "/api/v1/projects/team/members",
        serde_json::json!({"username": "carol", "role": "developer"}),
    );
    admin(
        &a,
        Method::PUT,
        "/api/v1/projects/team/immutability",
        serde_json::json!({"rules": [{"repositories": {"matches": "**"}, "tags": {"matches": "release-*"}}]}),
    );
    (a, b)
}

fn tags(reg: &Reg, token: &str) -> StatusCode {
    call(
        reg,
        Method::GET,
        "/v2/team/app/tags/list",
        Some(&bearer(token)),
        b"",
    )
    .status
}

fn login(reg: &Reg, user: &str, pass: &str) -> StatusCode {
    call(
        reg,
        Method::GET,
        "/token?service=wharf&scope=repository:team/app:pull,push",
        Some(&basic(user, pass)),
        b"",
    )
    .status
}

#[test]
fn a_mirrored_region_takes_the_homes_users_tokens_and_deletions_and_refuses_identity_writes() {
    let (a, b) = regions();
    push_image(&a, "team/app", "v1");
    // B's own records of a shared kind that A lacks go; region-own records stay.
    block_on(b.meta.put_doc("user", "mallory", b"{}", false)).expect("doc");
    block_on(b.meta.put_doc("config", "b-only-setting", b"{}", false)).expect("doc");
    assert_eq!(
        login(&b, "carol", "carol-password"),
        StatusCode::UNAUTHORIZED
    );

    let r = block_on(a.mirror_identity(&b.meta)).expect("mirror");
    assert!(r.written >= 4, "{r:?}");
    assert!(r.deleted >= 1, "{r:?}");
    assert!(
        block_on(b.meta.get_doc("user", "mallory"))
            .expect("doc")
            .is_none()
    );
    assert!(
        block_on(b.meta.get_doc("config", "b-only-setting"))
            .expect("doc")
            .is_some()
    );
    // Once more: nothing differs, nothing is written.
    let again = block_on(a.mirror_identity(&b.meta)).expect("mirror");
    assert_eq!((again.written, again.deleted), (0, 0), "{again:?}");

    // Carol logs in at B with her membership; a token from A works at B.
    assert_eq!(login(&b, "carol", "carol-password"), StatusCode::OK);
    let from_a = token(
        &a,
        Some(("carol", "carol-password")),
        "repository:team/app:pull",
    );
    assert_ne!(tags(&b, &from_a), StatusCode::UNAUTHORIZED);
    assert_ne!(tags(&b, &from_a), StatusCode::FORBIDDEN);
    // The project's policy holds at B too.
    let policy = call(
        &b,
        Method::GET,
        "/api/v1/projects/team/immutability",
        Some(&basic("admin", "admin-pass-1")),
        b"",
    );
    assert_eq!(policy.status, StatusCode::OK, "{}", policy.body);
    assert!(
        policy.body.to_string().contains("release-*"),
        "{}",
        policy.body
    );

    // B refuses identity writes, naming the home; reads and its own work are fine.
    for (m, path, body) in [
        (
            Method::POST,
            "/api/v1/users",
            serde_json::json!({"username": "eve", "password": "eve-password"}),
        ),
        (
            Method::PUT,
            "/api/v1/users/carol/password",
            serde_json::json!({"password": "new-password-1"}),
        ),
        (Method::DELETE, "/api/v1/users/carol", serde_json::json!({})),
        (
            Method::POST,
            "/api/v1/projects",
            serde_json::json!({"name": "other"}),
        ),
        (
            Method::PUT,
            "/api/v1/projects/team",
            serde_json::json!({"public": true}),
        ),
        (
            Method::POST,
            "/api/v1/projects/team/members",
            serde_json::json!({"username": "admin", "role": "guest"}),
        ),
        (
            Method::DELETE,
            "/api/v1/projects/team/immutability",
            serde_json::json!({}),
        ),
        (
            Method::POST,
            "/api/v1/robots",
            serde_json::json!({"name": "ci", "project": "team"}),
        ),
    ] {
        let r = call(
            &b,
            m.clone(),
            path,
            Some(&basic("admin", "admin-pass-1")),
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {path}: {}", r.body);
        assert_eq!(code(&r), "DENIED", "{m} {path}");
        assert!(
            r.body.to_string().contains("region-a"),
            "{m} {path}: {}",
            r.body
        );
    }
    let users = call(
        &b,
        Method::GET,
        "/api/v1/users",
        Some(&basic("admin", "admin-pass-1")),
        b"",
    );
    assert_eq!(users.status, StatusCode::OK);
    let gc = call(
        &b,
        Method::POST,
        "/api/v1/gc",
        Some(&basic("admin", "admin-pass-1")),
        br#"{"dry_run": true}"#,
    );
    assert!(gc.status.is_success(), "B's own collection: {}", gc.body);
    // A still takes them.
    admin(
        &a,
        Method::PUT,
        "/api/v1/users/carol/password",
        serde_json::json!({"password": "carol-password-2"}),
    );
    // A password changed at home: after the mirror, B takes the new one only.
    block_on(a.mirror_identity(&b.meta)).expect("mirror");
    assert_eq!(
        login(&b, "carol", "carol-password"),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(login(&b, "carol", "carol-password-2"), StatusCode::OK);

    // Carol deleted at home: after the mirror B issues her nothing, by password or by
    // refresh; a token issued before lives out its lifetime (300 s), as it does at home.
    call(
        &a,
        Method::DELETE,
        "/api/v1/users/carol",
        Some(&basic("admin", "admin-pass-1")),
        b"",
    );
    assert_eq!(
        login(&b, "carol", "carol-password-2"),
        StatusCode::OK,
        "before the mirror"
    );
    let r = block_on(a.mirror_identity(&b.meta)).expect("mirror");
    assert!(r.deleted >= 2, "the user and her membership: {r:?}");
    assert_eq!(
        login(&b, "carol", "carol-password-2"),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&a, "carol", "carol-password-2"),
        StatusCode::UNAUTHORIZED
    );
}
