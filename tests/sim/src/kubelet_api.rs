//! The kubelet's HTTPS API, as far as the API server calls it for
//! `pods/log`, and the container logs it serves.
//!
//! For `GET /api/v1/namespaces/{ns}/pods/{pod}/log` the kube-apiserver looks
//! up the pod's Node, takes its address of the first type in
//! `--kubelet-preferred-address-types` and the port in
//! `status.daemonEndpoints.kubeletEndpoint.Port`, and calls
//! `GET https://<address>:<port>/containerLogs/{ns}/{pod}/{container}?…`
//! with its kubelet client certificate. Every control plane of the harness
//! runs one such server (on `127.0.0.1`, a port of its own) and every Node
//! the harness creates points at it, so one server answers for all pods,
//! whichever stand-in "runs" them. It requires a client certificate signed
//! by the cluster's client CA, as a kubelet started with `--client-ca-file`.
//!
//! The server runs on a thread of its own with a Tokio runtime of its own
//! (the control plane outlives any test's runtime); the stand-ins that must
//! survive a test's blocking calls ([`crate::component_pods`]) run there too.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::SimError;

/// The address every Node of the harness reports as its `InternalIP`: the
/// API server connects there for `pods/log`.
pub const KUBELET_ADDRESS: &str = "127.0.0.1";

/// One line of a container's log and when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the container wrote it.
    pub at: Timestamp,
    /// The line, without its newline.
    pub text: String,
}

#[derive(Debug, Clone)]
enum Source {
    /// Lines the harness holds (component pods).
    Lines(Vec<LogLine>),
    /// A file a local process writes (step pods of the kubelet stand-in).
    /// Its lines have no times of their own: all carry the file's mtime.
    File(PathBuf),
}

#[derive(Debug, Clone)]
struct ContainerLog {
    source: Source,
    /// Whether a previous instance exists (`?previous=true` answers).
    restarted: bool,
}

type Key = (String, String, String);

/// The container logs of a control plane's pods, as the kubelet API serves
/// them. Cheap to clone; every clone is the same store.
#[derive(Debug, Clone, Default)]
pub struct ContainerLogs {
    logs: Arc<Mutex<HashMap<Key, ContainerLog>>>,
}

fn key(namespace: &str, pod: &str, container: &str) -> Key {
    (namespace.to_owned(), pod.to_owned(), container.to_owned())
}

impl ContainerLogs {
    /// Appends `line` to a container's log, written now.
    pub fn append(&self, namespace: &str, pod: &str, container: &str, line: &str) {
        self.append_at(namespace, pod, container, Timestamp::now(), line);
    }

    /// Appends `line` to a container's log, written at `at`.
    pub fn append_at(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        at: Timestamp,
        line: &str,
    ) {
        if let Ok(mut logs) = self.logs.lock() {
            let entry = logs
                .entry(key(namespace, pod, container))
                .or_insert_with(|| ContainerLog {
                    source: Source::Lines(Vec::new()),
                    restarted: false,
                });
            let text = line.trim_end_matches('\n').to_owned();
            match &mut entry.source {
                Source::Lines(lines) => lines.push(LogLine { at, text }),
                source @ Source::File(_) => *source = Source::Lines(vec![LogLine { at, text }]),
            }
        }
    }

    /// Serves a container's log from `path`, a file a local process writes.
    pub fn attach_file(&self, namespace: &str, pod: &str, container: &str, path: PathBuf) {
        if let Ok(mut logs) = self.logs.lock() {
            logs.insert(
                key(namespace, pod, container),
                ContainerLog {
                    source: Source::File(path),
                    restarted: false,
                },
            );
        }
    }

    /// Marks whether a container has a previous instance (a crash-looping
    /// one), so that `previous=true` answers with its log instead of 400.
    pub fn set_restarted(&self, namespace: &str, pod: &str, container: &str, restarted: bool) {
        if let Ok(mut logs) = self.logs.lock()
            && let Some(log) = logs.get_mut(&key(namespace, pod, container))
        {
            log.restarted = restarted;
        }
    }

