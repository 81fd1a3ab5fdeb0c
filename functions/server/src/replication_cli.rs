//! `wharf replication registry|rule …`: remote registries and replication rules through the
//! management API.

use crate::api_client::{Conn, call, enc, parse_duration, queue_and_wait};
use clap::Subcommand;
use serde_json::{Value, json};

/// Replication subcommands.
#[derive(Subcommand, Debug)]
pub enum ReplicationCmd {
    /// Remote registries rules copy to or from.
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// Replication rules: what to copy, which way, when; run one and read its history.
    #[command(subcommand)]
    Rule(RuleCmd),
}

#[derive(Subcommand, Debug)]
pub enum RegistryCmd {
    /// Add a remote registry (or change one, with --update). Its password is read from
    /// WHARF_REMOTE_PASSWORD, never from a flag, and stored sealed.
    Add {
        name: String,
        /// `http(s)://host[:port]`.
        #[arg(value_name = "URL")]
        remote_url: String,
        /// User (or robot) to log in to it as.
        #[arg(long)]
        remote_username: Option<String>,
        /// Change an existing remote (without WHARF_REMOTE_PASSWORD the password stays).
        #[arg(long)]
        update: bool,
    },
    /// List remote registries.
    List,
    /// Remove a remote registry (refused while a rule uses it).
    Rm { name: String },
}

