//! Another admission policy refusing kreload's writes, as a cluster may have one: a
//! `ValidatingAdmissionPolicy` (admissionregistration.k8s.io/v1) and its binding, scoped to one
//! test namespace, removed when the test is done with it.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::*;

/// A policy that denies `operation` on `group`/`resource` in one namespace whenever its CEL
/// `expression` is false.
pub struct DenyPolicy {
    pub name: String,
    client: Client,
    removed: bool,
}

impl DenyPolicy {
    pub async fn create(
        ns: &TestNamespace,
        what: &str,
        (group, resource): (&str, &str),
        operation: &str,
        expression: &str,
    ) -> DenyPolicy {
        let client = ns.client();
        let name = format!("{}-{what}", ns.name);
        let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": [group], "apiVersions": ["*"],
                    "operations": [operation], "resources": [resource]
                }]},
                "validations": [{"expression": expression, "message": format!("e2e policy {name} refuses this")}]
            }
        }))
        .unwrap();
        let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}}}
            }
        }))
        .unwrap();
        Api::<ValidatingAdmissionPolicy>::all(client.clone())
            .create(&PostParams::default(), &policy)
            .await
            .unwrap_or_else(|e| panic!("create ValidatingAdmissionPolicy {name}: {e}"));
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .unwrap_or_else(|e| panic!("create ValidatingAdmissionPolicyBinding {name}: {e}"));
        DenyPolicy {
            name,
            client,
            removed: false,
        }
    }

    /// Whether `result` is this policy's denial.
    pub fn denied<T>(&self, result: &Result<T, kube::Error>) -> bool {
        matches!(result, Err(e) if e.to_string().contains(&self.name))
    }

    /// Waits until `probe` (a dry-run of the write the policy is about) is denied by this policy
    /// (`denied`), or no longer is: the API server takes a moment to enforce a new policy and to
    /// forget a removed one.
    pub async fn wait_enforced<T, F, Fut>(&self, denied: bool, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let what = if denied {
            "enforced"
        } else {
            "no longer enforced"
        };
        wait_for(
            &format!("policy {} to be {what}", self.name),
            Duration::from_secs(30),
            || {
                let probe = probe();
                async move { (self.denied(&probe.await) == denied).then_some(()) }
            },
        )
        .await;
    }

    /// Deletes the binding and the policy, and waits until `probe` is no longer denied by it.
    pub async fn remove<T, F, Fut>(mut self, probe: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        delete(self.client.clone(), &self.name).await;
        self.removed = true;
        self.wait_enforced(false, probe).await;
    }
}

async fn delete(client: Client, name: &str) {
    let _ = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
    let _ = Api::<ValidatingAdmissionPolicy>::all(client)
        .delete(name, &DeleteParams::default())
        .await;
}

impl Drop for DenyPolicy {
    /// A test that failed midway still removes its policy (on a runtime of its own: the test's
    /// is ending).
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let name = self.name.clone();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move { delete(client().await, &name).await });
        })
        .join()
        .ok();
    }
}
