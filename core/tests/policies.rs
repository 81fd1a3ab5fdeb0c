//! Project policies through the core's request handler (auth on, memory stores): tag
//! immutability refused with the rule's name on every path that could move or delete a
//! tag, quotas refused with usage and limit and nothing counted, retention's dry run and
//! run on 30 tags with every decision explained, and rules that die with their project.

mod support;

use http::{Method, StatusCode};
use serde_json::json;
use std::sync::atomic::Ordering;
use support::*;

const ADMIN: (&str, &str) = ("admin", "admin-pass-1");

fn setup() -> Reg {
    setup_with(wharf_core::Config::default(), &["team", "other"])
}

/// A registry of `config` with an admin and `projects`.
fn setup_with(config: wharf_core::Config, projects: &[&str]) -> Reg {
    let reg = registry_with(config);
    bootstrap_admin(&reg);
    for p in projects {
        admin(&reg, Method::POST, "/api/v1/projects", json!({ "name": p }));
    }
    reg
}

fn as_admin(reg: &Reg, method: Method, path: &str, body: &str) -> Resp {
    call(
        reg,
        method,
        path,
        Some(&basic(ADMIN.0, ADMIN.1)),
        body.as_bytes(),
    )
}

/// Sets team's retention policy as the admin.
fn set_retention(reg: &Reg, policy: &str) -> Resp {
    as_admin(reg, Method::PUT, "/api/v1/projects/team/retention", policy)
}

/// Runs team's retention as the admin (`body`: `{"dry_run": …}`).
fn run_retention(reg: &Reg, body: &str) -> Resp {
    as_admin(
        reg,
        Method::POST,
        "/api/v1/projects/team/retention/run",
        body,
    )
}

fn tag_of(reg: &Reg, repo: &str, tag: &str) -> Option<String> {
    let t = token(reg, Some(ADMIN), &format!("repository:{repo}:pull"));
    let r = call(
        reg,
        Method::HEAD,
        &format!("/v2/{repo}/manifests/{tag}"),
        Some(&bearer(&t)),
        b"",
    );
    (r.status == StatusCode::OK).then(|| {
        r.headers["docker-content-digest"]
            .to_str()
            .expect("digest")
            .to_owned()
    })
}

fn v2(reg: &Reg, method: Method, repo: &str, path: &str) -> Resp {
    // Pull on the repositories a mount names too.
    let from = path
        .split("from=")
        .nth(1)
        .map(|f| format!("&scope=repository:{f}:pull"))
        .unwrap_or_default();
    let t = token(
        reg,
        Some(ADMIN),
        &format!("repository:{repo}:pull,push,delete{from}"),
    );
    call(
        reg,
        method,
        &format!("/v2/{repo}/{path}"),
        Some(&bearer(&t)),
        b"",
    )
}

