//! Datastore files over vCenter's HTTPS file service (`/folder/<path>`):
//! streamed download and upload with byte counts and a SHA-256 of what
//! passed, so a copied disk can be checked against its source.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::{ErrorKind, VSphereError};
use super::retry::{Attempts, FILE_GET, FILE_HEAD, FILE_PUT, Failure, timeout};
use super::soap::VCenter;

/// How much of a file is read from an upload's source at a time: small
/// enough that a slow but moving upload shows progress often.
const UPLOAD_CHUNK: usize = 256 << 10;

/// A file on a datastore of a datacenter: `[datastore] path` in `datacenter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreFile {
    /// Inventory path of the datacenter (its name for a top-level one).
    pub datacenter: String,
    /// Datastore name.
    pub datastore: String,
    /// Path inside the datastore, e.g. `fcd/1b2c.vmdk`.
    pub path: String,
}

impl DatastoreFile {
    /// The file named by a datastore path (`[LocalDS_0] fcd/x.vmdk`) in
    /// `datacenter`; `None` when the path has no `[datastore]` prefix.
    pub fn parse(datacenter: &str, datastore_path: &str) -> Option<DatastoreFile> {
        let rest = datastore_path.trim().strip_prefix('[')?;
        let (datastore, path) = rest.split_once(']')?;
        Some(DatastoreFile {
            datacenter: datacenter.to_owned(),
            datastore: datastore.to_owned(),
            path: path.trim().to_owned(),
        })
    }

    /// The datastore path, `[datastore] path`.
    pub fn datastore_path(&self) -> String {
        format!("[{}] {}", self.datastore, self.path)
    }

    /// The file's URL on the vCenter at `base` (`https://server[:port]`).
    pub fn url(&self, base: &str) -> Result<reqwest::Url, String> {
        let mut url = reqwest::Url::parse(base).map_err(|e| format!("{base}: {e}"))?;
        url.path_segments_mut()
            .map_err(|()| format!("{base} cannot carry a path"))?
            .clear()
            .push("folder")
            .extend(self.path.split('/').filter(|s| !s.is_empty()));
        url.query_pairs_mut()
            .append_pair("dcPath", self.datacenter.trim_start_matches('/'))
            .append_pair("dsName", &self.datastore);
        Ok(url)
    }
}

impl std::fmt::Display for DatastoreFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in {}", self.datastore_path(), self.datacenter)
    }
}

/// What went through a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes moved.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of those bytes.
    pub sha256: String,
}

fn hex(digest: ring::digest::Digest) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// When a byte of a transfer last moved.
#[derive(Debug, Clone)]
struct Progress {
    started: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            started: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Something moved now.
    fn tick(&self) {
        self.last_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long nothing has moved.
    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}
/// `kind` of a transfer that failed after `bytes` were already passed on.
fn after_bytes(kind: ErrorKind, bytes: u64) -> ErrorKind {
    match kind {
        ErrorKind::Timeout {
            waiting_for,
            limit_ms,
            attempts,
        } => ErrorKind::Timeout {
            waiting_for: format!("{waiting_for} after {bytes} bytes"),
            limit_ms,
            attempts,
        },
        ErrorKind::Transport(reason) => {
            ErrorKind::Transport(format!("{reason} (after {bytes} bytes)"))
        }
        other => other,
    }
}

impl VCenter {
    fn file_error(&self, verb: &str, file: &DatastoreFile, kind: ErrorKind) -> VSphereError {
        VSphereError {
            vcenter: self.server().to_owned(),
            method: format!("{verb} /folder"),
            object: Some(file.to_string()),
            kind,
        }
    }

    async fn file_request(
        &self,
        method: reqwest::Method,
        file: &DatastoreFile,
    ) -> Result<reqwest::RequestBuilder, VSphereError> {
        let url = file
            .url(self.base_url())
            .map_err(|e| self.file_error(method.as_str(), file, ErrorKind::Unexpected(e)))?;
        let mut request = self.http().request(method, url);
        if let Some(cookie) = self.session_cookie().await {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        self.count_round_trip();
        Ok(request)
    }

    /// The size of `file`, or `None` when it does not exist.
    pub async fn file_size(&self, file: &DatastoreFile) -> Result<Option<u64>, VSphereError> {
        let options = self.options();
        let mut attempts = Attempts::new(options, self.server(), FILE_HEAD);
        loop {
            attempts.begin();
            let started = Instant::now();
            let sent = self
                .file_request(reqwest::Method::HEAD, file)
                .await?
                .timeout(options.call_timeout)
                .send()
                .await;
            let failure = match sent {
                Err(err) => Failure::of(&err, options, options.call_timeout),
                Ok(response) => {
                    let status = response.status().as_u16();
                    log_transfer(self.server(), "HEAD", file, status, 0, started);
                    match status {
                        200 => {
                            return Ok(response
                                .headers()
                                .get(reqwest::header::CONTENT_LENGTH)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse().ok()));
                        }
                        404 => return Ok(None),
                        status => Failure::of_status(status, file_status_kind(status)),
                    }
                }
            };
            attempts
                .after(failure)
                .await
                .map_err(|kind| self.file_error("HEAD", file, kind))?;
        }
    }

