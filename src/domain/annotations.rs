//! Every annotation key, flag default and name kreload reads or writes: the one source of truth.

/// The stamp kreload writes on pods and pod templates.
pub const CONFIG_HASH: &str = "kreload.dev/config-hash";

/// Written on a workload's own metadata (never its template, so writing it rolls nothing): the
/// hash of the config state kreload has accounted for when that differs from the template's
/// stamp, i.e. after a change it skipped on purpose (an annotation edit of a config, a create or
/// delete without `--reload-on-create`/`--reload-on-delete`). The start-up comparison uses it as
/// the baseline, so a skipped change never rolls the workload later. Absent: the stamp is the
/// baseline.
pub const ACCOUNTED_HASH: &str = "kreload.dev/accounted-hash";

/// Written by a Secrets Store CSI roll (`--enable-csi-integration`) on the pod template (on the
/// object itself for Rollouts kreload restarts): a keyed, namespace-bound digest of the
/// SecretProviderClass and the versions it rotated to. Writing it rolls the workload; writing the
/// same value again is no change, so many pods rotating to the same versions roll it once. It is
/// never part of a stamp or trigger set.
pub const CSI_VERSIONS: &str = "kreload.dev/csi-versions";

/// Prefix shared by every Reloader annotation of default name; the validating webhook only looks
/// at objects carrying one of these or a renamed one ([`AnnotationNames::is_judged`]).
pub const RELOADER_DOMAIN: &str = "reloader.stakater.com";

// Reloader's default names. Read on workloads (or, when none of the reload keys is on the
// workload, on its pod template).
pub const AUTO: &str = "reloader.stakater.com/auto";
pub const CONFIGMAP_AUTO: &str = "configmap.reloader.stakater.com/auto";
pub const SECRET_AUTO: &str = "secret.reloader.stakater.com/auto";
pub const SEARCH: &str = "reloader.stakater.com/search";
pub const CONFIGMAP_RELOAD: &str = "configmap.reloader.stakater.com/reload";
pub const SECRET_RELOAD: &str = "secret.reloader.stakater.com/reload";
pub const CONFIGMAPS_EXCLUDE: &str = "configmaps.exclude.reloader.stakater.com/reload";
pub const SECRETS_EXCLUDE: &str = "secrets.exclude.reloader.stakater.com/reload";
pub const PAUSE_PERIOD: &str = "deployment.reloader.stakater.com/pause-period";
/// Written on a Deployment that kreload paused after a reload (RFC 3339 time), as Reloader does.
pub const PAUSED_AT: &str = "deployment.reloader.stakater.com/paused-at";
pub const ROLLOUT_STRATEGY: &str = "reloader.stakater.com/rollout-strategy";

// Reloader's Secrets Store CSI keys. Read only with `--enable-csi-integration`, and then only to
// decide CSI rolls: they never choose where the other keys are read from, never opt a workload
// in for ConfigMaps or Secrets, and are never denied.
pub const SPC_AUTO: &str = "secretproviderclass.reloader.stakater.com/auto";
pub const SPC_RELOAD: &str = "secretproviderclass.reloader.stakater.com/reload";
pub const SPC_EXCLUDE: &str = "secretproviderclasses.exclude.reloader.stakater.com/reload";

// Read on ConfigMaps and Secrets.
pub const MATCH: &str = "reloader.stakater.com/match";
pub const IGNORE: &str = "reloader.stakater.com/ignore";

/// The names of the ten Reloader annotations that Reloader's `--*-annotation` flags rename (each
/// flag gives the full key). Built once at start from those flags; [`Default`] is Reloader's
/// names (the constants above). Every reader and writer of these annotations (the webhooks, the
/// watcher, the rolls, the CLI) takes it by reference. The exclude lists and `rollout-strategy`
/// have no such flag in Reloader, so they keep their constant names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationNames {
    pub auto: String,
    pub configmap_auto: String,
    pub secret_auto: String,
    pub search: String,
    /// `match`, read on ConfigMaps and Secrets.
    pub search_match: String,
    pub configmap_reload: String,
    pub secret_reload: String,
    /// Read on ConfigMaps and Secrets.
    pub ignore: String,
    pub pause_period: String,
    /// Written by kreload on a Deployment it paused.
    pub paused_at: String,
}

