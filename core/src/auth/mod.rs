//! Authentication and authorization: the Docker registry token flow, users, robot
//! accounts, projects and Harbor's roles. All of it is runtime-independent: identities live
//! in the [`DocumentStore`](crate::ports::DocumentStore), time comes from
//! [`Env`](crate::ports::Env), and tokens are ES256 JWTs.
//!
//! A repository's project is its first path segment (`team/app` → `team`).
//!
//! May use: [`crate::error`], [`crate::model`], [`crate::ports`] and [`crate::http`]. It
//! knows nothing of `/v2` handlers, the management API or the registry that holds it: what
//! it needs of a registry comes in a [`Gate`](authorize) of borrowed parts.

pub(crate) mod authorize;
mod basic;
mod bootstrap;
pub mod capability;
mod directory;
pub(crate) mod endpoint;
mod keys;
mod model;
mod password;
pub mod sealed;
pub mod throttle;
mod token;

pub use authorize::{Caller, SYSTEM_CALLER};
pub use basic::parse_basic;
pub use bootstrap::ensure_admin;
pub use directory::Directory;
pub use endpoint::rfc3339;
pub use keys::{Keys, generate_key_pem, split_pems, stored_keys};
pub use model::{
    ANONYMOUS, Action, Member, Principal, Project, Right, Robot, RobotPermission, Role, User,
    new_incarnation, project_of, reserved_username,
};
pub use password::{
    hash_password, hash_password_off_thread, random_secret, verify_password,
    verify_password_off_thread,
};
pub use token::{Access, Claims, Scope, TokenError, TokenService, TokenSettings};
