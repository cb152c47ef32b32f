//! The three conditions of a vmi (`Ready`, `Progressing`, `Degraded`), set
//! the way Kubernetes expects: the transition time moves only when the
//! status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `True` once the migration reached its end (succeeded or rolled back).
pub const READY: &str = "Ready";
/// `True` while a step's Job runs.
pub const PROGRESSING: &str = "Progressing";
/// `True` when something needs a person: a failed step, a refused rollback,
/// a Job name taken by another object.
pub const DEGRADED: &str = "Degraded";

/// One condition's wanted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// `True` or `False`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// What happened and where to look.
    pub message: String,
}

impl Wanted {
    /// A wanted condition value.
    pub fn new(status: bool, reason: &str, message: impl Into<String>) -> Wanted {
        Wanted {
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Sets condition `kind` in `conditions` to `wanted`, keeping its
/// `lastTransitionTime` unless the status flips.
pub fn set(
    conditions: &mut Vec<Condition>,
    kind: &str,
    wanted: &Wanted,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if wanted.status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now.clone();
            }
            existing.status = status.to_owned();
            existing.reason.clone_from(&wanted.reason);
            existing.message.clone_from(&wanted.message);
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: kind.to_owned(),
            status: status.to_owned(),
            reason: wanted.reason.clone(),
            message: wanted.message.clone(),
            last_transition_time: now.clone(),
            observed_generation: generation,
        }),
    }
}

/// Whether condition `kind` is `True` in `conditions`.
pub fn is_true(conditions: &[Condition], kind: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// The reason of condition `kind`, when present.
pub fn reason<'a>(conditions: &'a [Condition], kind: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            DEGRADED,
            &Wanted::new(false, "AsExpected", ""),
            Some(1),
            &at(100),
        );
        set(
            &mut conditions,
            DEGRADED,
            &Wanted::new(false, "Other", "m"),
            Some(2),
            &at(200),
        );
        assert_eq!(conditions[0].last_transition_time, at(100));
        assert_eq!(conditions[0].reason, "Other");
        assert_eq!(conditions[0].observed_generation, Some(2));
        set(
            &mut conditions,
            DEGRADED,
            &Wanted::new(true, "StepFailed", "x"),
            Some(2),
            &at(300),
        );
        assert_eq!(conditions[0].last_transition_time, at(300));
        assert!(is_true(&conditions, DEGRADED));
        assert_eq!(reason(&conditions, DEGRADED), Some("StepFailed"));
        assert_eq!(conditions.len(), 1);
    }
}
