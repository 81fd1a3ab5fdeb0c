//! Decisions of both grammars, with their reasons.

use super::*;
use crate::policy::immutability::ImmutabilityRule;

const NOW: u64 = 1_000 * DAY_MS;

fn d(n: u8) -> Digest {
    Digest::sha256_of(&[n])
}

fn art(n: u8, tags: &[&str], pushed_days_ago: u64) -> Artifact {
    Artifact {
        digest: d(n),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        pushed_ms: NOW - pushed_days_ago * DAY_MS,
        pulled_ms: None,
        subject: None,
        children: Vec::new(),
    }
}

fn harbor(json: &str) -> RetentionPolicy {
    serde_json::from_str::<RetentionInput>(json)
        .expect("parses")
        .into_policy()
        .expect("valid")
}

fn fates(ds: &[Decision]) -> Vec<(bool, &str)> {
    ds.iter().map(|x| (x.keep, x.reason.as_str())).collect()
}

#[test]
fn harbor_keeps_the_latest_pushed_and_explains_the_rest() {
    let p = harbor(r#"{"rules":[{"tags":{"matches":"v*"},"keep":{"latest_pushed":2}}]}"#);
    let arts = vec![
        art(1, &["v1"], 30),
        art(2, &["v2"], 20),
        art(3, &["v3"], 10),
        art(4, &[], 5),
    ];
    let ds = decide(&p, None, "team/app", &arts, NOW).expect("covered");
    let f = fates(&ds);
    assert!(
        !f[0].0 && f[0].1.contains("pushed 30 days ago") && f[0].1.contains("no rule keeps it"),
        "{f:?}"
    );
    assert_eq!(
        f[1],
        (
            true,
            "kept by rule 1: the 2nd most recently pushed of the 2 it keeps"
        )
    );
    assert_eq!(
        f[2],
        (
            true,
            "kept by rule 1: the 1st most recently pushed of the 2 it keeps"
        )
    );
    assert!(!f[3].0, "untagged, and no rule selects untagged artifacts");
    // A repository no rule selects is left alone.
    let p = harbor(r#"{"rules":[{"repositories":{"matches":"web"},"keep":"always"}]}"#);
    assert!(decide(&p, None, "team/app", &arts, NOW).is_none());
    assert!(decide(&p, None, "team/web", &arts, NOW).is_some());
}

#[test]
fn a_digest_kept_by_one_tag_keeps_all_its_tags() {
    // Harbor #8717: `latest` and `v1` share a digest; the rule keeps `latest` only.
    let p = harbor(r#"{"rules":[{"tags":{"matches":"latest"},"keep":"always"}]}"#);
    let arts = vec![art(1, &["latest", "v1"], 40), art(2, &["v0"], 50)];
    let ds = decide(&p, None, "team/app", &arts, NOW).expect("covered");
    assert!(ds[0].keep && ds[0].tags == ["latest", "v1"], "{ds:?}");
    assert!(!ds[1].keep);
}

#[test]
fn days_pulls_and_untagged() {
    let p = harbor(
        r#"{"rules":[{"keep":{"pushed_within_days":7}},{"untagged":true,"tags":{"matches":"nothing"},"keep":{"latestPulledN":1}}]}"#,
    );
    let mut pulled = art(3, &[], 100);
    pulled.pulled_ms = Some(NOW - DAY_MS);
    let arts = vec![
        art(1, &["new"], 3),
        art(2, &["old"], 8),
        pulled,
        art(4, &[], 90),
    ];
    let ds = decide(&p, None, "team/app", &arts, NOW).expect("covered");
    let f = fates(&ds);
    assert_eq!(
        f[0],
        (true, "kept by rule 1: pushed 3 days ago, within 7 days")
    );
    assert!(!f[1].0);
    assert_eq!(
        f[2],
        (
            true,
            "kept by rule 2: the 1st most recently pulled of the 1 it keeps (pulled 1 day ago)"
        )
    );
    assert!(!f[3].0);
}

#[test]
fn immutable_tags_children_and_referrers() {
    let p = harbor(r#"{"rules":[{"tags":{"matches":"keep"},"keep":"always"}]}"#);
    let imm = ImmutabilityPolicy {
        rules: vec![ImmutabilityRule {
            repositories: Selector::default(),
            tags: Selector::Matches("release-*".into()),
            disabled: false,
        }],
    };
    let mut index = art(1, &["keep"], 10);
    index.children = vec![d(2), d(3)];
    let mut old_index = art(4, &["old"], 10);
    old_index.children = vec![d(5)];
    let mut sig = art(6, &[], 9);
    sig.subject = Some(d(1));
    let mut old_sig = art(7, &[], 9);
    old_sig.subject = Some(d(4));
    let arts = vec![
        index,
        art(2, &[], 10),
        art(3, &[], 10),
        old_index,
        art(5, &[], 10),
        sig,
        old_sig,
        art(8, &["release-1"], 400),
    ];
    let ds = decide(&p, Some(&imm), "team/app", &arts, NOW).expect("covered");
    let keep: Vec<bool> = ds.iter().map(|x| x.keep).collect();
    assert_eq!(
        keep,
        [true, true, true, false, false, true, false, true],
        "{ds:#?}"
    );
    assert!(ds[1].reason.starts_with("kept: in kept index"));
    assert!(ds[4].reason.starts_with("deleted with index"));
    assert!(ds[5].reason.starts_with("kept: refers to kept"));
    assert!(
        ds[7]
            .reason
            .starts_with("kept: tag release-1 is immutable (immutability rule 1)"),
        "{}",
        ds[7].reason
    );
}

#[test]
fn ecr_rules_decide_each_image_by_the_first_rule_that_selects_it() {
    let p = harbor(
        r#"{"rules":[
          {"rulePriority":2,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
          {"rulePriority":1,"description":"prod","selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}},
          {"rulePriority":0,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}
        ]}"#,
    );
    let RetentionPolicy::Ecr { rules } = &p else {
        panic!("an ECR policy: {p:?}")
    };
    assert_eq!(
        rules.iter().map(|r| r.rule_priority).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let arts = vec![
        art(1, &["prod-1"], 30),
        art(2, &["prod-2"], 20),
        art(3, &["prod-3"], 10),
        art(4, &["dev-1"], 5),
        art(5, &["dev-2"], 4),
        art(6, &[], 20),
        art(7, &[], 2),
    ];
    let ds = decide(&p, None, "team/app", &arts, NOW).expect("ECR covers every repository");
    let keep: Vec<bool> = ds.iter().map(|x| x.keep).collect();
    // prod: the newest 2 of rule 1; others: the newest 1 of rule 2 (prod images are
    // rule 1's, whatever rule 2 would say); untagged: rule 0 by age.
    assert_eq!(
        keep,
        [false, true, true, false, true, false, true],
        "{ds:#?}"
    );
    assert!(
        ds[0]
            .reason
            .starts_with("deleted by rule 1: the 3rd most recently pushed, beyond its 2")
    );
    assert!(
        ds[5]
            .reason
            .starts_with("deleted by rule 0: pushed 20 days ago, more than 14 days")
    );
    // Images no rule selects are kept.
    let p = harbor(
        r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
    );
    let ds = decide(&p, None, "team/app", &arts, NOW).expect("covered");
    assert_eq!(ds[0].reason, "kept: no rule selects it");
}

#[test]
fn invalid_policies_are_refused_with_the_reason() {
    let bad = |j: &str| {
        serde_json::from_str::<RetentionInput>(j)
            .map_err(|e| e.to_string())
            .and_then(|i| i.into_policy().map_err(|e| e.message))
            .expect_err("refused")
    };
    assert!(bad(r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},{"rulePriority":2,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#).contains("lowest-priority"));
    assert!(bad(r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#).contains("tagPrefixList"));
    assert!(bad(r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countNumber":1},"action":{"type":"expire"}}]}"#).contains("countUnit"));
    assert!(
        bad(r#"{"rules":[{"keep":{"latest_pushed":1},"tags":{"matches":""}}]}"#)
            .contains("pattern")
    );
    bad(r#"{"rules":[{"keep":"sometimes"}]}"#);
}
