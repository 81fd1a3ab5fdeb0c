//! `wharf user|project|member|robot|audit|gc|replication …`: the management API from the command line.

use crate::api_client::{Conn, call, enc, parse_duration, queue_and_wait};
use clap::Subcommand;
use serde_json::{Value, json};

/// Management subcommands.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Users: add, list, delete, passwd.
    #[command(subcommand)]
    User(UserCmd),
    /// Projects: create, list, delete, visibility.
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Project members and their roles.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Robot accounts.
    #[command(subcommand)]
    Robot(RobotCmd),
    /// Garbage collection: run it (through the server, which holds the store), read runs.
    #[command(subcommand)]
    Gc(GcCmd),
    /// A project's retention policy (Harbor rules or an ECR lifecycle policy): show, set
    /// from a JSON file, clear, or run now (`--dry-run` explains every decision).
    #[command(subcommand)]
    Retention(RetentionCmd),
    /// A project's tag immutability rules (or ECR tag mutability settings).
    #[command(subcommand)]
    Immutability(PolicyCmd),
    /// A project's storage quota and usage (set by system admins).
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// Replication with other registries: remotes and rules (Harbor's).
    #[command(subcommand)]
    Replication(crate::replication_cli::ReplicationCmd),
    /// Read the audit log.
    Audit {
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (login, login_failed, push, pull, delete, …).
        #[arg(long)]
        action: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user.
    Add {
        name: String,
        /// The new user's password (or WHARF_NEW_PASSWORD).
        #[arg(
            long = "new-password",
            env = "WHARF_NEW_PASSWORD",
            hide_env_values = true
        )]
        new_password: String,
        #[arg(long)]
        email: Option<String>,
        /// Make a system administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List,
    /// Delete a user.
    Delete { name: String },
    /// Change a password.
    Passwd {
        name: String,
        #[arg(
            long = "new-password",
            env = "WHARF_NEW_PASSWORD",
            hide_env_values = true
        )]
        new_password: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectCmd {
    /// Create a project (you become its project admin).
    Create {
        name: String,
        /// Allow anonymous pull.
        #[arg(long)]
        public: bool,
    },
    /// List the projects you can see.
    List,
    /// Delete an empty project.
    Delete { name: String },
    /// Make a project public or private.
    Visibility {
        name: String,
        #[arg(value_parser = ["public", "private"])]
        visibility: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Print the policy.
    Show { project: String },
    /// Set it from a JSON file (`-` reads standard input).
    Set { project: String, file: String },
    /// Remove it.
    Clear { project: String },
}

#[derive(Subcommand, Debug)]
pub enum RetentionCmd {
    #[command(flatten)]
    Policy(PolicyCmd),
    /// Apply the policy now and print each artifact's fate and why.
    Run {
        project: String,
        /// Decide and explain; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuotaCmd {
    /// Print the limit and what the project uses.
    Show { project: String },
    /// Set the limit: bytes, or with a unit (500MiB, 10GiB, 1TB).
    Set {
        project: String,
        #[arg(value_parser = parse_size)]
        limit: u64,
    },
    /// Remove the limit.
    Clear { project: String },
}

/// `10GiB`, `500MB`, `1024` → bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: give a number of bytes, e.g. 10GiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1 << 20,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1 << 30,
        "tb" => 1000 * 1000 * 1000 * 1000,
        "tib" | "t" => 1 << 40,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn policy_cmd(conn: &Conn, what: &str, cmd: PolicyCmd) -> Result<Value, String> {
    match cmd {
        PolicyCmd::Show { project } => call(
            conn,
            "GET",
            &format!("projects/{}/{what}", enc(&project)),
            None,
        ),
        PolicyCmd::Set { project, file } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|e| format!("standard input: {e}"))?
            } else {
                std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?
            };
            let body: Value =
                serde_json::from_str(&text).map_err(|e| format!("{file}: not JSON: {e}"))?;
            call(
                conn,
                "PUT",
                &format!("projects/{}/{what}", enc(&project)),
                Some(body),
            )
        }
        PolicyCmd::Clear { project } => call(
            conn,
            "DELETE",
            &format!("projects/{}/{what}", enc(&project)),
            None,
        ),
    }
}

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    /// Add a member or change their role (projectAdmin, maintainer, developer, guest, limitedGuest).
    Add {
        project: String,
        user: String,
        role: String,
    },
    /// List members.
    List { project: String },
    /// Remove a member.
    Remove { project: String, user: String },
}

