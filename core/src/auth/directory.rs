//! The document store, typed: identities by kind and name, and who may do what.

use crate::auth::model::{Action, Member, Principal, Project, Right, Robot, User};
use crate::error::{ErrorCode, RegistryError, StoreError};
use crate::ports::DocumentStore;
use serde::{Deserialize, Serialize};

/// Typed access to identities in a [`DocumentStore`].
pub struct Directory<'a, D>(pub &'a D);

fn store_err(e: crate::error::StoreError) -> RegistryError {
    e.into()
}

impl<D: DocumentStore> Directory<'_, D> {
    /// Reads a record of `kind`.
    pub async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<T>, RegistryError> {
        match self.0.get_doc(kind, id).await.map_err(store_err)? {
            Some(raw) => serde_json::from_slice(&raw).map(Some).map_err(|e| {
                RegistryError::new(ErrorCode::Unknown, format!("corrupt {kind} record: {e}"))
            }),
            None => Ok(None),
        }
    }
    /// Writes a record.
    pub async fn put<T: Serialize>(
        &self,
        kind: &str,
        id: &str,
        v: &T,
        if_absent: bool,
    ) -> Result<(), RegistryError> {
        let raw = serde_json::to_vec(v)
            .map_err(|e| RegistryError::new(ErrorCode::Unknown, e.to_string()))?;
        self.0
            .put_doc(kind, id, &raw, if_absent)
            .await
            .map_err(|e| match e {
                StoreError::Precondition(_) => {
                    RegistryError::new(ErrorCode::Conflict, format!("{kind} {id:?} exists"))
                }
                e => store_err(e),
            })
    }
    /// Lists records of a kind under a prefix.
    pub async fn list<T: for<'de> Deserialize<'de>>(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<T>, RegistryError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .0
                .list_docs(kind, prefix, after.as_deref(), 500)
                .await
                .map_err(store_err)?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            after = Some(last.clone());
            for (_, raw) in &page {
                if let Ok(v) = serde_json::from_slice(raw) {
                    out.push(v);
                }
            }
            if page.len() < 500 {
                return Ok(out);
            }
        }
    }
    /// A user by name.
    pub async fn user(&self, name: &str) -> Result<Option<User>, RegistryError> {
        self.get("user", name).await
    }
    /// A robot by full name.
    pub async fn robot(&self, name: &str) -> Result<Option<Robot>, RegistryError> {
        self.get("robot", name).await
    }
    /// A project by name.
    pub async fn project(&self, name: &str) -> Result<Option<Project>, RegistryError> {
        self.get("project", name).await
    }
    /// A user's membership of a project.
    pub async fn member(&self, project: &str, user: &str) -> Result<Option<Member>, RegistryError> {
        self.get("member", &format!("{project}/{user}")).await
    }
    /// The principal's rights in a project, in the terms of [`Right`].
    pub async fn allowed(
        &self,
        who: &Principal,
        project: &str,
        right: Right,
    ) -> Result<bool, RegistryError> {
        if who.is_admin() {
            return Ok(true);
        }
        let Some(p) = self.project(project).await? else {
            return Ok(false);
        };
        let public_pull = p.public && right == Right::Repo(Action::Pull);
        // A grant counts only in the incarnation of the project (and of the user) it was
        // made in: whoever re-creates a deleted project's name inherits nothing of it.
        match who {
            Principal::Anonymous => Ok(public_pull),
            Principal::User(u) => Ok(public_pull
                || self.member(project, &u.username).await?.is_some_and(|m| {
                    m.project_incarnation == p.incarnation
                        && m.user_incarnation == u.incarnation
                        && m.role.allows(right)
                })),
            Principal::Robot(r) => Ok(match right {
                Right::Repo(a) => {
                    public_pull
                        || r.permissions.iter().any(|perm| {
                            perm.project == project
                                && perm.project_incarnation == p.incarnation
                                && perm.actions.contains(&a)
                        })
                }
                _ => false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document store whose writes fail as `fail` says: a duplicate (`Precondition`) or an
    /// outage (`Unavailable`).
    struct FailingDocs(fn() -> StoreError);

    impl DocumentStore for FailingDocs {
        async fn get_doc(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        async fn put_doc(&self, _: &str, _: &str, _: &[u8], _: bool) -> Result<(), StoreError> {
            Err((self.0)())
        }
        async fn delete_doc(&self, _: &str, _: &str) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn list_docs(
            &self,
            _: &str,
            _: &str,
            _: Option<&str>,
            _: usize,
        ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_duplicate_is_a_conflict_and_an_outage_is_not() {
        let put = |docs: FailingDocs| {
            futures_executor::block_on(Directory(&docs).put("user", "alice", &1u8, true))
                .expect_err("fails")
        };
        let dup = put(FailingDocs(|| StoreError::Precondition("exists".into())));
        assert_eq!((dup.code, dup.status.as_u16()), (ErrorCode::Conflict, 409));
        let down = put(FailingDocs(|| StoreError::Unavailable("timeout".into())));
        assert_eq!(
            (down.code, down.status.as_u16()),
            (ErrorCode::Unavailable, 503)
        );
    }
}