#[test]
fn an_immutable_tag_is_never_moved_or_deleted() {
    let reg = setup();
    let r = as_admin(
        &reg,
        Method::PUT,
        "/api/v1/projects/team/immutability",
        r#"{"rules":[{"repositories":{"matches":"app"},"tags":{"matches":"v*"}}]}"#,
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let first = push_as(&reg, ADMIN, "team/app", "v1", &[b"one"]).expect("first push");
    // The same manifest again is no move.
    assert_eq!(
        push_as(&reg, ADMIN, "team/app", "v1", &[b"one"]).expect("same again"),
        first
    );
    let (status, code, msg) = push_as(&reg, ADMIN, "team/app", "v1", &[b"two"]).expect_err("moved");
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    assert!(msg.contains("tag v1 of team/app is immutable (immutability rule 1: repositories matching app, tags matching v*)"), "{msg}");
    assert_eq!(
        tag_of(&reg, "team/app", "v1").as_deref(),
        Some(first.to_string().as_str())
    );
    // Deleting it, by tag or by its manifest, through /v2 or the management API: refused.
    let r = v2(&reg, Method::DELETE, "team/app", "manifests/v1");
    assert_eq!(
        (r.status, code_of(&r)),
        (StatusCode::FORBIDDEN, "DENIED".into()),
        "{}",
        r.body
    );
    let r = v2(
        &reg,
        Method::DELETE,
        "team/app",
        &format!("manifests/{first}"),
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body
            .to_string()
            .contains(&format!("deleted with manifest {first}"))
    );
    let r = as_admin(
        &reg,
        Method::DELETE,
        "/api/v1/repositories/team/app/tags/v1",
        "",
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        tag_of(&reg, "team/app", "v1").as_deref(),
        Some(first.to_string().as_str())
    );
    // Tags and repositories the rule does not select move freely, a name next to it too.
    push_as(&reg, ADMIN, "team/app", "latest", &[b"one"]).expect("latest");
    push_as(&reg, ADMIN, "team/app", "latest", &[b"two"]).expect("latest moves");
    push_as(&reg, ADMIN, "team/app2", "v1", &[b"one"]).expect("app2");
    push_as(&reg, ADMIN, "team/app2", "v1", &[b"two"]).expect("app2 moves");
    push_as(&reg, ADMIN, "other/app", "v1", &[b"one"]).expect("other project");
    push_as(&reg, ADMIN, "other/app", "v1", &[b"two"]).expect("other project moves");
    // A push by digest with ?tag= is the same move.
    let r = v2(&reg, Method::DELETE, "team/app", "manifests/latest");
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // ECR's settings: everything immutable but `latest`.
    let r = as_admin(
        &reg,
        Method::PUT,
        "/api/v1/projects/other/immutability",
        r#"{"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION","imageTagMutabilityExclusionFilters":[{"filterType":"WILDCARD","filter":"latest"}]}"#,
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    push_as(&reg, ADMIN, "other/app", "latest", &[b"one"]).expect("latest");
    push_as(&reg, ADMIN, "other/app", "latest", &[b"two"]).expect("latest is excluded");
    assert!(push_as(&reg, ADMIN, "other/app", "v1", &[b"one"]).is_err());
    // Audited, with who set it.
    let a = admin(
        &reg,
        Method::GET,
        "/api/v1/audit?project=team&action=policy_set",
        serde_json::Value::Null,
    );
    assert!(
        a.body
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["actor"] == "admin" && e["reference"] == "immutability: 1 rules"),
        "{}",
        a.body
    );
    let g = admin(
        &reg,
        Method::GET,
        "/api/v1/projects/team/immutability",
        serde_json::Value::Null,
    );
    assert_eq!(g.body["updated_by"], "admin");
    assert_eq!(g.body["policy"]["rules"][0]["tags"]["matches"], "v*");
    // Bad rules: 400 with the reason, nothing stored.
    let r = as_admin(
        &reg,
        Method::PUT,
        "/api/v1/projects/team/immutability",
        r#"{"rules":[{"tags":{"matches":""}}]}"#,
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = as_admin(
        &reg,
        Method::PUT,
        "/api/v1/projects/nope/immutability",
        r#"{"rules":[]}"#,
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}

fn code_of(r: &Resp) -> String {
    code(r).to_owned()
}

#[test]
fn rules_die_with_their_project() {
    let reg = setup();
    admin(
        &reg,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "tmp"}),
    );
    for (path, body) in [
        ("immutability", r#"{"rules":[{"tags":{"matches":"**"}}]}"#),
        ("quota", r#"{"limit_bytes":1}"#),
        ("retention", r#"{"rules":[{"keep":"always"}]}"#),
    ] {
        let r = as_admin(
            &reg,
            Method::PUT,
            &format!("/api/v1/projects/tmp/{path}"),
            body,
        );
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // A stale copy of the rules (as a failed tidying would leave) must not come back.
    let stale = wharf_core::ports::DocumentStore::get_doc(&reg.meta, "policy_quota", "tmp");
    let stale = futures_executor::block_on(stale)
        .expect("read")
        .expect("stored");
    admin(
        &reg,
        Method::DELETE,
        "/api/v1/projects/tmp",
        serde_json::Value::Null,
    );
    // While the project is gone its policies are not found, even by a system admin.
    for path in ["immutability", "quota", "retention"] {
        let g = as_admin(
            &reg,
            Method::GET,
            &format!("/api/v1/projects/tmp/{path}"),
            "",
        );
        assert_eq!(g.status, StatusCode::NOT_FOUND, "{path}: {}", g.body);
        assert_eq!(code_of(&g), "NAME_UNKNOWN", "{path}");
    }
    admin(
        &reg,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "tmp"}),
    );
    futures_executor::block_on(wharf_core::ports::DocumentStore::put_doc(
        &reg.meta,
        "policy_quota",
        "tmp",
        &stale,
        false,
    ))
    .expect("plant");
    for path in ["immutability", "retention"] {
        let g = admin(
            &reg,
            Method::GET,
            &format!("/api/v1/projects/tmp/{path}"),
            serde_json::Value::Null,
        );
        assert_eq!(
            g.body["policy"],
            serde_json::Value::Null,
            "{path}: {}",
            g.body
        );
    }
    let g = admin(
        &reg,
        Method::GET,
        "/api/v1/projects/tmp/quota",
        serde_json::Value::Null,
    );
    assert_eq!(g.body["limit_bytes"], serde_json::Value::Null, "{}", g.body);
    push_as(&reg, ADMIN, "tmp/app", "v1", &[b"a layer"]).expect("no quota, no immutability");
    push_as(&reg, ADMIN, "tmp/app", "v1", &[b"another"]).expect("moves");
}

#[test]
fn a_push_over_quota_is_refused_and_nothing_of_it_counts() {
    let reg = setup();
    // Only system admins set quotas; the project's admin reads it.
    let r = as_admin(
        &reg,
        Method::PUT,
        "/api/v1/projects/team/quota",
        r#"{"limit_bytes":1000}"#,
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let big = vec![7u8; 600];
    let other = vec![8u8; 600];
    push_as(&reg, ADMIN, "team/app", "v1", &[&big]).expect("under the limit");
    let usage = |reg: &Reg| {
        admin(
            reg,
            Method::GET,
            "/api/v1/projects/team/quota",
            serde_json::Value::Null,
        )
        .body
    };
    assert_eq!(
        usage(&reg),
        json!({"limit_bytes": 1000, "used_bytes": 602, "blobs": 2})
    );
    let (status, code, msg) = push_as(&reg, ADMIN, "team/app", "v2", &[&other]).expect_err("over");
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    assert!(
        msg.contains("quota exceeded: project team uses 602 of its 1000 bytes")
            && msg.contains("of 600 bytes would take it to 1202"),
        "{msg}"
    );
    assert_eq!(
        usage(&reg)["used_bytes"],
        602,
        "nothing of the refused push counts"
    );
    let d = wharf_core::Digest::sha256_of(&other);
    assert_eq!(
        v2(&reg, Method::HEAD, "team/app", &format!("blobs/{d}")).status,
        StatusCode::NOT_FOUND
    );
    // What the project holds already adds nothing: in another repository, by upload or mount.
    push_as(&reg, ADMIN, "team/web", "v1", &[&big]).expect("shared layer counts once");
    let bd = wharf_core::Digest::sha256_of(&big);
    let r = v2(
        &reg,
        Method::POST,
        "team/api",
        &format!("blobs/uploads/?mount={bd}&from=team/app"),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(usage(&reg)["used_bytes"], 602);
    // A mount of a blob new to the project is a link like any other.
    push_as(&reg, ADMIN, "other/app", "v1", &[&other]).expect("another project has no quota");
    let od = wharf_core::Digest::sha256_of(&other);
    let r = v2(
        &reg,
        Method::POST,
        "team/api",
        &format!("blobs/uploads/?mount={od}&from=other/app"),
    );
    assert_eq!(
        (r.status, code_of(&r)),
        (StatusCode::FORBIDDEN, "DENIED".into()),
        "{}",
        r.body
    );
    assert_eq!(usage(&reg)["used_bytes"], 602);
    // Raised, the same push goes through.
    as_admin(
        &reg,
        Method::PUT,
        "/api/v1/projects/team/quota",
        r#"{"limit_bytes":1300}"#,
    );
    push_as(&reg, ADMIN, "team/app", "v2", &[&other]).expect("under the new limit");
    assert_eq!(usage(&reg)["used_bytes"], 1202);
    let r = as_admin(
        &reg,
        Method::PUT,
        "/api/v1/projects/team/quota",
        r#"{"limit_bytes":"lots"}"#,
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[test]
fn retention_explains_then_deletes_what_no_rule_keeps() {
    let reg = setup();
    // 30 tags, one a minute, every image its own; `latest` shares v30's digest, and v3 is
    // immutable.
    let t0 = reg.env.now.load(Ordering::SeqCst);
    let mut digests = Vec::new();
    for i in 1..=30u64 {
        reg.env.now.store(t0 + i * 60_000, Ordering::SeqCst);
        let layer = format!("layer {i}");
        digests.push(
            push_as(
                &reg,
                ADMIN,
                "team/app",
                &format!("v{i}"),
                &[layer.as_bytes()],
            )
            .expect("push"),
        );
    }
    push_as(&reg, ADMIN, "team/app", "latest", &[b"layer 30"]).expect("latest");
    push_as(&reg, ADMIN, "team/web", "v1", &[b"web"]).expect("web");
    as_admin(
        &reg,
        Method::PUT,
        "/api/v1/projects/team/immutability",
        r#"{"rules":[{"tags":{"matches":"v3"}}]}"#,
    );
    let r = set_retention(
        &reg,
        r#"{"rules":[{"repositories":{"matches":"app"},"tags":{"matches":"v*"},"keep":{"latest_pushed":10}}]}"#,
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let dry = run_retention(&reg, r#"{"dry_run":true}"#);
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.body);
    assert_eq!(
        (
            dry.body["repositories"].as_u64(),
            dry.body["kept"].as_u64(),
            dry.body["deleted"].as_u64()
        ),
        (Some(1), Some(11), Some(19)),
        "{}",
        dry.body
    );
    let decisions = dry.body["decisions"].as_array().expect("decisions");
    let of = |tag: &str| {
        decisions
            .iter()
            .find(|d| d["tags"].as_array().expect("tags").iter().any(|t| t == tag))
            .expect("decided")
    };
    assert_eq!(
        of("v30")["reason"],
        "kept by rule 1: the 1st most recently pushed of the 10 it keeps"
    );
    assert_eq!(
        of("latest")["tags"],
        json!(["latest", "v30"]),
        "one artifact, both tags"
    );
    assert_eq!(
        of("v21")["reason"],
        "kept by rule 1: the 10th most recently pushed of the 10 it keeps"
    );
    assert_eq!(of("v20")["keep"], false);
    assert!(
        of("v20")["reason"]
            .as_str()
            .expect("reason")
            .starts_with("deleted: pushed today, never pulled; no rule keeps it"),
        "{}",
        of("v20")
    );
    assert!(
        of("v3")["reason"]
            .as_str()
            .expect("reason")
            .starts_with("kept: tag v3 is immutable (immutability rule 1)"),
        "{}",
        of("v3")
    );
    // The dry run deleted nothing.
    for i in 1..=30 {
        assert!(tag_of(&reg, "team/app", &format!("v{i}")).is_some(), "v{i}");
    }
    // Only project admins run it for real; then what it said is what it does.
    let run = run_retention(&reg, r#"{"dry_run":false}"#);
    assert_eq!(
        (
            run.body["kept"].as_u64(),
            run.body["deleted"].as_u64(),
            run.body["tags_deleted"].as_u64()
        ),
        (Some(11), Some(19), Some(19)),
        "{}",
        run.body
    );
    for i in 1..=30 {
        let kept = i == 3 || i > 20;
        assert_eq!(
            tag_of(&reg, "team/app", &format!("v{i}")).is_some(),
            kept,
            "v{i}"
        );
        let by_digest = v2(
            &reg,
            Method::HEAD,
            "team/app",
            &format!("manifests/{}", digests[i as usize - 1]),
        );
        assert_eq!(by_digest.status == StatusCode::OK, kept, "manifest of v{i}");
    }
    assert!(tag_of(&reg, "team/app", "latest").is_some());
    assert!(
        tag_of(&reg, "team/web", "v1").is_some(),
        "a repository no rule selects is left alone"
    );
    let a = admin(
        &reg,
        Method::GET,
        "/api/v1/audit?project=team&limit=1000",
        serde_json::Value::Null,
    );
    let events = a.body.as_array().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "retention_dry_run" && e["reference"] == "kept 11, deleted 19")
    );
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "retention_run" && e["reference"] == "kept 11, deleted 19")
    );
    assert_eq!(
        events.iter().filter(|e| e["action"] == "delete").count(),
        38,
        "19 tags and 19 manifests"
    );
    // Run again: nothing left to delete. The scheduled job does the same for every project.
    let again = futures_executor::block_on(reg.apply_retention()).expect("job");
    assert_eq!(
        serde_json::to_value(&again.projects).expect("json"),
        json!([{"project": "team", "repositories": 1, "kept": 11, "deleted": 0, "tags_deleted": 0}])
    );
}

#[test]
fn an_ecr_lifecycle_policy_does_what_it_did_on_ecr() {
    let reg = setup();
    let t0 = reg.env.now.load(Ordering::SeqCst);
    const DAY: u64 = 24 * 3_600_000;
    for (i, (tag, days_ago)) in [
        ("prod-1", 40),
        ("prod-2", 30),
        ("prod-3", 20),
        ("dev-1", 10),
        ("dev-2", 5),
    ]
    .iter()
    .enumerate()
    {
        reg.env.now.store(t0 - days_ago * DAY, Ordering::SeqCst);
        push_as(&reg, ADMIN, "team/app", tag, &[format!("l{i}").as_bytes()]).expect("push");
    }
    // An untagged image, 20 days old (its tag moved away).
    reg.env.now.store(t0 - 20 * DAY, Ordering::SeqCst);
    push_as(&reg, ADMIN, "team/app", "scratch", &[b"untagged"]).expect("push");
    reg.env.now.store(t0, Ordering::SeqCst);
    push_as(&reg, ADMIN, "team/app", "scratch", &[b"fresh"]).expect("moved");
    let policy = r#"{"rules":[
        {"rulePriority":1,"description":"expire untagged after 14 days","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}},
        {"rulePriority":2,"description":"keep 2 prod images","selection":{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}},
        {"rulePriority":3,"description":"dev images for a week","selection":{"tagStatus":"tagged","tagPatternList":["dev-*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}
    ]}"#;
    let r = set_retention(&reg, policy);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["policy"]["format"], "ecr");
    let run = run_retention(&reg, "{}");
    assert_eq!(
        (run.body["kept"].as_u64(), run.body["deleted"].as_u64()),
        (Some(4), Some(3)),
        "{}",
        run.body
    );
    for (tag, kept) in [
        ("prod-1", false),
        ("prod-2", true),
        ("prod-3", true),
        ("dev-1", false),
        ("dev-2", true),
        ("scratch", true),
    ] {
        assert_eq!(tag_of(&reg, "team/app", tag).is_some(), kept, "{tag}");
    }
    let reasons: Vec<&str> = run.body["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"deleted by rule 1: pushed 20 days ago, more than 14 days"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"kept: no rule selects it"),
        "scratch is tagged but no rule selects it: {reasons:?}"
    );
}

#[test]
fn new_projects_start_with_the_default_quota() {
    let reg = setup_with(
        wharf_core::Config {
            default_quota_bytes: Some(700),
            ..wharf_core::Config::default()
        },
        &["fresh"],
    );
    let q = admin(
        &reg,
        Method::GET,
        "/api/v1/projects/fresh/quota",
        serde_json::Value::Null,
    );
    assert_eq!(
        q.body,
        json!({"limit_bytes": 700, "used_bytes": 0, "blobs": 0})
    );
    push_as(&reg, ADMIN, "fresh/app", "v1", &[&[1u8; 600]]).expect("under");
    assert!(
        push_as(&reg, ADMIN, "fresh/app", "v2", &[&[2u8; 600]]).is_err(),
        "over the default"
    );
}

#[test]
fn retention_deletes_nothing_where_deletes_are_disabled() {
    let reg = setup_with(
        wharf_core::Config {
            delete_enabled: false,
            ..wharf_core::Config::default()
        },
        &["team"],
    );
    push_as(&reg, ADMIN, "team/app", "v1", &[b"one"]).expect("push");
    push_as(&reg, ADMIN, "team/app", "v2", &[b"two"]).expect("push");
    // With no policy anywhere there is nothing to refuse: the scheduled job runs.
    let idle = futures_executor::block_on(reg.apply_retention()).expect("no policy, no refusal");
    assert!(idle.projects.is_empty(), "{idle:?}");
    let r = set_retention(&reg, r#"{"rules":[{"keep":{"latest_pushed":1}}]}"#);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A dry run still explains; a run, by the API or the scheduled job, is refused.
    let dry = run_retention(&reg, r#"{"dry_run":true}"#);
    assert_eq!(dry.body["deleted"], 1, "{}", dry.body);
    let run = run_retention(&reg, "{}");
    assert_eq!(run.status, StatusCode::METHOD_NOT_ALLOWED, "{}", run.body);
    assert_eq!(code_of(&run), "UNSUPPORTED");
    let job = futures_executor::block_on(reg.apply_retention());
    assert!(job.is_err(), "the scheduled job refuses too: {job:?}");
    assert!(
        tag_of(&reg, "team/app", "v1").is_some(),
        "v1 is still there"
    );
}

/// Three projects' repositories, pushed one tag a minute (so "latest" is well defined),
/// each project keeping its 2 most recently pushed artifacts per repository.
fn retention_fixture() -> Reg {
    let reg = setup_with(wharf_core::Config::default(), &["team", "other", "third"]);
    let t0 = reg.env.now.load(Ordering::SeqCst);
    let mut minute = 0;
    for (repo, n) in [
        ("team/app", 12),
        ("team/web", 5),
        ("other/app", 8),
        ("third/x", 3),
    ] {
        for i in 0..n {
            minute += 1;
            reg.env.now.store(t0 + minute * 60_000, Ordering::SeqCst);
            let layer = format!("{repo}-{i}");
            push_as(&reg, ADMIN, repo, &format!("v{i}"), &[layer.as_bytes()]).expect("push");
        }
    }
    for p in ["team", "other"] {
        let r = as_admin(
            &reg,
            Method::PUT,
            &format!("/api/v1/projects/{p}/retention"),
            r#"{"rules":[{"keep":{"latest_pushed":2}}]}"#,
        );
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    reg
}

/// Which of each fixture repository's tags are left.
fn tags_left(reg: &Reg) -> Vec<(String, Vec<String>)> {
    [
        ("team/app", 12),
        ("team/web", 5),
        ("other/app", 8),
        ("third/x", 3),
    ]
    .iter()
    .map(|(repo, n)| {
        let left = (0..*n)
            .map(|i| format!("v{i}"))
            .filter(|t| tag_of(reg, repo, t).is_some())
            .collect();
        (repo.to_string(), left)
    })
    .collect()
}

#[test]
fn a_retention_pass_stopped_by_its_budget_or_killed_at_any_checkpoint_ends_as_one_whole_run() {
    use futures_executor::block_on;
    use wharf_core::ports::DocumentStore;
    let whole = retention_fixture();
    let pass = block_on(whole.apply_retention()).expect("pass");
    let expected = tags_left(&whole);
    assert_eq!(
        expected,
        vec![
            ("team/app".into(), vec!["v10".into(), "v11".into()]),
            ("team/web".into(), vec!["v3".into(), "v4".into()]),
            ("other/app".into(), vec!["v6".into(), "v7".into()]),
            (
                "third/x".into(),
                vec!["v0".into(), "v1".into(), "v2".into()]
            ),
        ],
        "no policy in third"
    );
    assert_eq!(pass.deleted(), 10 + 3 + 6);
    assert_eq!(
        pass.projects
            .iter()
            .map(|p| p.project.as_str())
            .collect::<Vec<_>>(),
        ["other", "team"],
        "projects with a policy, in name order"
    );

    // The same content in steps of 5 calls: a step stops halfway through a repository,
    // and every other step is "killed" before its checkpoint is saved (the previous
    // checkpoint is put back), so the next step repeats it.
    const DOC: (&str, &str) = ("retention_pass", "current");
    let stepped = retention_fixture();
    let mut ticks = 0;
    let mut kills = 0;
    let mut halfway = 0;
    loop {
        ticks += 1;
        assert!(ticks < 500, "the pass advances at every step");
        let before = block_on(stepped.meta.get_doc(DOC.0, DOC.1)).expect("read");
        let Some(p) = block_on(stepped.retention_tick(24 * 3_600_000, 5)).expect("tick") else {
            break;
        };
        if p.after_repo.is_some() || p.current.as_ref().is_some_and(|c| c.deleted > 0) {
            halfway += 1;
        }
        if p.finished_ms.is_some() {
            break;
        }
        if ticks % 2 == 0
            && let Some(raw) = before
        {
            block_on(stepped.meta.put_doc(DOC.0, DOC.1, &raw, false)).expect("restore");
            kills += 1;
        }
    }
    assert_eq!(tags_left(&stepped), expected);
    assert!(
        ticks > 5 && kills > 2 && halfway > 2,
        "{ticks} ticks, {kills} kills, {halfway} halfway"
    );
    // Finished: the next tick is not due for a day, and a tick a day later starts anew
    // and finds nothing more to delete.
    assert_eq!(
        block_on(stepped.retention_tick(24 * 3_600_000, 5)).expect("tick"),
        None
    );
    let t = stepped.env.now.load(Ordering::SeqCst);
    stepped.env.now.store(t + 24 * 3_600_000, Ordering::SeqCst);
    let again = block_on(stepped.apply_retention()).expect("pass");
    assert_eq!(again.deleted(), 0);
    assert_eq!(tags_left(&stepped), expected);
}
