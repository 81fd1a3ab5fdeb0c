//! Architecture invariants: the core depends on no runtime (if `cargo tree` of wharf-core
//! shows tokio, axum, hyper, an AWS SDK or the worker crate, a test fails); its top-level
//! modules depend one way (ARCHITECTURE.md, "Dependencies inside the core"); no file of it
//! grows past [`MAX_LINES`].

use std::path::{Path, PathBuf};
use std::process::Command;

/// The core's top-level modules, lowest first; modules in one entry are peers and may not
/// use each other. A module may use only modules of earlier entries.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["model"],
    &["ports"],
    &["ledger"],
    &["testing"],
    &["http"],
    &["events"],
    &["auth"],
    &["policy"],
    &["runs"],
    &["oci", "admin", "jobs"],
    &["settings"],
    &["registry"],
];

/// Longest file of the core, in lines.
const MAX_LINES: usize = 700;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("core/src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn core_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p).expect("source is readable");
            (rel, text)
        })
        .collect()
}

/// The top-level module a file of `src/` belongs to (`None`: the crate root).
fn module_of(rel: &str) -> Option<&str> {
    match rel.split_once('/') {
        Some((dir, _)) => Some(dir),
        None if rel == "lib.rs" => None,
        None => rel.strip_suffix(".rs"),
    }
}

/// The top-level modules a line names through `crate::…` (`crate::x::…`, `use crate::x`,
/// `use crate::{x, y::…}`). Comments are not read.
fn crate_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `wharf_crate::`, not this crate
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            for item in group.split(',') {
                out.push(ident(item.trim()).to_owned());
            }
        } else {
            out.push(ident(rest).to_owned());
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

#[test]
fn core_modules_depend_one_way() {
    let mut wrong = Vec::new();
    let sources = core_sources();
    assert!(
        sources.len() > 20,
        "the sources were read: {}",
        sources.len()
    );
    for (rel, text) in &sources {
        let Some(module) = module_of(rel) else {
            continue;
        };
        let Some(own) = layer_of(module) else {
            wrong.push(format!(
                "{rel}: top-level module `{module}` has no place in LAYERS"
            ));
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            for used in crate_modules(line) {
                if used == module {
                    continue;
                }
                // Crate-root items (`crate::Config` in a doc link, re-exports) are not
                // modules; only modules in LAYERS are checked.
                let Some(theirs) = layer_of(&used) else {
                    continue;
                };
                if theirs >= own {
                    wrong.push(format!(
                        "{rel}:{}: `{module}` uses `{used}`, which is not below it",
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the one-way order of the core's modules:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_layer_check_reads_imports() {
    assert_eq!(crate_modules("use crate::model::Digest;"), ["model"]);
    assert_eq!(
        crate_modules("use crate::{http::Body, ports::Env};"),
        ["http", "ports"]
    );
    assert_eq!(
        crate_modules("    crate::oci::route(x) // crate::admin"),
        ["oci"]
    );
    assert!(crate_modules("use wharf_crate::x;").is_empty());
    assert!(crate_modules("//! see [`crate::registry`]").is_empty());
}

#[test]
fn no_core_file_is_over_the_line_limit() {
    let long: Vec<String> = core_sources()
        .iter()
        .map(|(rel, text)| (rel, text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(rel, n)| format!("{rel}: {n} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "core files over {MAX_LINES} lines (split them by what they are for):\n{}",
        long.join("\n")
    );
}

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

/// The memory adapters and conformance suites (`testing`) are for tests: no shipped
/// artifact (the server, the Lambda, the Worker without its test-only `conformance`
/// feature) compiles them in.
#[test]
fn shipped_artifacts_do_not_compile_the_testing_module() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (package, target) in [
        ("wharf", None),
        ("wharf-lambda-api", None),
        ("wharf-worker", Some("wasm32-unknown-unknown")),
    ] {
        let mut args = vec![
            "tree",
            "-p",
            package,
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p} [{f}]",
        ];
        if let Some(t) = target {
            args.extend(["--target", t]);
        }
        let out = Command::new(&cargo)
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree -p {package} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        let core: Vec<&str> = tree
            .lines()
            .filter(|l| l.starts_with("wharf-core "))
            .collect();
        assert!(!core.is_empty(), "{package} depends on wharf-core: {tree}");
        for l in core {
            assert!(
                !l.contains("testing"),
                "{package} compiles wharf-core's testing module in: {l}"
            );
        }
    }
}

/// A line's header-name constants taken from the `http` crate directly (`header::LOCATION`)
/// or made on the spot (`HeaderName::from_static`): outside `src/http/`, header names come
/// from `crate::http::headers`, the one place that knows them.
fn names_headers_itself(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    if code.contains("HeaderName::from_static") || code.contains("header::HeaderName::from") {
        return true;
    }
    code.match_indices("header::").any(|(i, _)| {
        let before = &code[..i];
        let after = code[i + "header::".len()..].chars().next();
        !before.ends_with("headers::")
            && !before.ends_with('s')
            && after.is_some_and(|c| c.is_ascii_uppercase())
            && code[i + "header::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .all(|c| c.is_ascii_uppercase() || c == '_')
    })
}

#[test]
fn header_names_live_in_http() {
    assert!(names_headers_itself("    .header(header::LOCATION, x)"));
    assert!(names_headers_itself("use http::header::CONTENT_TYPE;"));
    assert!(names_headers_itself(
        "let h = HeaderName::from_static(\"x-y\");"
    ));
    assert!(!names_headers_itself("    .header(headers::LOCATION, x)"));
    assert!(!names_headers_itself(
        "use http::header::{HeaderMap, HeaderValue};"
    ));
    assert!(!names_headers_itself("// header::LOCATION in a comment"));
    let mut wrong = Vec::new();
    for (rel, text) in core_sources() {
        if rel.starts_with("http/") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            if names_headers_itself(line) {
                wrong.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "header names outside src/http/ (use crate::http::headers):\n{}",
        wrong.join("\n")
    );
}
