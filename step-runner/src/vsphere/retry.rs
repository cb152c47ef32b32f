//! What the client does when vCenter answers slowly or the connection
//! drops: every request has a limit, calls that only read are tried again
//! with backoff, and calls that change something are sent once; when their
//! answer is lost the error says that the outcome is unknown.
//!
//! Which call is which is decided here, in [`retry_safety`], and nowhere
//! else; the round-trip functions (SOAP, vAPI, datastore files) only report
//! how an attempt failed ([`Failure`]) and ask [`Attempts`] what to do.

use std::time::Duration;

use super::error::ErrorKind;

/// The limits and the retry policy of one vCenter connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Opening a connection: TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// One SOAP or vAPI exchange, from sending the request to the last byte
    /// of the answer (connecting included).
    pub call_timeout: Duration,
    /// A datastore file transfer: the longest time without a byte moving
    /// (or, once everything is sent, without the answer). A slow transfer
    /// that keeps moving never times out.
    pub transfer_stall_timeout: Duration,
    /// Attempts of a call that is safe to repeat (1: no retry).
    pub attempts: u32,
    /// The pause before the second attempt; it doubles for each further one.
    pub backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(120),
            transfer_stall_timeout: Duration::from_secs(60),
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Whether a call may be sent again when its answer did not come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safety {
    /// It only reads (or its repeat is invisible): tried again with backoff
    /// on a refused, reset or timed-out connection and on HTTP 502/503/504.
    Retry,
    /// It creates, changes, deletes or starts something: sent once. It is
    /// sent again only when no connection could be made (nothing left this
    /// process); when the request may have reached vCenter and no answer
    /// came, the error is [`ErrorKind::OutcomeUnknown`].
    Once,
    /// It continues a server-side cursor (`ContinueRetrievePropertiesEx`):
    /// a repeat would skip a page, so it is not repeated; the whole read
    /// starts over instead.
    RestartRead,
}

/// The method name of the vSAN version document read before CNS calls.
pub(crate) const VSAN_VERSIONS: &str = "GET /sdk/vsanServiceVersions.xml";
/// The method names of datastore file transfers.
pub(crate) const FILE_HEAD: &str = "HEAD /folder";
/// See [`FILE_HEAD`].
pub(crate) const FILE_GET: &str = "GET /folder";
/// See [`FILE_HEAD`].
pub(crate) const FILE_PUT: &str = "PUT /folder";

/// Whether `method` (a SOAP method, a vAPI operation such as
/// `tagging.category.create`, or a datastore file verb such as
/// `GET /folder`) may be sent again. A name not listed is sent once.
pub fn retry_safety(method: &str) -> Safety {
    classified(method).unwrap_or(Safety::Once)
}

/// The classification of every method the client sends; `None` for a name
/// it does not know.
fn classified(method: &str) -> Option<Safety> {
    use Safety::{Once, RestartRead, Retry};
    Some(match method {
        // SOAP reads.
        "RetrieveServiceContent"
        | "RetrievePropertiesEx"
        | "RetrieveVStorageObject"
        | "ListVStorageObject"
        | "FindByInventoryPath"
        | "FindByUuid"
        | "FindChild"
        | "HasUserPrivilegeOnEntities"
        | "CurrentTime"
        | "CnsQueryVolume" => Retry,
        // Views belong to the session, are seen by no one else and end with
        // it: a second view, or destroying one already destroyed
        // (ManagedObjectNotFound, logged), changes nothing that matters.
        "CreateContainerView" | "DestroyView" => Retry,
        "ContinueRetrievePropertiesEx" => RestartRead,
        // Sessions: a repeated Login could open a second session; a Logout
        // that may have happened is not worth a second one.
        "Login" | "Logout" => Once,
        // SOAP changes and tasks.
        "CreateFolder"
        | "CreateVM_Task"
        | "PowerOffVM_Task"
        | "Destroy_Task"
        | "ReconfigVM_Task"
        | "UnregisterVM"
        | "RelocateVM_Task"
        | "CreateDisk_Task"
        | "RegisterDisk"
        | "DeleteVStorageObject_Task"
        | "AttachDisk_Task"
        | "DetachDisk_Task"
        | "CnsCreateVolume"
        | "CnsDeleteVolume" => Once,
        // Plain HTTP reads.
        VSAN_VERSIONS | FILE_HEAD | FILE_GET => Retry,
        // A PUT consumes its source stream, so it cannot be sent again.
        FILE_PUT => Once,
        // vAPI reads (the list operations are POSTs that read).
        "tagging.category.list"
        | "tagging.category.get"
        | "tagging.tag.list-tags-for-category"
        | "tagging.tag.get"
        | "tagging.tag-association.list-attached-tags" => Retry,
        // vAPI changes and sessions.
        "tagging.category.create"
        | "tagging.category.delete"
        | "tagging.tag.create"
        | "tagging.tag.delete"
        | "tagging.tag-association.attach"
        | "tagging.tag-association.detach"
        | "session.create"
        | "session.delete" => Once,
        _ => return None,
    })
}

