//! The decision rule (SPEC "The decision rule"): does a change to one config roll one workload?
//!
//! Steps 2–7 live here; step 1 (the global flag filters) needs the flags and the namespace, so
//! the caller applies it and reports [`Step::GlobalFilter`] itself. Every answer names the step
//! that decided it, for metrics and `explain`.

use crate::domain::config::ConfigKind;
use crate::domain::policy::{ConfigPolicy, WorkloadPolicy};

/// The step of the decision rule that settled a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    GlobalFilter,
    Ignored,
    Excluded,
    ReloadList,
    Search,
    Auto,
    NotOptedIn,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::GlobalFilter,
        Step::Ignored,
        Step::Excluded,
        Step::ReloadList,
        Step::Search,
        Step::Auto,
        Step::NotOptedIn,
    ];

    /// Stable snake_case name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::GlobalFilter => "global_filter",
            Step::Ignored => "ignored",
            Step::Excluded => "excluded",
            Step::ReloadList => "reload_list",
            Step::Search => "search",
            Step::Auto => "auto",
            Step::NotOptedIn => "not_opted_in",
        }
    }

    /// One sentence saying why, for `explain` output.
    pub fn explain(self) -> &'static str {
        match self {
            Step::GlobalFilter => {
                "A global flag filters this change out (ignored resource or workload type, \
                 unwatched namespace, or resource label selector)."
            }
            Step::Ignored => "The config is marked ignore, so its changes never roll anything.",
            Step::Excluded => "The workload's exclude list for this kind names the config.",
            Step::ReloadList => {
                "The config's name matches the workload's reload list, which applies whether \
                 or not the pod spec references it."
            }
            Step::Search => {
                "The workload uses search, references the config, and the config is marked match."
            }
            Step::Auto => {
                "The workload references the config and has auto reload on (auto, the typed \
                 auto for this kind, or --auto-reload-all with neither set)."
            }
            Step::NotOptedIn => "No annotation of the workload asks to roll for this config.",
        }
    }
}

/// Whether to roll, and the step that said so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub roll: bool,
    pub step: Step,
}

/// Steps 2–7 of the decision rule for a change to config `name` of `kind`; `referenced` says
/// whether the workload's pod spec references it.
pub fn decide(
    policy: &WorkloadPolicy,
    kind: ConfigKind,
    name: &str,
    config: &ConfigPolicy,
    referenced: bool,
    auto_reload_all: bool,
) -> Decision {
    let (roll, step) = if config.ignore {
        (false, Step::Ignored)
    } else if policy.excludes(kind, name) {
        (false, Step::Excluded)
    } else if policy.reload_list(kind).matches(name) {
        (true, Step::ReloadList)
    } else if policy.search && referenced && config.matched {
        (true, Step::Search)
    } else if referenced && policy.auto_for(kind, auto_reload_all) {
        (true, Step::Auto)
    } else {
        (false, Step::NotOptedIn)
    };
    Decision { roll, step }
}

#[cfg(test)]
mod tests;
