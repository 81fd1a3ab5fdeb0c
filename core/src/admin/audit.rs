//! The audit log.

use crate::admin::views::{AuditView, json};
use crate::admin::{Admin, denied, ok_json};
use crate::auth::{Principal, Right};
use crate::error::Result;
use crate::events::audit::{AUDIT_KIND, AuditEvent};
use crate::http::response::ApiResponse;
use crate::ports::{BlobStore, DocumentStore, Env, MetadataStore};
use http::StatusCode;

impl<M: MetadataStore + DocumentStore, E: Env> Admin<'_, M, E> {
    pub(super) async fn read_audit<B: BlobStore>(
        &self,
        who: &Principal,
        project: Option<String>,
        actor: Option<String>,
        action: Option<String>,
        since_ms: Option<String>,
        limit: Option<String>,
    ) -> Result<ApiResponse<B>> {
        match &project {
            Some(p) => self.may(who, p, Right::ReadAudit).await?,
            None if who.is_admin() => {}
            None => return Err(denied()),
        }
        self.meta.flush_events().await?;
        let limit: usize = limit.and_then(|l| l.parse().ok()).unwrap_or(100).min(1000);
        let mut after = since_ms
            .and_then(|s| s.parse::<u64>().ok())
            .map(|s| format!("{s:016}"));
        let mut out = Vec::new();
        loop {
            let page = self
                .meta
                .list_docs(AUDIT_KIND, "", after.as_deref(), 1000)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, raw) in &page {
                let Ok(e) = serde_json::from_slice::<AuditEvent>(raw) else {
                    continue;
                };
                let keep = project
                    .as_ref()
                    .is_none_or(|p| e.project() == Some(p.as_str()))
                    && actor.as_ref().is_none_or(|a| &e.actor == a)
                    && action.as_ref().is_none_or(|a| &e.action == a);
                if keep {
                    out.push(e);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            if out.len() >= limit || page.len() < 1000 {
                break;
            }
        }
        Ok(ok_json::<B>(
            StatusCode::OK,
            json(out.iter().map(AuditView::from).collect::<Vec<_>>()),
        ))
    }
}