/// How one attempt of a call failed, as far as trying again is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// vCenter answered (a fault, a refusal, an unreadable answer), or the
    /// TLS trust failed: trying again would change nothing.
    Final(ErrorKind),
    /// No connection could be made (refused, reset or timed out while
    /// connecting or in the TLS handshake): the request never left.
    NotSent(ErrorKind),
    /// The request may have reached vCenter, but no complete answer came
    /// back (reset, closed, timed out, or a gateway's 502/503/504).
    Lost(ErrorKind),
}

impl Failure {
    /// A failed reqwest exchange: `NotSent` when it failed while connecting,
    /// `Lost` after that; a TLS failure is `Final`. A timeout names the
    /// limit that ran out: the connect limit, or `answer_limit`.
    pub(crate) fn of(
        err: &reqwest::Error,
        options: &ClientOptions,
        answer_limit: Duration,
    ) -> Self {
        let kind = transport_kind(err);
        if matches!(kind, ErrorKind::Tls(_)) {
            return Failure::Final(kind);
        }
        if err.is_connect() {
            let kind = if err.is_timeout() {
                timeout("connection", options.connect_timeout)
            } else {
                kind
            };
            return Failure::NotSent(kind);
        }
        if err.is_timeout() {
            return Failure::Lost(timeout("complete answer", answer_limit));
        }
        Failure::Lost(kind)
    }

    /// An HTTP status that came without an answer of vCenter's own: a
    /// gateway's 502, 503 or 504 is `Lost`, anything else `Final`.
    pub(crate) fn of_status(status: u16, kind: ErrorKind) -> Self {
        match status {
            502..=504 => Failure::Lost(kind),
            _ => Failure::Final(kind),
        }
    }
}

/// A timeout waiting for `what` after `limit`, for one attempt.
pub(crate) fn timeout(what: &str, limit: Duration) -> ErrorKind {
    ErrorKind::Timeout {
        waiting_for: what.to_owned(),
        limit_ms: limit.as_millis() as u64,
        attempts: 1,
    }
}

/// A failed HTTP exchange as an error kind: a TLS failure when the cause
/// chain says so, a transport failure otherwise, with the whole chain.
pub(crate) fn transport_kind(err: &reqwest::Error) -> ErrorKind {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    let mut chain = Vec::new();
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    let text = chain.join(": ");
    if chain.iter().any(|c| {
        c.contains("certificate") || c.contains("thumbprint") || c.contains("InvalidCertificate")
    }) {
        ErrorKind::Tls(text)
    } else {
        ErrorKind::Transport(text)
    }
}

/// The attempts of one call: counts them, decides after each failure
/// whether another is due, waits the backoff, and logs why.
#[derive(Debug)]
pub(crate) struct Attempts<'a> {
    options: &'a ClientOptions,
    server: &'a str,
    method: &'a str,
    safety: Safety,
    made: u32,
    pause: Duration,
}

impl<'a> Attempts<'a> {
    /// The attempts of `method` on vCenter `server`.
    pub(crate) fn new(options: &'a ClientOptions, server: &'a str, method: &'a str) -> Self {
        Attempts {
            options,
            server,
            method,
            safety: retry_safety(method),
            made: 0,
            pause: options.backoff,
        }
    }

    /// Counts an attempt about to be made; returns its number (from 1).
    pub(crate) fn begin(&mut self) -> u32 {
        self.made += 1;
        self.made
    }

    /// After a failed attempt: `Ok` (after the backoff, logged at warn) when
    /// another attempt is due, otherwise the error to report.
    pub(crate) async fn after(&mut self, failure: Failure) -> Result<(), ErrorKind> {
        let again = match (&failure, self.safety) {
            (Failure::Final(_), _) => false,
            (Failure::NotSent(_), _) => true,
            (Failure::Lost(_), Safety::Retry) => true,
            (Failure::Lost(_), Safety::Once | Safety::RestartRead) => false,
        };
        if !again || self.made >= self.options.attempts.max(1) {
            return Err(self.give_up(failure));
        }
        let cause = match &failure {
            Failure::Final(kind) | Failure::NotSent(kind) | Failure::Lost(kind) => kind,
        };
        tracing::warn!(
            vcenter = %self.server,
            method = %self.method,
            attempt = self.made,
            attempts = self.options.attempts,
            retry_in_ms = self.pause.as_millis() as u64,
            cause = %cause,
            "vCenter call failed; trying again"
        );
        tokio::time::sleep(self.pause).await;
        self.pause = self.pause.saturating_mul(2);
        Ok(())
    }

