//! The directory the demo leaves behind: every step pod's log, the
//! orchestrator's logs, the Events, the final vmi, the live progress, the
//! secrets scan and the summary. It is never removed.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;

/// The artifacts directory.
pub struct Artifacts {
    dir: PathBuf,
}

impl Artifacts {
    /// Creates `dir` (and `dir/steps`).
    pub fn create(dir: &Path) -> Result<Artifacts, String> {
        std::fs::create_dir_all(dir.join("steps"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        Ok(Artifacts { dir })
    }

    /// Where it is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `text` to `name` in the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// Copies the log of step pod `pod` to `steps/<pod>.log`.
    pub fn step_log(&self, pod: &str, log: &Path) -> Result<PathBuf, String> {
        let path = self.step_log_path(pod);
        std::fs::copy(log, &path)
            .map_err(|e| format!("cannot copy {} to {}: {e}", log.display(), path.display()))?;
        Ok(path)
    }

    /// Where the log of step pod `pod` is kept.
    pub fn step_log_path(&self, pod: &str) -> PathBuf {
        self.dir.join("steps").join(format!("{pod}.log"))
    }
}

/// `<bin dir>/../vmi-demo/<UTC time>`: `target/vmi-demo/20261121-074342`
/// for a demo built into `target/debug`.
pub fn default_dir(bin_dir: &Path, now: Timestamp) -> PathBuf {
    let parent = bin_dir.parent().unwrap_or(bin_dir);
    parent
        .join("vmi-demo")
        .join(now.strftime("%Y%m%d-%H%M%S").to_string())
}

/// One line per Event, oldest first: time, type, reason, object, message.
pub fn event_lines(events: &[Event]) -> String {
    let mut rows: Vec<(Timestamp, String)> = events
        .iter()
        .map(|e| {
            let time = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
                .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
                .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .unwrap_or_default();
            let object = &e.involved_object;
            let line = format!(
                "{time} {:<8} {:<24} {}/{}/{}: {}",
                e.type_.as_deref().unwrap_or("-"),
                e.reason.as_deref().unwrap_or("-"),
                object.namespace.as_deref().unwrap_or("-"),
                object.kind.as_deref().unwrap_or("-"),
                object.name.as_deref().unwrap_or("-"),
                e.message.as_deref().unwrap_or("").trim_end()
            );
            (time, line)
        })
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, line)| line + "\n").collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_default_dir_is_beside_the_binaries() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(
            default_dir(Path::new("/w/target/debug"), now),
            PathBuf::from("/w/target/vmi-demo/20270115-080000")
        );
    }

    #[test]
    fn events_are_listed_oldest_first() {
        let event = |name: &str, second: i64, reason: &str| {
            let mut e: Event = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "vmi-1"},
                "involvedObject": {"kind": "VSphereMigrationInfra", "name": "move", "namespace": "vmi-1"},
                "reason": reason, "message": format!("{reason} message\n"), "type": "Normal",
            }))
            .unwrap();
            e.last_timestamp = Some(Time(
                Timestamp::from_second(1_800_000_000 + second).unwrap(),
            ));
            e
        };
        let text = event_lines(&[event("b", 5, "StepSucceeded"), event("a", 1, "StepStarted")]);
        assert_eq!(
            text,
            "2027-01-15T08:00:01Z Normal   StepStarted              vmi-1/VSphereMigrationInfra/move: StepStarted message\n\
             2027-01-15T08:00:05Z Normal   StepSucceeded            vmi-1/VSphereMigrationInfra/move: StepSucceeded message\n"
        );
    }
}