    /// Streams `file` into `sink` and returns what passed. A missing file is
    /// a `FileNotFound` fault. The download is tried again while nothing has
    /// reached `sink`; it fails when no byte moves for
    /// [`super::retry::ClientOptions::transfer_stall_timeout`].
    pub async fn download<W: AsyncWrite + Unpin>(
        &self,
        file: &DatastoreFile,
        sink: &mut W,
    ) -> Result<Transfer, VSphereError> {
        let mut attempts = Attempts::new(self.options(), self.server(), FILE_GET);
        loop {
            attempts.begin();
            let mut written = 0;
            let failure = match self.download_once(file, sink, &mut written).await {
                Ok(transfer) => return Ok(transfer),
                // What reached the sink cannot be taken back: no retry.
                Err(failure) if written > 0 => {
                    let kind = attempts.give_up(failure);
                    Failure::Final(after_bytes(kind, written))
                }
                Err(failure) => failure,
            };
            attempts
                .after(failure)
                .await
                .map_err(|kind| self.file_error("GET", file, kind))?;
        }
    }

    /// One attempt of [`VCenter::download`]; `written` counts the bytes
    /// passed on to `sink`.
    async fn download_once<W: AsyncWrite + Unpin>(
        &self,
        file: &DatastoreFile,
        sink: &mut W,
        written: &mut u64,
    ) -> Result<Transfer, Failure> {
        let options = self.options();
        let stall = options.transfer_stall_timeout;
        let stalled = || Failure::Lost(timeout("transfer progress", stall));
        let started = Instant::now();
        let request = self
            .file_request(reqwest::Method::GET, file)
            .await
            .map_err(|e| Failure::Final(e.kind))?;
        let response = match tokio::time::timeout(stall, request.send()).await {
            Err(_) => return Err(stalled()),
            Ok(Err(err)) => return Err(Failure::of(&err, options, stall)),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        if status != 200 {
            log_transfer(self.server(), "GET", file, status, 0, started);
            return Err(Failure::of_status(status, file_status_kind(status)));
        }
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        let mut stream = response.bytes_stream();
        let writing =
            |e: std::io::Error| Failure::Final(ErrorKind::Unexpected(format!("writing: {e}")));
        loop {
            let chunk = match tokio::time::timeout(stall, stream.next()).await {
                Err(_) => return Err(stalled()),
                Ok(None) => break,
                Ok(Some(Err(err))) => return Err(Failure::of(&err, options, stall)),
                Ok(Some(Ok(chunk))) => chunk,
            };
            digest.update(&chunk);
            sink.write_all(&chunk).await.map_err(writing)?;
            *written += chunk.len() as u64;
        }
        sink.flush().await.map_err(writing)?;
        log_transfer(self.server(), "GET", file, status, *written, started);
        Ok(Transfer {
            bytes: *written,
            sha256: hex(digest.finish()),
        })
    }

    /// Streams `length` bytes from `source` into `file` (replacing it) and
    /// returns what passed. A source shorter or longer than `length` fails
    /// the upload rather than leaving a file of another size.
    ///
    /// Sent once (the source is consumed): when the connection fails after
    /// the upload began, or no byte moves for
    /// [`super::retry::ClientOptions::transfer_stall_timeout`], the error is
    /// [`ErrorKind::OutcomeUnknown`]: the file may be missing, partial or
    /// whole, and the caller checks it before trusting it.
    pub async fn upload<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        file: &DatastoreFile,
        source: R,
        length: u64,
    ) -> Result<Transfer, VSphereError> {
        let options = self.options();
        let stall = options.transfer_stall_timeout;
        let started = Instant::now();
        let progress = Progress::new();
        let pulled = Arc::new(AtomicU64::new(0));
        let source_failed: Arc<Mutex<Option<String>>> = Arc::default();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let body = futures::stream::try_unfold(
            (
                source,
                ring::digest::Context::new(&ring::digest::SHA256),
                0u64,
                Some(sender),
            ),
            {
                let (progress, pulled, source_failed) = (
                    progress.clone(),
                    Arc::clone(&pulled),
                    Arc::clone(&source_failed),
                );
                move |(mut source, mut digest, sent, mut sender)| {
                    let (progress, pulled, source_failed) = (
                        progress.clone(),
                        Arc::clone(&pulled),
                        Arc::clone(&source_failed),
                    );
                    async move {
                        let fail = |reason: String| {
                            if let Ok(mut failed) = source_failed.lock() {
                                *failed = Some(reason.clone());
                            }
                            std::io::Error::other(reason)
                        };
                        let mut buffer = vec![0u8; UPLOAD_CHUNK];
                        let read = source
                            .read(&mut buffer)
                            .await
                            .map_err(|e| fail(format!("reading the source: {e}")))?;
                        progress.tick();
                        if read == 0 {
                            if sent != length {
                                return Err(fail(format!(
                                    "the source ended after {sent} of {length} bytes"
                                )));
                            }
                            if let Some(sender) = sender.take() {
                                let _ = sender.send(hex(digest.clone().finish())); // an empty file
                            }
                            return Ok(None);
                        }
                        let sent = sent + read as u64;
                        if sent > length {
                            return Err(fail(format!("the source is longer than {length} bytes")));
                        }
                        buffer.truncate(read);
                        digest.update(&buffer);
                        pulled.store(sent, Ordering::Relaxed);
                        // The HTTP client stops asking once `length` bytes went out.
                        if sent == length
                            && let Some(sender) = sender.take()
                        {
                            let _ = sender.send(hex(digest.clone().finish()));
                        }
                        Ok(Some((buffer, (source, digest, sent, sender))))
                    }
                }
            },
        );
        let request = self
            .file_request(reqwest::Method::PUT, file)
            .await?
            .header(reqwest::header::CONTENT_LENGTH, length)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        let mut attempts = Attempts::new(options, self.server(), FILE_PUT);
        attempts.begin();
        // While the body goes out, a stall is no byte taken for `stall`;
        // once all of it was taken, the answer has the call limit to come
        // (the last bytes drain and vCenter closes the file).
        let all_taken = || pulled.load(Ordering::Relaxed) >= length;
        let watchdog = async {
            loop {
                let limit = if all_taken() {
                    options.call_timeout
                } else {
                    stall
                };
                if progress.idle() >= limit {
                    return;
                }
                tokio::time::sleep(limit - progress.idle()).await;
            }
        };
        let sent = tokio::select! {
            sent = request.send() => Some(sent),
            () = watchdog => None,
        };
        let source_failure = || source_failed.lock().ok().and_then(|mut f| f.take());
        let failure = match sent {
            Some(Ok(response)) => {
                let status = response.status().as_u16();
                log_transfer(self.server(), "PUT", file, status, length, started);
                if (200..300).contains(&status) {
                    None
                } else {
                    Some(Failure::of_status(status, file_status_kind(status)))
                }
            }
            Some(Err(_)) if let Some(reason) = source_failure() => Some(Failure::Final(
                ErrorKind::Unexpected(format!("the upload's source failed: {reason}")),
            )),
            Some(Err(err)) => Some(Failure::of(&err, options, stall)),
            None if all_taken() => Some(Failure::Lost(timeout(
                "complete answer",
                options.call_timeout,
            ))),
            None => {
                let moved = pulled.load(Ordering::Relaxed);
                Some(Failure::Lost(timeout(
                    &format!("transfer progress after {moved} of {length} bytes"),
                    stall,
                )))
            }
        };
        if let Some(failure) = failure {
            return Err(self.file_error("PUT", file, attempts.give_up(failure)));
        }
        let sha256 = receiver.await.map_err(|_| {
            self.file_error(
                "PUT",
                file,
                ErrorKind::Unexpected("the upload ended before its source did".into()),
            )
        })?;
        Ok(Transfer {
            bytes: length,
            sha256,
        })
    }
}

fn file_status_kind(status: u16) -> ErrorKind {
    match status {
        404 => ErrorKind::Fault {
            fault: "FileNotFound".into(),
            message: "no such file on the datastore".into(),
        },
        401 => ErrorKind::NotAuthenticated,
        403 => ErrorKind::NoPermission { privilege: None },
        status => ErrorKind::Http { status },
    }
}

fn log_transfer(
    server: &str,
    verb: &str,
    file: &DatastoreFile,
    status: u16,
    bytes: u64,
    started: Instant,
) {
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        vcenter = %server,
        method = verb,
        file = %file,
        status,
        bytes,
        duration_ms = (seconds * 1000.0) as u64,
        mib_per_s = if seconds > 0.0 { bytes as f64 / 1_048_576.0 / seconds } else { 0.0 },
        "datastore file transfer"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datastore_paths_become_escaped_folder_urls() {
        let file = DatastoreFile::parse("/DC 0", "[Local DS] fcd/a b#1.vmdk").unwrap();
        assert_eq!(file.datastore, "Local DS");
        assert_eq!(file.path, "fcd/a b#1.vmdk");
        assert_eq!(file.datastore_path(), "[Local DS] fcd/a b#1.vmdk");
        assert_eq!(
            file.url("https://vc.example:8443").unwrap().as_str(),
            "https://vc.example:8443/folder/fcd/a%20b%231.vmdk?dcPath=DC+0&dsName=Local+DS"
        );
        assert_eq!(DatastoreFile::parse("DC0", "fcd/x.vmdk"), None);
    }
}
