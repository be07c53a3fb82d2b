//! The validating webhook: the annotation rules, with warnings that need the digest store.

use serde_json::value::RawValue;

use crate::domain::check::{being_deleted, changes_judged_annotations, check_rules};
use crate::domain::config::{ConfigId, ConfigKind};
use crate::domain::csi;
use crate::domain::entry::ConfigView;
use crate::domain::extra;
use crate::domain::policy::{self, Warning, WorkloadPolicy};
use crate::domain::workload::LeanWorkload;

use super::Admission;
use super::review::{
    Answer, Outcome, Request, ReviewError, Verdict, answer, log, parse, unsupported, verdict,
};

impl Admission {
    /// The validating webhook.
    pub fn validate(&self, body: &[u8]) -> Result<Answer, ReviewError> {
        let req = parse(body)?;
        let verdict = self.validate_request(&req).unwrap_or_else(|v| v);
        log(&req, "validate", &verdict);
        Ok(answer(&req.uid, verdict))
    }

    fn validate_request(&self, req: &Request) -> Result<Verdict, Verdict> {
        if !matches!(req.operation.as_str(), "CREATE" | "UPDATE") {
            return Ok(Verdict::allow());
        }
        let raw = req.object.map(RawValue::get).unwrap_or("null");
        let old = req.old_object.map(RawValue::get);
        // Judge only what a request changes: kreload's own writes (a roll, a pause, a Job
        // recreated), writes to objects being deleted (finalizer removals), and updates that
        // leave the judged annotations as they were (labels, scale, status) always pass.
        let own_write = req.is_from(self.own_user.as_deref());
        let deleting = being_deleted(raw) || old.is_some_and(being_deleted);
        let unchanged = req.operation == "UPDATE"
            && old.is_some_and(|old| {
                !changes_judged_annotations(&self.names, &req.kind.group, &req.kind.kind, old, raw)
            });
        if own_write || deleting || unchanged {
            return Ok(Verdict::allow());
        }
        let Some(checked) = check_rules(&self.names, &req.kind.group, &req.kind.kind, raw) else {
            if extra::requested_group(&req.kind.group) {
                // An extra kind whose API was not served at start: not judged, never refused.
                return Ok(Verdict::allow());
            }
            return Err(unsupported(req));
        };
        let mut checked = checked.map_err(|why| {
            Verdict::deny(
                Outcome::Unsupported,
                format!(
                    "the {} in the request could not be read: {why}",
                    req.kind.kind
                ),
            )
        })?;
        if let Some(policy) = &checked.policy {
            self.missing_config_warnings(&req.namespace, policy, &mut checked.warnings);
            if self.csi
                && let Some(kind) = req.kind.workload()
                && let Ok(w) = LeanWorkload::from_json(kind, raw)
            {
                let template = w.template(kind);
                let (_, problems) = csi::parse_policy(
                    policy.source,
                    w.metadata.annotations(),
                    template.annotations(),
                );
                checked
                    .warnings
                    .extend(problems.into_iter().map(|p| Warning::CsiValueIgnored {
                        problem: p.to_string(),
                    }));
            }
        }
        Ok(verdict(checked.violations, checked.warnings))
    }

    /// A reload-list name that no config in the namespace has is likely a typo.
    fn missing_config_warnings(
        &self,
        namespace: &str,
        policy: &WorkloadPolicy,
        warnings: &mut Vec<Warning>,
    ) {
        if !self.store.is_synced() {
            return;
        }
        self.store
            .with_namespace(namespace, |view: &dyn ConfigView| {
                for kind in ConfigKind::ALL {
                    for name in policy.reload_list(kind).literal_names() {
                        if view.get(&ConfigId::new(kind, name)).is_none() {
                            warnings.push(Warning::NoSuchConfig {
                                key: policy::reload_key(&self.names, kind).to_owned(),
                                kind,
                                name: name.to_owned(),
                            });
                        }
                    }
                }
            });
    }
}
