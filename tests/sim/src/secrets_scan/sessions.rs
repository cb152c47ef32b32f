//! The vCenter session ids the simulators handed out during a run, so the
//! scan can search for them by value.
//!
//! In vcsim a SOAP session's key *is* the `vmware_soap_session` cookie
//! value: `SessionManager.Login` makes `Session{Key: uuid.New()}` and
//! `Context.SetSession` sets the cookie to `session.Key`
//! (`simulator/session_manager.go`, govmomi v0.56.0). Every login (also
//! `CloneSession` and `ImpersonateUser`) posts a `UserLoginSessionEvent`
//! carrying that key as `sessionId`, and a logout removes the session from
//! `SessionManager.sessionList`. So the collector reads the login events
//! (`govc events -xml -type UserLoginSessionEvent`) and the current
//! session list (`govc session.ls -json`) every few seconds: vcsim keeps
//! only its last 1000 events, and polling keeps none from being missed.
//!
//! Not covered: vAPI (REST) session ids. vcsim keeps them in a map of its
//! vAPI handler with no way to list them and posts no event for them; the
//! scan finds them only by pattern (`vmware-api-session-id` with a value).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::SimError;
use crate::secrets_scan::{KnownSecret, SecretKind};
use crate::vcsim::{GovcTarget, VCenterSim};

/// vcsim's event history and the most `govc events -n` asks for.
const EVENT_PAGE: usize = 1000;

/// How to reach one simulator with govc, without borrowing it.
#[derive(Clone, Debug)]
struct Access {
    label: String,
    target: GovcTarget,
    username: String,
    password: String,
}

impl Access {
    fn of(vcenter: &VCenterSim) -> Access {
        Access {
            label: format!("{} vCenter {}", vcenter.role, vcenter.server),
            target: vcenter.govc_target(),
            username: vcenter.username.clone(),
            password: vcenter.password.clone(),
        }
    }

    fn govc(&self, args: &[&str]) -> Result<String, SimError> {
        self.target.govc_as(&self.username, &self.password, args)
    }

    /// The session ids of the login events and of the current sessions;
    /// whether the event page was full.
    fn session_ids(&self) -> Result<(BTreeSet<String>, bool), SimError> {
        let events = self.govc(&[
            "events",
            "-xml",
            "-n",
            &EVENT_PAGE.to_string(),
            "-type",
            "UserLoginSessionEvent",
        ])?;
        let from_events = element_texts(&events, "sessionId");
        let full = from_events.len() >= EVENT_PAGE;
        let mut ids: BTreeSet<String> = from_events.into_iter().collect();
        let list: serde_json::Value = serde_json::from_str(&self.govc(&["session.ls", "-json"])?)
            .map_err(|e| {
            SimError::Setup(format!("govc session.ls on the {}: {e}", self.label))
        })?;
        ids.extend(
            list["sessionList"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["key"].as_str().map(str::to_owned)),
        );
        Ok((ids, full))
    }
}

/// The text of every `<name>…</name>` element of an XML text.
pub fn element_texts(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        out.push(after[..end].trim().to_owned());
        rest = &after[end + close.len()..];
    }
    out
}

#[derive(Default)]
struct Seen {
    ids: BTreeMap<String, BTreeSet<String>>,
    gaps: BTreeSet<String>,
}

/// Collects the SOAP session ids of some vCenter simulators in the
/// background until dropped.
pub struct SessionCollector {
    vcenters: Vec<Access>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SessionCollector {
    /// Reads the session ids of `vcenters` now and then every `every`.
    pub fn start(vcenters: &[&VCenterSim], every: Duration) -> Result<SessionCollector, SimError> {
        let mut collector = SessionCollector {
            vcenters: vcenters.iter().map(|v| Access::of(v)).collect(),
            seen: Arc::new(Mutex::new(Seen::default())),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        collector.collect_now()?;
        let (vcenters, seen, stop) = (
            collector.vcenters.clone(),
            collector.seen.clone(),
            collector.stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("vmi-sim-sessions".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let next = Instant::now() + every;
                    while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    if !stop.load(Ordering::Relaxed) {
                        // A failed poll is retried at the next; the final
                        // collection reports its own errors.
                        let _ = collect(&vcenters, &seen);
                    }
                }
            })
            .map_err(|e| SimError::Setup(format!("cannot start the session collector: {e}")))?;
        collector.thread = Some(thread);
        Ok(collector)
    }

    /// Reads the session ids once more, now (call it at the end of a run).
    pub fn collect_now(&self) -> Result<(), SimError> {
        collect(&self.vcenters, &self.seen)
    }

    /// Every session id seen so far, as secrets to search for.
    pub fn secrets(&self) -> Vec<KnownSecret> {
        let Ok(seen) = self.seen.lock() else {
            return Vec::new();
        };
        seen.ids
            .iter()
            .flat_map(|(label, ids)| {
                ids.iter()
                    .map(|id| KnownSecret::new(SecretKind::VCenterSession, label, id))
            })
            .collect()
    }

    /// What the collector may have missed.
    pub fn gaps(&self) -> Vec<String> {
        self.seen
            .lock()
            .map(|s| s.gaps.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn collect(vcenters: &[Access], seen: &Mutex<Seen>) -> Result<(), SimError> {
    for vcenter in vcenters {
        let (ids, full) = vcenter.session_ids()?;
        if let Ok(mut seen) = seen.lock() {
            seen.ids
                .entry(vcenter.label.clone())
                .or_default()
                .extend(ids);
            if full {
                seen.gaps.insert(format!(
                    "the {} had {EVENT_PAGE} login events in one poll: older sessions may be missing",
                    vcenter.label
                ));
            }
        }
    }
    Ok(())
}

impl Drop for SessionCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_texts_reads_every_session_id() {
        let xml = "<UserLoginSessionEvent>\n  <key>37</key>\n  <sessionId>94a7a52b</sessionId>\n</UserLoginSessionEvent>\n\
                   <UserLoginSessionEvent><sessionId> 11e24b30 </sessionId></UserLoginSessionEvent>\n<sessionId>cut";
        assert_eq!(element_texts(xml, "sessionId"), ["94a7a52b", "11e24b30"]);
        assert!(element_texts("", "sessionId").is_empty());
    }
}