    /// The error to report for `failure` when no other attempt follows.
    pub(crate) fn give_up(&self, failure: Failure) -> ErrorKind {
        match failure {
            Failure::Final(kind) => kind,
            Failure::NotSent(kind) => with_attempts(kind, self.made),
            Failure::Lost(kind) => match self.safety {
                Safety::Once => ErrorKind::OutcomeUnknown {
                    cause: lost_cause(&kind),
                },
                Safety::Retry | Safety::RestartRead => with_attempts(kind, self.made),
            },
        }
    }
}

/// What happened to a request whose answer was lost, for
/// [`ErrorKind::OutcomeUnknown`].
pub(crate) fn lost_cause(kind: &ErrorKind) -> String {
    format!("the request was sent, then {}", what_failed(kind))
}

/// A connection failure in a few words, to go inside another message.
pub(crate) fn what_failed(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::Timeout {
            waiting_for,
            limit_ms,
            attempts,
        } => format!(
            "no {waiting_for} came within {}{}",
            super::error::duration(*limit_ms),
            if *attempts > 1 {
                format!(" ({attempts} attempts)")
            } else {
                String::new()
            }
        ),
        ErrorKind::Http { status } => {
            format!("a gateway answered HTTP {status} instead of vCenter")
        }
        ErrorKind::Transport(reason) => format!("the connection failed: {reason}"),
        other => other.to_string(),
    }
}

/// `kind` saying how many attempts were made.
fn with_attempts(kind: ErrorKind, made: u32) -> ErrorKind {
    match kind {
        ErrorKind::Timeout {
            waiting_for,
            limit_ms,
            ..
        } => ErrorKind::Timeout {
            waiting_for,
            limit_ms,
            attempts: made,
        },
        ErrorKind::Transport(reason) if made > 1 => {
            ErrorKind::Transport(format!("{reason} ({made} attempts)"))
        }
        other => other,
    }
}

