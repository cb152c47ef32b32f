//! Kubernetes errors as one plain line for logs and status: kube's own
//! `Display` of an API error appends a debug dump of the whole answer
//! (escaped quotes, empty fields), which hides the message an operator
//! needs (`… is forbidden: User … cannot list resource …`).

use kube::runtime::watcher;

/// `error` as `<message> (<reason>, <code>)` for an API answer, or kube's
/// own text for anything else (a connection that failed, a timeout).
pub fn kube_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} ({}, {})", status.message, status.reason, status.code)
        }
        other => other.to_string(),
    }
}

/// A watch that could not list or follow its objects, the same way.
pub fn watch_error(error: &watcher::Error) -> String {
    match error {
        watcher::Error::InitialListFailed(e) => format!("list: {}", kube_error(e)),
        watcher::Error::WatchStartFailed(e) => format!("start watching: {}", kube_error(e)),
        watcher::Error::WatchFailed(e) => format!("watch: {}", kube_error(e)),
        watcher::Error::WatchError(status) => format!(
            "watch: {} ({}, {})",
            status.message, status.reason, status.code
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn forbidden() -> kube::Error {
        kube::Error::Api(Box::new(Status::failure(
            r#"jobs.batch is forbidden: User "system:serviceaccount:vmi-system:vmi-orchestrator" cannot list resource "jobs" in API group "batch" in the namespace "vmi-system""#,
            "Forbidden",
        ).with_code(403)))
    }

    #[test]
    fn an_api_error_is_its_message_reason_and_code_without_a_dump() {
        let text = kube_error(&forbidden());
        assert_eq!(
            text,
            r#"jobs.batch is forbidden: User "system:serviceaccount:vmi-system:vmi-orchestrator" cannot list resource "jobs" in API group "batch" in the namespace "vmi-system" (Forbidden, 403)"#
        );
        assert!(
            forbidden().to_string().contains("Status {"),
            "kube's own text has the dump this module leaves out"
        );
    }

    #[test]
    fn a_failed_watch_says_what_it_was_doing() {
        let text = watch_error(&watcher::Error::InitialListFailed(forbidden()));
        assert!(text.starts_with("list: jobs.batch is forbidden"), "{text}");
        assert!(!text.contains('\\') && !text.contains("Status {"), "{text}");
    }
}