    /// Forgets every log of a pod (it was deleted).
    pub fn forget_pod(&self, namespace: &str, pod: &str) {
        if let Ok(mut logs) = self.logs.lock() {
            logs.retain(|(ns, name, _), _| !(ns == namespace && name == pod));
        }
    }

    /// A container's log lines, oldest first, when the store has its log.
    pub fn lines(&self, namespace: &str, pod: &str, container: &str) -> Option<Vec<LogLine>> {
        let log = self
            .logs
            .lock()
            .ok()?
            .get(&key(namespace, pod, container))
            .cloned()?;
        Some(match log.source {
            Source::Lines(lines) => lines,
            Source::File(path) => file_lines(&path),
        })
    }

    fn restarted(&self, namespace: &str, pod: &str, container: &str) -> bool {
        self.logs
            .lock()
            .ok()
            .and_then(|logs| {
                logs.get(&key(namespace, pod, container))
                    .map(|l| l.restarted)
            })
            .unwrap_or(false)
    }

    fn has_pod(&self, namespace: &str, pod: &str) -> bool {
        self.logs
            .lock()
            .map(|logs| {
                logs.keys()
                    .any(|(ns, name, _)| ns == namespace && name == pod)
            })
            .unwrap_or(false)
    }
}

/// Lines of a log file, each stamped with the file's last modification.
fn file_lines(path: &std::path::Path) -> Vec<LogLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let at = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| Timestamp::try_from(t).ok())
        .unwrap_or_else(Timestamp::now);
    text.lines()
        .map(|line| LogLine {
            at,
            text: line.to_owned(),
        })
        .collect()
}

/// The kubelet log options the API server forwards (`PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only lines written at or after this time (`sinceSeconds`/`sinceTime`).
    pub since: Option<Timestamp>,
    /// Only the last lines (`tailLines`).
    pub tail_lines: Option<usize>,
    /// At most this many bytes (`limitBytes`), cut mid-line as the kubelet does.
    pub limit_bytes: Option<usize>,
    /// Each line prefixed with its RFC 3339 time, 9 fraction digits (`timestamps`).
    pub timestamps: bool,
    /// The previous instance's log (`previous`).
    pub previous: bool,
}

impl LogQuery {
    /// Parses the query string of a `/containerLogs` request; `now` anchors
    /// `sinceSeconds`.
    pub fn parse(query: &str, now: Timestamp) -> Result<LogQuery, String> {
        let mut out = LogQuery::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            let number = || {
                value
                    .parse::<i64>()
                    .map_err(|_| format!("{name}: not a number: {value}"))
            };
            match name {
                "sinceSeconds" => {
                    let seconds = number()?;
                    out.since = now.checked_sub(SignedDuration::from_secs(seconds)).ok();
                }
                "sinceTime" => {
                    out.since = Some(
                        value
                            .parse::<Timestamp>()
                            .map_err(|e| format!("sinceTime {value}: {e}"))?,
                    );
                }
                // `tail` is the kubelet's older spelling; "all" means no limit.
                "tailLines" | "tail" if value != "all" => {
                    out.tail_lines = Some(usize::try_from(number()?).unwrap_or(0));
                }
                "limitBytes" => out.limit_bytes = Some(usize::try_from(number()?).unwrap_or(0)),
                "timestamps" => out.timestamps = value == "true" || value == "1",
                "previous" => out.previous = value == "true" || value == "1",
                // follow: what exists is returned and the response ends.
                _ => {}
            }
        }
        Ok(out)
    }

    /// Renders `lines` as the kubelet does: the last `tailLines` lines, then
    /// those not older than `since`, each with its time when asked, cut at
    /// `limitBytes`.
    pub fn render(&self, lines: &[LogLine]) -> String {
        let start = self
            .tail_lines
            .map_or(0, |tail| lines.len().saturating_sub(tail));
        let mut out = String::new();
        for line in &lines[start..] {
            if self.since.is_some_and(|since| line.at < since) {
                continue;
            }
            if self.timestamps {
                out.push_str(&rfc3339_nano_fixed(line.at));
                out.push(' ');
            }
            out.push_str(&line.text);
            out.push('\n');
        }
        if let Some(limit) = self.limit_bytes
            && out.len() > limit
        {
            let mut cut = limit;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }
}

