//! Datastore files over vCenter's HTTPS file service (`/folder/<path>`):
//! streamed download and upload with byte counts and a SHA-256 of what
//! passed, so a copied disk can be checked against its source.

use std::time::Instant;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::{ErrorKind, VSphereError};
use super::soap::{VCenter, transport_kind};

/// How much of a file is read or written at a time.
const CHUNK: usize = 1 << 20;

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
        let started = Instant::now();
        let response = self
            .file_request(reqwest::Method::HEAD, file)
            .await?
            .send()
            .await
            .map_err(|e| self.file_error("HEAD", file, transport_kind(&e)))?;
        let status = response.status().as_u16();
        log_transfer(self.server(), "HEAD", file, status, 0, started);
        match status {
            200 => Ok(response
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            404 => Ok(None),
            status => Err(self.file_error("HEAD", file, ErrorKind::Http { status })),
        }
    }

    /// Streams `file` into `sink` and returns what passed. A missing file is
    /// a `FileNotFound` fault.
    pub async fn download<W: AsyncWrite + Unpin>(
        &self,
        file: &DatastoreFile,
        sink: &mut W,
    ) -> Result<Transfer, VSphereError> {
        let started = Instant::now();
        let response = self
            .file_request(reqwest::Method::GET, file)
            .await?
            .send()
            .await
            .map_err(|e| self.file_error("GET", file, transport_kind(&e)))?;
        let status = response.status().as_u16();
        if status != 200 {
            log_transfer(self.server(), "GET", file, status, 0, started);
            return Err(self.file_error("GET", file, file_status_kind(status)));
        }
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        let mut bytes = 0u64;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.file_error("GET", file, transport_kind(&e)))?;
            digest.update(&chunk);
            bytes += chunk.len() as u64;
            sink.write_all(&chunk).await.map_err(|e| {
                self.file_error("GET", file, ErrorKind::Unexpected(format!("writing: {e}")))
            })?;
        }
        sink.flush().await.map_err(|e| {
            self.file_error("GET", file, ErrorKind::Unexpected(format!("writing: {e}")))
        })?;
        log_transfer(self.server(), "GET", file, status, bytes, started);
        Ok(Transfer {
            bytes,
            sha256: hex(digest.finish()),
        })
    }

    /// Streams `length` bytes from `source` into `file` (replacing it) and
    /// returns what passed. A source shorter or longer than `length` fails
    /// the upload rather than leaving a file of another size.
    pub async fn upload<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        file: &DatastoreFile,
        source: R,
        length: u64,
    ) -> Result<Transfer, VSphereError> {
        let started = Instant::now();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let body = futures::stream::try_unfold(
            (
                source,
                ring::digest::Context::new(&ring::digest::SHA256),
                0u64,
                Some(sender),
            ),
            move |(mut source, mut digest, sent, mut sender)| async move {
                let mut buffer = vec![0u8; CHUNK];
                let read = source.read(&mut buffer).await?;
                if read == 0 {
                    if sent != length {
                        return Err(std::io::Error::other(format!(
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
                    return Err(std::io::Error::other(format!(
                        "the source is longer than {length} bytes"
                    )));
                }
                buffer.truncate(read);
                digest.update(&buffer);
                // The HTTP client stops asking once `length` bytes went out.
                if sent == length
                    && let Some(sender) = sender.take()
                {
                    let _ = sender.send(hex(digest.clone().finish()));
                }
                Ok(Some((buffer, (source, digest, sent, sender))))
            },
        );
        let response = self
            .file_request(reqwest::Method::PUT, file)
            .await?
            .header(reqwest::header::CONTENT_LENGTH, length)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| self.file_error("PUT", file, transport_kind(&e)))?;
        let status = response.status().as_u16();
        log_transfer(self.server(), "PUT", file, status, length, started);
        if !(200..300).contains(&status) {
            return Err(self.file_error("PUT", file, file_status_kind(status)));
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