/// Whether `kind` says the connection failed rather than vCenter refusing:
/// what a read that is started over may get past.
pub(crate) fn is_connection_failure(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Timeout { .. } | ErrorKind::Transport(_) | ErrorKind::Http { status: 502..=504 }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SOAP method names the client sends, found in its sources the
    /// way `grep` would: the string given to each round-trip function.
    fn sent_method_names() -> Vec<String> {
        let sources = [
            include_str!("soap.rs"),
            include_str!("properties.rs"),
            include_str!("vm.rs"),
            include_str!("fcd.rs"),
            include_str!("cns.rs"),
            include_str!("relocate.rs"),
            include_str!("tagging.rs"),
            include_str!("datastore.rs"),
        ];
        let callers = [
            ".call(\"",
            ".call_all(\"",
            ".task(\"",
            "call_on(Service::Vim,\"",
            "call_on(Service::Cns,\"",
            "call_on(service,\"",
            "round_trip(Service::Vim,\"",
            "send(Service::Vim,\"",
            "cns_task(\"",
            "constMETHOD:&str=\"",
            "request(\"",
            ".send(\"",
            "Attempts::new(&self.options,&self.server,\"",
        ];
        let mut names = Vec::new();
        for source in sources {
            // Whitespace removed, so calls that rustfmt spread over lines match.
            let flat: String = source.split_whitespace().collect();
            for caller in callers {
                for (at, _) in flat.match_indices(caller) {
                    let rest = &flat[at + caller.len()..];
                    if let Some(end) = rest.find('"') {
                        names.push(rest[..end].to_owned());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn every_method_the_client_sends_is_classified() {
        let names = sent_method_names();
        assert!(
            names.len() >= 35,
            "the scan found too few names, so it is broken: {names:?}"
        );
        let unclassified: Vec<&String> = names
            .iter()
            .filter(|name| classified(name).is_none())
            .collect();
        assert!(
            unclassified.is_empty(),
            "methods without a retry decision: {unclassified:?}"
        );
    }

    #[test]
    fn reads_are_retried_and_changes_are_sent_once() {
        use Safety::{Once, RestartRead, Retry};
        let expected = [
            ("RetrieveServiceContent", Retry),
            ("RetrievePropertiesEx", Retry),
            ("ContinueRetrievePropertiesEx", RestartRead),
            ("RetrieveVStorageObject", Retry),
            ("ListVStorageObject", Retry),
            ("FindByInventoryPath", Retry),
            ("FindByUuid", Retry),
            ("FindChild", Retry),
            ("HasUserPrivilegeOnEntities", Retry),
            ("CurrentTime", Retry),
            ("CnsQueryVolume", Retry),
            ("CreateContainerView", Retry),
            ("DestroyView", Retry),
            ("Login", Once),
            ("Logout", Once),
            ("CreateFolder", Once),
            ("CreateVM_Task", Once),
            ("PowerOffVM_Task", Once),
            ("Destroy_Task", Once),
            ("ReconfigVM_Task", Once),
            ("UnregisterVM", Once),
            ("RelocateVM_Task", Once),
            ("CreateDisk_Task", Once),
            ("RegisterDisk", Once),
            ("DeleteVStorageObject_Task", Once),
            ("AttachDisk_Task", Once),
            ("DetachDisk_Task", Once),
            ("CnsCreateVolume", Once),
            ("CnsDeleteVolume", Once),
            (VSAN_VERSIONS, Retry),
            (FILE_HEAD, Retry),
            (FILE_GET, Retry),
            (FILE_PUT, Once),
            ("tagging.category.list", Retry),
            ("tagging.category.get", Retry),
            ("tagging.tag.list-tags-for-category", Retry),
            ("tagging.tag.get", Retry),
            ("tagging.tag-association.list-attached-tags", Retry),
            ("tagging.category.create", Once),
            ("tagging.category.delete", Once),
            ("tagging.tag.create", Once),
            ("tagging.tag.delete", Once),
            ("tagging.tag-association.attach", Once),
            ("tagging.tag-association.detach", Once),
            ("session.create", Once),
            ("session.delete", Once),
        ];
        for (method, safety) in expected {
            assert_eq!(retry_safety(method), safety, "{method}");
        }
        for name in sent_method_names() {
            assert!(
                expected.iter().any(|(method, _)| *method == name),
                "{name} is sent but not in this table"
            );
        }
        assert_eq!(
            retry_safety("SomethingNew_Task"),
            Once,
            "unknown: sent once"
        );
    }

    fn options() -> ClientOptions {
        ClientOptions {
            backoff: Duration::from_millis(1),
            ..ClientOptions::default()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lost_read_is_tried_three_times_then_reported_with_its_attempts() {
        let options = options();
        let mut attempts = Attempts::new(&options, "vc", "FindByInventoryPath");
        let lost = || Failure::Lost(timeout("complete answer", Duration::from_secs(2)));
        attempts.begin();
        attempts.after(lost()).await.unwrap();
        attempts.begin();
        attempts.after(lost()).await.unwrap();
        attempts.begin();
        let kind = attempts.after(lost()).await.unwrap_err();
        assert_eq!(
            kind,
            ErrorKind::Timeout {
                waiting_for: "complete answer".into(),
                limit_ms: 2000,
                attempts: 3
            }
        );
        assert!(
            kind.to_string().contains("within 2 s (3 attempts)"),
            "{kind}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lost_change_is_not_repeated_and_its_outcome_is_unknown() {
        let options = options();
        let mut attempts = Attempts::new(&options, "vc", "CreateFolder");
        attempts.begin();
        // Not connected: nothing was sent, so it is sent again.
        attempts
            .after(Failure::NotSent(ErrorKind::Transport("refused".into())))
            .await
            .unwrap();
        attempts.begin();
        let kind = attempts
            .after(Failure::Lost(ErrorKind::Transport("reset".into())))
            .await
            .unwrap_err();
        assert!(
            matches!(&kind, ErrorKind::OutcomeUnknown { cause } if cause.contains("reset")),
            "{kind:?}"
        );
        assert!(kind.to_string().contains("Run the step again"), "{kind}");
        // A fault is vCenter's answer: never repeated.
        let mut attempts = Attempts::new(&options, "vc", "FindByInventoryPath");
        attempts.begin();
        let fault = ErrorKind::ManagedObjectNotFound;
        assert_eq!(
            attempts.after(Failure::Final(fault.clone())).await,
            Err(fault)
        );
    }

    #[test]
    fn gateway_statuses_are_lost_answers() {
        let http = |status| ErrorKind::Http { status };
        assert_eq!(Failure::of_status(503, http(503)), Failure::Lost(http(503)));
        assert_eq!(
            Failure::of_status(500, http(500)),
            Failure::Final(http(500))
        );
        assert_eq!(
            Failure::of_status(404, http(404)),
            Failure::Final(http(404))
        );
    }
}