/// A time as the kubelet prints it with `timestamps=true`
/// (`RFC3339NanoFixed`, in UTC).
pub fn rfc3339_nano_fixed(at: Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        at.strftime("%Y-%m-%dT%H:%M:%S"),
        at.subsec_nanosecond()
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `status.addresses` and `status.daemonEndpoints` of a Node whose pods the
/// kubelet API on `port` answers for, with `hostname` as its `Hostname`
/// address ([`KubeletApi::node_status`] for stand-ins that keep only the
/// port).
pub fn node_status(port: u16, hostname: &str) -> serde_json::Value {
    serde_json::json!({
        "addresses": [{"type": "InternalIP", "address": KUBELET_ADDRESS},
                      {"type": "Hostname", "address": hostname}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
    })
}

/// A control plane's kubelet API server and the runtime it runs on.
#[derive(Debug)]
pub struct KubeletApi {
    port: u16,
    logs: ContainerLogs,
    runtime: tokio::runtime::Handle,
    shutdown: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl KubeletApi {
    /// Starts the server on `127.0.0.1` (a free port) with the serving
    /// certificate `cert_pem`/`key_pem`, accepting only clients whose
    /// certificate `client_ca_pem` signed (the API server's
    /// `--kubelet-client-certificate`).
    pub fn start(
        cert_pem: &str,
        key_pem: &str,
        client_ca_pem: &str,
    ) -> Result<KubeletApi, SimError> {
        let tls = tls_config(cert_pem, key_pem, client_ca_pem)?;
        let listener = std::net::TcpListener::bind((KUBELET_ADDRESS, 0))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| {
                SimError::Setup(format!(
                    "kubelet API: cannot listen on {KUBELET_ADDRESS}: {e}"
                ))
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| SimError::Setup(format!("kubelet API: no local address: {e}")))?
            .port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                SimError::Setup(format!("kubelet API: cannot start a Tokio runtime: {e}"))
            })?;
        let handle = runtime.handle().clone();
        let logs = ContainerLogs::default();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = logs.clone();
        std::thread::Builder::new()
            .name("vmi-sim-kubelet-api".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            tokio::select! {
                                () = serve(listener, tls, served) => {}
                                _ = stopped => {}
                            }
                        }
                        Err(err) => eprintln!("vmi-sim kubelet API: {err}"),
                    }
                });
            })
            .map_err(|e| SimError::Setup(format!("kubelet API: cannot start its thread: {e}")))?;
        Ok(KubeletApi {
            port,
            logs,
            runtime: handle,
            shutdown: Mutex::new(Some(shutdown)),
        })
    }

    /// The port Nodes report in `status.daemonEndpoints.kubeletEndpoint.Port`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address Nodes report as `InternalIP`.
    pub fn address(&self) -> &'static str {
        KUBELET_ADDRESS
    }

    /// The logs the server answers from.
    pub fn logs(&self) -> &ContainerLogs {
        &self.logs
    }

    /// `status.addresses` and `status.daemonEndpoints` of a Node whose pods
    /// this server answers for, with `hostname` as its `Hostname` address.
    pub fn node_status(&self, hostname: &str) -> serde_json::Value {
        node_status(self.port, hostname)
    }

    /// The runtime the server runs on, for stand-ins that must live as long
    /// as the control plane rather than a test's runtime.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Stops the server and every task on its runtime.
    pub fn stop(&self) {
        if let Some(shutdown) = self.shutdown.lock().ok().and_then(|mut s| s.take()) {
            let _ = shutdown.send(());
        }
    }
}