#[derive(Subcommand, Debug)]
pub enum RuleCmd {
    /// Add a rule (or replace one, with --update).
    Add {
        name: String,
        /// `push` (from here to the remote) or `pull` (from the remote to here).
        #[arg(long)]
        direction: String,
        /// The remote registry.
        #[arg(long)]
        remote: String,
        /// Source repositories to copy (doublestar pattern of the full name; repeatable).
        #[arg(long = "repo")]
        repos: Vec<String>,
        /// Source repositories not to copy (repeatable).
        #[arg(long = "exclude-repo")]
        exclude_repos: Vec<String>,
        /// Tags to copy (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Tags not to copy (repeatable).
        #[arg(long = "exclude-tag")]
        exclude_tags: Vec<String>,
        /// Replace each repository's first path component with this at the destination.
        #[arg(long)]
        dest_namespace: Option<String>,
        /// Run every this long (e.g. 5m, 1h; at least 1m).
        #[arg(long, value_parser = parse_duration, conflicts_with = "on_push")]
        every: Option<u64>,
        /// Run after pushes to what the rule selects (push rules).
        #[arg(long)]
        on_push: bool,
        /// Delete destination tags the source no longer has.
        #[arg(long)]
        delete_sync: bool,
        /// Leave destination tags that point elsewhere.
        #[arg(long)]
        no_override: bool,
        /// Stored but not triggered.
        #[arg(long)]
        disabled: bool,
        /// Replace an existing rule.
        #[arg(long)]
        update: bool,
    },
    /// List rules.
    List,
    /// Remove a rule and its history.
    Rm { name: String },
    /// Run a rule now and wait for the end; prints each artifact's result and exits
    /// non-zero if the run failed.
    Run {
        name: String,
        /// Give up waiting after this long (the run goes on in the server).
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        wait: u64,
        /// Print the run's record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A rule's runs, newest first.
    History { name: String },
    /// One run, with its per-artifact results.
    Show { name: String, id: String },
}

fn selectors(matches: Vec<String>, excludes: Vec<String>) -> Value {
    let m = matches.into_iter().map(|p| json!({ "matches": p }));
    let e = excludes.into_iter().map(|p| json!({ "excludes": p }));
    Value::Array(m.chain(e).collect())
}

/// Runs a replication command; what it prints is JSON unless said otherwise.
pub fn run(conn: &Conn, cmd: ReplicationCmd) -> Result<(), String> {
    use ReplicationCmd::*;
    let out = match cmd {
        Registry(RegistryCmd::Add {
            name,
            remote_url: url,
            remote_username,
            update,
        }) => {
            let mut body = json!({ "name": name, "url": url, "username": remote_username });
            if let Ok(p) = std::env::var("WHARF_REMOTE_PASSWORD") {
                body["password"] = Value::String(p);
            }
            if update {
                call(
                    conn,
                    "PUT",
                    &format!("replication/registries/{}", enc(&name)),
                    Some(body),
                )?
            } else {
                call(conn, "POST", "replication/registries", Some(body))?
            }
        }
        Registry(RegistryCmd::List) => call(conn, "GET", "replication/registries", None)?,
        Registry(RegistryCmd::Rm { name }) => call(
            conn,
            "DELETE",
            &format!("replication/registries/{}", enc(&name)),
            None,
        )?,
        Rule(RuleCmd::Add {
            name,
            direction,
            remote,
            repos,
            exclude_repos,
            tags,
            exclude_tags,
            dest_namespace,
            every,
            on_push,
            delete_sync,
            no_override,
            disabled,
            update,
        }) => {
            let trigger = match (every, on_push) {
                (Some(s), _) => json!({ "kind": "scheduled", "every_secs": s }),
                (None, true) => json!({ "kind": "on_push" }),
                (None, false) => json!({ "kind": "manual" }),
            };
            let mut body = json!({
                "name": name,
                "direction": direction,
                "remote": remote,
                "repositories": selectors(repos, exclude_repos),
                "tags": selectors(tags, exclude_tags),
                "trigger": trigger,
                "delete_sync": delete_sync,
                "override": !no_override,
                "enabled": !disabled,
            });
            if let Some(ns) = dest_namespace {
                body["destination_namespace"] = Value::String(ns);
            }
            if update {
                call(
                    conn,
                    "PUT",
                    &format!("replication/rules/{}", enc(&name)),
                    Some(body),
                )?
            } else {
                call(conn, "POST", "replication/rules", Some(body))?
            }
        }
        Rule(RuleCmd::List) => call(conn, "GET", "replication/rules", None)?,
        Rule(RuleCmd::Rm { name }) => call(
            conn,
            "DELETE",
            &format!("replication/rules/{}", enc(&name)),
            None,
        )?,
        Rule(RuleCmd::History { name }) => call(
            conn,
            "GET",
            &format!("replication/rules/{}/executions", enc(&name)),
            None,
        )?,
        Rule(RuleCmd::Show { name, id }) => call(
            conn,
            "GET",
            &format!("replication/rules/{}/executions/{}", enc(&name), enc(&id)),
            None,
        )?,
        Rule(RuleCmd::Run { name, wait, json }) => return run_rule(conn, &name, wait, json),
    };
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

/// Queues a run of `name`, waits for its end and reports it.
fn run_rule(conn: &Conn, name: &str, wait_secs: u64, json_out: bool) -> Result<(), String> {
    let path = format!("replication/rules/{}/executions", enc(name));
    let run = queue_and_wait(conn, &path, json!({}), wait_secs, "replication run")?;
    let id = run["id"].as_str().unwrap_or("?").to_owned();
    if json_out {
        println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default());
    } else {
        for i in run["items"].as_array().into_iter().flatten() {
            println!(
                "{:8} {}:{} -> {}{}",
                i["outcome"].as_str().unwrap_or("?"),
                i["repository"].as_str().unwrap_or("?"),
                i["tag"].as_str().unwrap_or("?"),
                i["destination"].as_str().unwrap_or("?"),
                i["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
        let t = &run["totals"];
        println!(
            "{}: {} artifacts ({} copied, {} present, {} skipped, {} deleted, {} failed), {} blobs ({} bytes) copied, {} retries",
            run["status"].as_str().unwrap_or("?"),
            t["artifacts"],
            t["copied"],
            t["present"],
            t["skipped"],
            t["deleted"],
            t["failed"],
            t["blobs_copied"],
            t["bytes_copied"],
            run["retries"].as_array().map_or(0, Vec::len)
        );
    }
    if run["status"] == "succeeded" {
        Ok(())
    } else {
        Err(format!(
            "run {id} {}: {}",
            run["status"].as_str().unwrap_or("?"),
            run["error"].as_str().unwrap_or("no reason given")
        ))
    }
}