impl Default for AnnotationNames {
    fn default() -> Self {
        AnnotationNames {
            auto: AUTO.into(),
            configmap_auto: CONFIGMAP_AUTO.into(),
            secret_auto: SECRET_AUTO.into(),
            search: SEARCH.into(),
            search_match: MATCH.into(),
            configmap_reload: CONFIGMAP_RELOAD.into(),
            secret_reload: SECRET_RELOAD.into(),
            ignore: IGNORE.into(),
            pause_period: PAUSE_PERIOD.into(),
            paused_at: PAUSED_AT.into(),
        }
    }
}

/// Keys no renamed annotation may take: kreload's own, and the Reloader keys that cannot be
/// renamed.
const RESERVED_KEYS: [&str; 6] = [
    CONFIG_HASH,
    ACCOUNTED_HASH,
    CSI_VERSIONS,
    CONFIGMAPS_EXCLUDE,
    SECRETS_EXCLUDE,
    ROLLOUT_STRATEGY,
];

impl AnnotationNames {
    /// The keys whose presence on the workload means the template's annotations are not read.
    pub fn reload_keys(&self) -> [&str; 6] {
        [
            &self.auto,
            &self.configmap_auto,
            &self.secret_auto,
            &self.search,
            &self.configmap_reload,
            &self.secret_reload,
        ]
    }

    /// Every renamable key, in Reloader's flag order.
    pub fn all(&self) -> [&str; 10] {
        [
            &self.auto,
            &self.configmap_auto,
            &self.secret_auto,
            &self.search,
            &self.search_match,
            &self.configmap_reload,
            &self.secret_reload,
            &self.ignore,
            &self.pause_period,
            &self.paused_at,
        ]
    }

    /// Whether the validating webhook judges this annotation: any Reloader annotation (a key in
    /// [`RELOADER_DOMAIN`]) or a renamed one, except `paused-at`, which kreload itself writes.
    pub fn is_judged(&self, key: &str) -> bool {
        key != self.paused_at && (key.contains(RELOADER_DOMAIN) || self.all().contains(&key))
    }

    /// The judged keys outside [`RELOADER_DOMAIN`] (renamed ones), sorted and without repeats:
    /// the validating webhook's `matchConditions` select objects by that domain, and must name
    /// these too.
    pub fn outside_domain(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .all()
            .into_iter()
            .filter(|k| self.is_judged(k) && !k.contains(RELOADER_DOMAIN))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Errs when two annotations would share a name, or one would take a key that cannot be
    /// renamed (kreload's own, the exclude lists, `rollout-strategy`): kreload could not tell
    /// them apart. `flags` names each key as the user set it, in [`Self::all`]'s order.
    pub fn check(&self, flags: &[&str; 10]) -> Result<(), String> {
        let all = self.all();
        for (i, key) in all.iter().enumerate() {
            if RESERVED_KEYS.contains(key) {
                return Err(format!(
                    "{}={key}: kreload already reads or writes {key} with another meaning; choose another name",
                    flags[i]
                ));
            }
            if let Some(j) = all[..i].iter().position(|k| k == key) {
                return Err(format!(
                    "{} and {} both name the annotation {key}: each annotation needs a name of its own",
                    flags[j], flags[i]
                ));
            }
        }
        Ok(())
    }
}

/// Field manager for every write kreload makes.
pub const FIELD_MANAGER: &str = "kreload";

/// Secret (in kreload's namespace) holding the HMAC key.
pub const HASH_KEY_SECRET: &str = "kreload-hash-key";
/// Data key of the HMAC key inside [`HASH_KEY_SECRET`].
pub const HASH_KEY_DATA: &str = "key";

/// Names of the webhook configurations kreload installs.
pub const MUTATING_WEBHOOK_CONFIG: &str = "kreload";
pub const VALIDATING_WEBHOOK_CONFIG: &str = "kreload";
/// Webhook names inside those configurations.
pub const MUTATING_WEBHOOK_NAME: &str = "mutate.kreload.dev";
pub const VALIDATING_WEBHOOK_NAME: &str = "validate.kreload.dev";
/// HTTP paths the server answers admission reviews on.
pub const MUTATE_PATH: &str = "/mutate";
pub const VALIDATE_PATH: &str = "/validate";

/// Where the cluster's own components run: kreload never stamps nor rolls anything there (nor in
/// its own namespace), so that bootstrapping the cluster, and kreload itself, never depend on it.
/// The webhook configurations' `namespaceSelector` says the same to the API server.
pub const SYSTEM_NAMESPACE: &str = "kube-system";

/// Default namespace kreload runs in.
pub const DEFAULT_NAMESPACE: &str = "kreload";
