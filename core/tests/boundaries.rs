//! Architecture invariant: the core depends on no runtime. If `cargo tree` of wharf-core
//! shows tokio, axum, hyper, an AWS SDK or the worker crate, this test fails.

use std::process::Command;

#[test]
fn core_has_no_runtime_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "wharf-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"sha2"), "the tree was read: {crates:?}");
    let forbidden = [
        "tokio",
        "axum",
        "hyper",
        "mio",
        "worker",
        "wasm-bindgen",
        "lambda_http",
        "lambda_runtime",
        "redb",
    ];
    for c in &crates {
        assert!(
            !forbidden.contains(c) && !c.starts_with("aws-"),
            "wharf-core must not depend on {c}; it would tie the core to one runtime"
        );
    }
}
