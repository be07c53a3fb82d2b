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

/// Prefix shared by every Reloader annotation; the validating webhook only looks at objects
/// carrying one of these.
pub const RELOADER_DOMAIN: &str = "reloader.stakater.com";

// Read on workloads (or, when none of the reload keys is on the workload, on its pod template).
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

/// The keys whose presence on the workload means the template's annotations are not read.
pub const RELOAD_KEYS: [&str; 6] = [
    AUTO,
    CONFIGMAP_AUTO,
    SECRET_AUTO,
    SEARCH,
    CONFIGMAP_RELOAD,
    SECRET_RELOAD,
];

// Read on ConfigMaps and Secrets.
pub const MATCH: &str = "reloader.stakater.com/match";
pub const IGNORE: &str = "reloader.stakater.com/ignore";

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