fn tls_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, SimError> {
    let error = |what: &str, e: &dyn std::fmt::Display| {
        SimError::Setup(format!("kubelet API: {what}: {e}"))
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error("serving certificate", &e))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| error("serving key", &e))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| error("client CA", &e))?;
        roots.add(ca).map_err(|e| error("client CA", &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| error("client verifier", &e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error("TLS versions", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| error("serving certificate", &e))?;
    // No ALPN: the API server's Go client then speaks HTTP/1.1.
    Ok(Arc::new(config))
}

async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    logs: ContainerLogs,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: try again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (acceptor, logs) = (acceptor.clone(), logs.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let response = answer(
                        &logs,
                        request.uri().path(),
                        request.uri().query().unwrap_or(""),
                    );
                    async move { Ok::<_, Infallible>(response) }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// The kubelet's answer to `GET {path}?{query}`.
fn answer(logs: &ContainerLogs, path: &str, query: &str) -> Response<Full<Bytes>> {
    let parts: Vec<String> = path.split('/').map(percent_decode).collect();
    let [_, root, namespace, pod, container] = parts.as_slice() else {
        return text(
            StatusCode::NOT_FOUND,
            format!("404 page not found: {path}\n"),
        );
    };
    if root != "containerLogs" {
        return text(
            StatusCode::NOT_FOUND,
            format!("404 page not found: {path}\n"),
        );
    }
    let query = match LogQuery::parse(query, Timestamp::now()) {
        Ok(query) => query,
        Err(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                r#"{"message": "Unable to decode query."}"#.into(),
            );
        }
    };
    let Some(lines) = logs.lines(namespace, pod, container) else {
        // The kubelet's messages for an unknown pod and container.
        return if logs.has_pod(namespace, pod) {
            text(
                StatusCode::NOT_FOUND,
                format!("container {container:?} not found in pod {pod:?}"),
            )
        } else {
            text(StatusCode::NOT_FOUND, format!("pod {pod:?} does not exist"))
        };
    };
    if query.previous && !logs.restarted(namespace, pod, container) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("previous terminated container {container:?} in pod {pod:?} not found"),
        );
    }
    text(StatusCode::OK, query.render(&lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn lines() -> Vec<LogLine> {
        ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, t)| LogLine {
                at: at(&format!("2026-10-01T10:00:0{i}Z")),
                text: (*t).into(),
            })
            .collect()
    }

    #[test]
    fn queries_filter_as_the_kubelet_does() {
        let now = at("2026-10-01T10:00:03Z");
        let q = |s: &str| LogQuery::parse(s, now).unwrap().render(&lines());
        assert_eq!(q(""), "a\nb\nc\n");
        assert_eq!(q("sinceSeconds=2"), "b\nc\n");
        assert_eq!(q("sinceTime=2026-10-01T10%3A00%3A02Z"), "c\n");
        assert_eq!(q("tailLines=2"), "b\nc\n");
        assert_eq!(q("tail=all"), "a\nb\nc\n");
        assert_eq!(q("limitBytes=3"), "a\nb");
        assert_eq!(
            q("timestamps=true&tailLines=1"),
            "2026-10-01T10:00:02.000000000Z c\n"
        );
        assert!(LogQuery::parse("sinceSeconds=x", now).is_err());
    }

    #[test]
    fn unknown_pods_and_containers_are_404() {
        let logs = ContainerLogs::default();
        logs.append("ns", "p", "c", "hello");
        let status = |path: &str| answer(&logs, path, "").status();
        assert_eq!(status("/containerLogs/ns/p/c"), StatusCode::OK);
        assert_eq!(status("/containerLogs/ns/p/other"), StatusCode::NOT_FOUND);
        assert_eq!(status("/containerLogs/ns/q/c"), StatusCode::NOT_FOUND);
        assert_eq!(status("/pods"), StatusCode::NOT_FOUND);
        assert_eq!(
            answer(&logs, "/containerLogs/ns/p/c", "previous=true").status(),
            StatusCode::BAD_REQUEST
        );
    }
}
