//! Users: list, create, read, delete, password changes.

use crate::admin::views::{UserView, json};
use crate::admin::{Admin, bad, denied, exists, not_found, ok_json, validate_simple};
use crate::auth::{
    Member, Principal, User, hash_password_off_thread, new_incarnation, reserved_username,
    verify_password_off_thread,
};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::events::Event;
use crate::http::response::ApiResponse;
use crate::ports::{BlobStore, DocumentStore, Env, MetadataStore};
use http::StatusCode;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize)]
pub(super) struct NewPassword {
    password: String,
    /// Required to change one's own password (a stolen session must not lock its owner
    /// out); an admin resetting someone else's needs none.
    #[serde(default)]
    current_password: Option<String>,
}

impl<M: MetadataStore + DocumentStore, E: Env> Admin<'_, M, E> {
    pub(super) async fn list_users<B: BlobStore>(&self, who: &Principal) -> Result<ApiResponse<B>> {
        if !who.is_admin() {
            return Err(denied());
        }
        let users: Vec<User> = self.dir().list("user", "").await?;
        Ok(ok_json::<B>(
            StatusCode::OK,
            users.iter().map(UserView::from).map(json).collect(),
        ))
    }

    pub(super) async fn create_user<B: BlobStore>(
        &self,
        who: &Principal,
        n: NewUser,
    ) -> Result<ApiResponse<B>> {
        if !who.is_admin() {
            return Err(denied());
        }
        validate_simple("user", &n.username)?;
        if reserved_username(&n.username) {
            return Err(RegistryError::new(
                ErrorCode::NameInvalid,
                format!("the user name {:?} is reserved", n.username),
            ));
        }
        if n.password.len() < 8 {
            return Err(bad("passwords have at least 8 characters"));
        }
        let u = User {
            username: n.username.clone(),
            password_hash: hash_password_off_thread(self.env, &n.password).await?,
            email: n.email,
            admin: n.admin,
            created_ms: self.env.now_ms(),
            incarnation: new_incarnation(self.env),
            generation: 0,
        };
        self.dir()
            .put("user", &u.username, &u, true)
            .await
            .map_err(|e| exists(e, "a user", &u.username))?;
        self.gate.events.emit(Event::UserCreated {
            user: u.username.clone(),
        });
        Ok(ok_json::<B>(StatusCode::CREATED, json(UserView::from(&u))))
    }

    pub(super) async fn get_user<B: BlobStore>(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<ApiResponse<B>> {
        if !who.is_admin() && who.name() != name {
            return Err(denied());
        }
        let u = self
            .dir()
            .user(name)
            .await?
            .ok_or_else(|| not_found("user"))?;
        Ok(ok_json::<B>(StatusCode::OK, json(UserView::from(&u))))
    }

    pub(super) async fn delete_user<B: BlobStore>(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<ApiResponse<B>> {
        if !who.is_admin() {
            return Err(denied());
        }
        if who.name() == name {
            return Err(bad("you cannot delete yourself"));
        }
        if !self.meta.delete_doc("user", name).await? {
            return Err(not_found("user"));
        }
        let members: Vec<Member> = self.dir().list("member", "").await?;
        for m in members.iter().filter(|m| m.username == name) {
            self.meta
                .delete_doc("member", &format!("{}/{}", m.project, m.username))
                .await?;
        }
        self.gate.events.emit(Event::UserDeleted {
            user: name.to_owned(),
        });
        Ok(ok_json::<B>(
            StatusCode::OK,
            serde_json::json!({"deleted": name}),
        ))
    }

    pub(super) async fn set_password<B: BlobStore>(
        &self,
        who: &Principal,
        name: &str,
        n: NewPassword,
    ) -> Result<ApiResponse<B>> {
        let own = who.name() == name && matches!(who, Principal::User(_));
        if !who.is_admin() && !own {
            return Err(denied());
        }
        if n.password.len() < 8 {
            return Err(bad("passwords have at least 8 characters"));
        }
        let mut u = self
            .dir()
            .user(name)
            .await?
            .ok_or_else(|| not_found("user"))?;
        if own {
            let current = n.current_password.as_deref().unwrap_or("");
            if !verify_password_off_thread(self.env, current, &u.password_hash).await {
                return Err(RegistryError::new(
                    ErrorCode::Denied,
                    "changing your own password needs your current one (current_password)",
                ));
            }
        }
        u.password_hash = hash_password_off_thread(self.env, &n.password).await?;
        // Revokes every refresh token issued before the change.
        u.generation = u.generation.wrapping_add(1);
        self.dir().put("user", name, &u, false).await?;
        self.gate.events.emit(Event::PasswordChanged {
            user: name.to_owned(),
        });
        Ok(ok_json::<B>(StatusCode::OK, json(UserView::from(&u))))
    }
}