#[derive(Subcommand, Debug)]
pub enum GcCmd {
    /// Queue a run, wait for it, and print what it collected and why (exits non-zero if
    /// the run failed).
    Run {
        /// Decide and report; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Collect nothing: recompute every count from the manifests and the bytes in
        /// storage, print each difference from the bookkeeping (exits non-zero if any).
        #[arg(long, conflicts_with = "dry_run")]
        verify: bool,
        /// Keep whatever was pushed, mounted, linked or HEAD-checked more recently than
        /// this (e.g. 1h, 30m, 0s).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        grace: u64,
        /// Uploads not written to for this long are abandoned.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        upload_max_age: u64,
        /// Give up waiting after this long (the run goes on in the server).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        wait: u64,
        /// Print the run's record as JSON instead of a report.
        #[arg(long)]
        json: bool,
    },
    /// List past and current runs, oldest first.
    History {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Print one run's record.
    Show { id: String },
}

/// Queues a run and polls it until it ends; prints the report.
fn gc_run(conn: &Conn, body: Value, wait_secs: u64, json_out: bool) -> Result<(), String> {
    let run = queue_and_wait(conn, "gc", body, wait_secs, "garbage collection run")?;
    let id = run["id"].as_str().unwrap_or("?").to_owned();
    if json_out {
        println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default());
    } else {
        let dry = run["progress"]["options"]["dry_run"].as_bool() == Some(true);
        let verb = if dry { "would collect" } else { "collected" };
        for item in run["progress"]["items"].as_array().into_iter().flatten() {
            let repo = item["repository"]
                .as_str()
                .map(|r| format!(" in {r}"))
                .unwrap_or_default();
            println!(
                "{verb} {} {}{repo} ({} bytes): {}",
                item["kind"].as_str().unwrap_or("?"),
                item["name"].as_str().unwrap_or("?"),
                item["bytes"],
                item["reason"].as_str().unwrap_or("")
            );
        }
        for f in run["progress"]["findings"].as_array().into_iter().flatten() {
            let repo = f["repository"]
                .as_str()
                .map(|r| format!(" in {r}"))
                .unwrap_or_default();
            println!(
                "difference {} {}{repo}: {}",
                f["kind"].as_str().unwrap_or("?"),
                f["digest"].as_str().unwrap_or("?"),
                f["detail"].as_str().unwrap_or("")
            );
        }
        let t = &run["progress"]["totals"];
        if run["progress"]["options"]["verify"].as_bool() == Some(true) {
            println!(
                "{}: verified {} repositories, links and blobs; {} differences; {} metadata calls, {} blob store calls",
                run["status"].as_str().unwrap_or("?"),
                t["checked"],
                t["differences"],
                t["metadata_calls"],
                t["blob_calls"]
            );
        } else {
            println!(
                "{}: {} links, {} uploads, {} blobs ({} bytes) {verb}; {} kept; {} metadata calls, {} blob store calls",
                run["status"].as_str().unwrap_or("?"),
                t["links"],
                t["uploads"],
                t["blobs"],
                t["bytes"],
                t["kept"],
                t["metadata_calls"],
                t["blob_calls"]
            );
        }
    }
    let differences = run["progress"]["totals"]["differences"]
        .as_u64()
        .unwrap_or(0);
    if run["status"] == "finished" && differences > 0 {
        Err(format!(
            "run {id}: the bookkeeping differs from the content in {differences} places"
        ))
    } else if run["status"] == "finished" {
        Ok(())
    } else {
        Err(format!(
            "run {id} failed: {}",
            run["error"].as_str().unwrap_or("no reason given")
        ))
    }
}

