//! `wharf user|project|member|robot|audit …`: the management API from the command line.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where and as whom to connect.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Registry URL.
    #[arg(
        long,
        global = true,
        env = "WHARF_URL",
        default_value = "http://127.0.0.1:5000"
    )]
    pub url: String,
    /// User (or robot) to authenticate as.
    #[arg(long, global = true, env = "WHARF_USERNAME", default_value = "admin")]
    pub username: String,
    /// Password; prefer the environment variable to a flag (flags show in process lists).
    #[arg(long, global = true, env = "WHARF_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

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

fn call(conn: &Conn, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let password = conn
        .password
        .clone()
        .ok_or("set WHARF_PASSWORD (or --password) to authenticate")?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/api/v1/{path}", conn.url.trim_end_matches('/'));
    let auth = format!(
        "Basic {}",
        base64_encode(format!("{}:{password}", conn.username).as_bytes())
    );
    let resp = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
        ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
        ("POST", Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
        ("PUT", Some(b)) => agent.put(&url).header("Authorization", &auth).send_json(b),
        _ => return Err(format!("bad call {method} {path}")),
    };
    let mut resp = resp.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        Ok(v)
    } else {
        let msg = v["errors"][0]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        Err(format!("{status}: {msg}"))
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs a management command and prints the answer as JSON.
pub fn run(conn: Conn, cmd: AdminCommand) -> Result<(), String> {
    use AdminCommand::*;
    let out = match cmd {
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

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::base64_encode(b"admin:pw"), "YWRtaW46cHc=");
        assert_eq!(super::base64_encode(b"ab"), "YWI=");
        assert_eq!(super::base64_encode(b"abc"), "YWJj");
    }
}