#[derive(Subcommand, Debug)]
pub enum RobotCmd {
    /// Create a robot account; its secret is printed once.
    Create {
        name: String,
        /// Project(s) the robot acts in (repeatable).
        #[arg(long = "project", required = true)]
        projects: Vec<String>,
        /// Actions in those projects, comma-separated (pull, push, delete).
        #[arg(long, value_delimiter = ',', default_value = "pull")]
        actions: Vec<String>,
        /// Expire after this many days (never, if omitted).
        #[arg(long)]
        days: Option<u64>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List robots.
    List,
    /// Delete a robot.
    Delete { name: String },
}

/// Runs a management command and prints the answer as JSON.
pub fn run(conn: Conn, cmd: AdminCommand) -> Result<(), String> {
    use AdminCommand::*;
    let out = match cmd {
        Replication(c) => return crate::replication_cli::run(&conn, c),
        User(UserCmd::Add {
            name,
            new_password,
            email,
            admin,
        }) => call(
            &conn,
            "POST",
            "users",
            Some(
                json!({"username": name, "password": new_password, "email": email, "admin": admin}),
            ),
        )?,
        User(UserCmd::List) => call(&conn, "GET", "users", None)?,
        User(UserCmd::Delete { name }) => {
            call(&conn, "DELETE", &format!("users/{}", enc(&name)), None)?
        }
        User(UserCmd::Passwd { name, new_password }) => call(
            &conn,
            "PUT",
            &format!("users/{}/password", enc(&name)),
            // The caller's own password: required to change one's own, ignored when an
            // admin resets someone else's.
            Some(json!({"password": new_password, "current_password": conn.password})),
        )?,
        Project(ProjectCmd::Create { name, public }) => call(
            &conn,
            "POST",
            "projects",
            Some(json!({"name": name, "public": public})),
        )?,
        Project(ProjectCmd::List) => call(&conn, "GET", "projects", None)?,
        Project(ProjectCmd::Delete { name }) => {
            call(&conn, "DELETE", &format!("projects/{}", enc(&name)), None)?
        }
        Project(ProjectCmd::Visibility { name, visibility }) => call(
            &conn,
            "PUT",
            &format!("projects/{}", enc(&name)),
            Some(json!({"public": visibility == "public"})),
        )?,
        Member(MemberCmd::Add {
            project,
            user,
            role,
        }) => call(
            &conn,
            "POST",
            &format!("projects/{}/members", enc(&project)),
            Some(json!({"username": user, "role": role})),
        )?,
        Member(MemberCmd::List { project }) => call(
            &conn,
            "GET",
            &format!("projects/{}/members", enc(&project)),
            None,
        )?,
        Member(MemberCmd::Remove { project, user }) => call(
            &conn,
            "DELETE",
            &format!("projects/{}/members/{}", enc(&project), enc(&user)),
            None,
        )?,
        Robot(RobotCmd::Create {
            name,
            projects,
            actions,
            days,
            description,
        }) => {
            let permissions: Vec<Value> = projects
                .iter()
                .map(|p| json!({"project": p, "actions": actions}))
                .collect();
            call(
                &conn,
                "POST",
                "robots",
                Some(
                    json!({"name": name, "permissions": permissions, "expires_in_days": days, "description": description}),
                ),
            )?
        }
        Robot(RobotCmd::List) => call(&conn, "GET", "robots", None)?,
        Robot(RobotCmd::Delete { name }) => {
            call(&conn, "DELETE", &format!("robots/{}", enc(&name)), None)?
        }
        Gc(GcCmd::Run {
            dry_run,
            verify,
            grace,
            upload_max_age,
            wait,
            json,
        }) => {
            let body = json!({"dry_run": dry_run, "verify": verify, "grace_secs": grace, "upload_max_age_secs": upload_max_age});
            return gc_run(&conn, body, wait, json);
        }
        Retention(RetentionCmd::Policy(c)) => policy_cmd(&conn, "retention", c)?,
        Retention(RetentionCmd::Run {
            project,
            dry_run,
            json,
        }) => {
            let report = call(
                &conn,
                "POST",
                &format!("projects/{}/retention/run", enc(&project)),
                Some(json!({"dry_run": dry_run})),
            )?;
            if json {
                report
            } else {
                for d in report["decisions"].as_array().into_iter().flatten() {
                    let tags: Vec<&str> = d["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!(
                        "{} {}@{} [{}]: {}",
                        if d["keep"] == true {
                            "keep  "
                        } else if dry_run {
                            "delete?"
                        } else {
                            "delete"
                        },
                        d["repository"].as_str().unwrap_or_default(),
                        d["digest"].as_str().unwrap_or_default(),
                        tags.join(", "),
                        d["reason"].as_str().unwrap_or_default()
                    );
                }
                println!(
                    "{}{} repositories: {} artifacts kept, {} deleted ({} tags)",
                    if dry_run { "dry run: " } else { "" },
                    report["repositories"],
                    report["kept"],
                    report["deleted"],
                    report["tags_deleted"]
                );
                return Ok(());
            }
        }
        Immutability(c) => policy_cmd(&conn, "immutability", c)?,
        Quota(QuotaCmd::Show { project }) => call(
            &conn,
            "GET",
            &format!("projects/{}/quota", enc(&project)),
            None,
        )?,
        Quota(QuotaCmd::Set { project, limit }) => call(
            &conn,
            "PUT",
            &format!("projects/{}/quota", enc(&project)),
            Some(json!({"limit_bytes": limit})),
        )?,
        Quota(QuotaCmd::Clear { project }) => call(
            &conn,
            "DELETE",
            &format!("projects/{}/quota", enc(&project)),
            None,
        )?,
        Gc(GcCmd::History { limit }) => call(&conn, "GET", &format!("gc?limit={limit}"), None)?,
        Gc(GcCmd::Show { id }) => call(&conn, "GET", &format!("gc/{}", enc(&id)), None)?,
        Audit {
            project,
            actor,
            action,
            limit,
        } => {
            let mut q = format!("audit?limit={limit}");
            for (k, v) in [("project", project), ("actor", actor), ("action", action)] {
                if let Some(v) = v {
                    q.push_str(&format!("&{k}={}", enc(&v)));
                }
            }
            call(&conn, "GET", &q, None)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}
