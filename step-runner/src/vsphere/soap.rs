//! The vSphere SOAP API as thin typed methods over one round-trip function,
//! so that logging, redaction, re-login and fault mapping live in one place.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::{ErrorKind, VSphereError};
use super::redact::Redactor;
use super::retry::{Attempts, ClientOptions, Failure};
use super::tls::{self, Trust};
use super::xml::{self, Element};

/// The SOAP action version used before the server's own is known; every
/// vCenter this tool supports (7.0U2 and later) accepts it.
const INITIAL_API_VERSION: &str = "7.0.3.0";
/// The session cookie vCenter sets at login.
const SESSION_COOKIE: &str = "vmware_soap_session";
/// The vSAN (CNS) SOAP action version used when the vCenter does not publish
/// its own in `/sdk/vsanServiceVersions.xml`.
const FALLBACK_VSAN_VERSION: &str = "7.0";

/// Which SOAP service of a vCenter a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// The vSphere API (`/sdk`, `urn:vim25`).
    Vim,
    /// Cloud Native Storage (`/vsanHealth`, `urn:vsan`).
    Cns,
    /// The property collector read in the vSAN namespace, so that vCenter
    /// can serialize CNS task results (`/sdk`, `urn:vsan`).
    CnsTasks,
}

impl Service {
    fn path(self) -> &'static str {
        match self {
            Service::Vim | Service::CnsTasks => "/sdk",
            Service::Cns => "/vsanHealth",
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Service::Vim => "urn:vim25",
            Service::Cns | Service::CnsTasks => "urn:vsan",
        }
    }
}

/// A managed object reference, e.g. `Folder:group-d1`. Printed (Display,
/// Debug) without the session key of session-scoped ids such as views.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MoRef {
    /// The managed object type, e.g. `Folder`.
    pub kind: String,
    /// Its id, e.g. `group-d1`.
    pub value: String,
}

impl MoRef {
    /// A reference to `kind` `value`.
    pub fn new(kind: &str, value: &str) -> MoRef {
        MoRef {
            kind: kind.to_owned(),
            value: value.to_owned(),
        }
    }

    /// A reference read from an element with a `type` attribute.
    pub fn from_element(element: &Element) -> Option<MoRef> {
        Some(MoRef::new(element.attribute("type")?, element.text.trim()))
    }

    /// The reference as `<element type="Kind">value</element>`.
    pub fn to_xml(&self, element: &str) -> String {
        format!(
            r#"<{element} type="{}">{}</{element}>"#,
            xml::escape(&self.kind),
            xml::escape(&self.value)
        )
    }
}

impl fmt::Display for MoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.kind,
            super::redact::session_refs(&self.value)
        )
    }
}

impl fmt::Debug for MoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MoRef({self})")
    }
}

/// `https://<server>[:port]`, with an IPv6 address in brackets as URLs
/// need it.
pub fn base_url(server: &str, port: Option<u16>) -> String {
    let host = if server.contains(':') && !server.starts_with('[') {
        format!("[{server}]")
    } else {
        server.to_owned()
    };
    match port {
        Some(port) if port != 443 => format!("https://{host}:{port}"),
        _ => format!("https://{host}"),
    }
}

/// A user name and password; the password never appears in `Debug`.
#[derive(Clone)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// Credentials for `username`.
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password, for the one place that must send it.
    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: [redacted] }}",
            self.username
        )
    }
}

/// What a vCenter says about itself (`ServiceContent.about`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    /// The instance UUID, unique per vCenter (needed for cross-vCenter calls).
    pub instance_uuid: String,
    /// Product version, e.g. `8.0.2`.
    pub version: String,
    /// API version, e.g. `8.0.2.0`.
    pub api_version: String,
    /// `VirtualCenter` or `HostAgent`.
    pub api_type: String,
    /// Full product name and build.
    pub full_name: String,
}

/// The managed objects every call starts from.
#[derive(Debug, Clone)]
struct ServiceContent {
    about: About,
    root_folder: MoRef,
    session_manager: MoRef,
    search_index: MoRef,
    property_collector: MoRef,
    view_manager: MoRef,
    authorization_manager: MoRef,
    vstorage_object_manager: Option<MoRef>,
}

/// A logged-in connection to one vCenter.
pub struct VCenter {
    server: String,
    base: String,
    http: reqwest::Client,
    credentials: Credentials,
    content: ServiceContent,
    cookie: tokio::sync::RwLock<Option<String>>,
    redactor: std::sync::RwLock<Redactor>,
    task_limit: Duration,
    options: ClientOptions,
    round_trips: Arc<AtomicU64>,
    vsan_version: tokio::sync::OnceCell<String>,
    certificate: tls::SeenCertificate,
}

/// How long a vCenter task may run before vmi reports it as stuck, unless
/// [`VCenter::set_task_limit`] says otherwise.
pub const DEFAULT_TASK_LIMIT: Duration = Duration::from_secs(600);

impl fmt::Debug for VCenter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VCenter({})", self.base)
    }
}

impl VCenter {
    /// Connects to `server` (port 443 when `None`), trusting its certificate
    /// as `trust` says, and logs in, with the default limits and retries
    /// ([`ClientOptions::default`]).
    pub async fn connect(
        server: &str,
        port: Option<u16>,
        trust: &Trust,
        credentials: Credentials,
    ) -> Result<VCenter, VSphereError> {
        VCenter::connect_with(server, port, trust, credentials, ClientOptions::default()).await
    }

    /// [`VCenter::connect`] with other limits and retries.
    pub async fn connect_with(
        server: &str,
        port: Option<u16>,
        trust: &Trust,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<VCenter, VSphereError> {
        let fail = |kind| VSphereError {
            vcenter: server.to_owned(),
            method: "connect".into(),
            object: None,
            kind,
        };
        let (config, seen) = tls::recording_client_config(server, trust)
            .map_err(|e| fail(ErrorKind::Tls(e.to_string())))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            // Each request sets its own overall limit: a SOAP call has one,
            // a datastore transfer is limited by its progress instead.
            .connect_timeout(options.connect_timeout)
            .build()
            .map_err(|e| fail(ErrorKind::Transport(e.to_string())))?;
        let base = base_url(server, port);
        let mut redactor = Redactor::default();
        redactor.add(&credentials.password);
        let mut vcenter = VCenter {
            server: server.to_owned(),
            base,
            http,
            credentials,
            content: ServiceContent {
                about: About {
                    instance_uuid: String::new(),
                    version: String::new(),
                    api_version: INITIAL_API_VERSION.to_owned(),
                    api_type: String::new(),
                    full_name: String::new(),
                },
                root_folder: MoRef::new("Folder", ""),
                session_manager: MoRef::new("SessionManager", "SessionManager"),
                search_index: MoRef::new("SearchIndex", "SearchIndex"),
                property_collector: MoRef::new("PropertyCollector", "propertyCollector"),
                view_manager: MoRef::new("ViewManager", "ViewManager"),
                authorization_manager: MoRef::new("AuthorizationManager", "AuthorizationManager"),
                vstorage_object_manager: None,
            },
            cookie: tokio::sync::RwLock::new(None),
            redactor: std::sync::RwLock::new(redactor),
            task_limit: DEFAULT_TASK_LIMIT,
            options,
            round_trips: Arc::new(AtomicU64::new(0)),
            vsan_version: tokio::sync::OnceCell::new(),
            certificate: seen,
        };
        vcenter.content = vcenter.retrieve_service_content().await?;
        vcenter.login().await?;
        Ok(vcenter)
    }

    /// Sets how long a task may run before it is reported as stuck
    /// ([`ErrorKind::TaskTimeout`]); a step sets it from its own deadline.
    pub fn set_task_limit(&mut self, limit: Duration) {
        self.task_limit = limit;
    }

    /// How long a task may run before it is reported as stuck.
    pub fn task_limit(&self) -> Duration {
        self.task_limit
    }

    /// The limits and retry policy of this connection.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The vCenter's server name.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The SHA-1 and SHA-256 thumbprints (`AA:BB:…`) of the certificate this
    /// connection verified: what a ServiceLocator pointing at this vCenter
    /// must carry. `None` only before the first handshake.
    pub fn thumbprints(&self) -> Option<(String, String)> {
        let seen = self.certificate.lock().ok()?;
        seen.as_deref().map(tls::thumbprints)
    }

    /// What the vCenter says about itself.
    pub fn about(&self) -> &About {
        &self.content.about
    }

    /// The root folder of the inventory.
    pub fn root_folder(&self) -> &MoRef {
        &self.content.root_folder
    }

    /// The HTTP client (with this vCenter's TLS trust) for its other APIs.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `https://server[:port]`, the base of this vCenter's REST APIs.
    pub(crate) fn base_url(&self) -> &str {
        &self.base
    }

    /// How many HTTP round trips this connection (and the tagging sessions
    /// and file transfers opened from it) has made so far.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Counts one round trip made outside [`VCenter::call`].
    pub(crate) fn count_round_trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// The shared round-trip counter, for the other APIs of this vCenter.
    pub(crate) fn round_trip_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.round_trips)
    }

    /// The session cookie header value, for the datastore file service.
    pub(crate) async fn session_cookie(&self) -> Option<String> {
        self.cookie.read().await.as_deref().map(cookie_header)
    }

    /// A SOAP POST to `service` with its action `version` and the session
    /// `cookie`, without a body.
    fn soap_request(
        &self,
        service: Service,
        version: &str,
        cookie: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self
            .http
            .post(format!("{}{}", self.base, service.path()))
            .timeout(self.options.call_timeout)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("SOAPAction", format!("{}/{version}", service.namespace()));
        match cookie {
            Some(cookie) => builder.header(reqwest::header::COOKIE, cookie_header(cookie)),
            None => builder,
        }
    }

    /// The credentials, for the REST session.
    pub(crate) fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Also redacts `secret` (another vCenter's password sent in a
    /// ServiceLocator) from everything this connection logs.
    pub(crate) fn redact_also(&self, secret: &str) {
        if let Ok(mut redactor) = self.redactor.write() {
            redactor.add(secret);
        }
    }

    /// A copy of the redactor, for other APIs of this vCenter.
    pub(crate) fn redactor(&self) -> Redactor {
        self.redactor.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub(crate) fn property_collector(&self) -> &MoRef {
        &self.content.property_collector
    }

    pub(crate) fn search_index(&self) -> &MoRef {
        &self.content.search_index
    }

    pub(crate) fn view_manager(&self) -> &MoRef {
        &self.content.view_manager
    }

    /// The First Class Disk manager; vCenter always has one, an ESX host
    /// connected directly does not.
    pub(crate) fn vstorage_object_manager(&self, method: &str) -> Result<MoRef, VSphereError> {
        self.content.vstorage_object_manager.clone().ok_or_else(|| {
            self.error(
                method,
                None,
                ErrorKind::Unexpected(
                    "no VStorageObjectManager: First Class Disks need a vCenter, not an ESX host"
                        .into(),
                ),
            )
        })
    }

    async fn retrieve_service_content(&self) -> Result<ServiceContent, VSphereError> {
        let this = MoRef::new("ServiceInstance", "ServiceInstance");
        let returnval = self
            .round_trip(Service::Vim, "RetrieveServiceContent", &this, "")
            .await?
            .children
            .into_iter()
            .next()
            .unwrap_or_default();
        let unexpected = |what: &str| {
            self.error(
                "RetrieveServiceContent",
                Some(&this),
                ErrorKind::Unexpected(format!("no {what} in ServiceContent")),
            )
        };
        let moref = |name: &str| {
            returnval
                .child(name)
                .and_then(MoRef::from_element)
                .ok_or_else(|| unexpected(name))
        };
        let about = returnval
            .child("about")
            .ok_or_else(|| unexpected("about"))?;
        let text = |name: &str| about.child_text(name).unwrap_or_default().to_owned();
        Ok(ServiceContent {
            about: About {
                instance_uuid: text("instanceUuid"),
                version: text("version"),
                api_version: text("apiVersion"),
                api_type: text("apiType"),
                full_name: text("fullName"),
            },
            root_folder: moref("rootFolder")?,
            session_manager: moref("sessionManager")?,
            search_index: moref("searchIndex")?,
            property_collector: moref("propertyCollector")?,
            view_manager: moref("viewManager")?,
            authorization_manager: moref("authorizationManager")?,
            vstorage_object_manager: returnval
                .child("vStorageObjectManager")
                .and_then(MoRef::from_element),
        })
    }

    /// Logs in, replacing any previous session.
    async fn login(&self) -> Result<(), VSphereError> {
        let args = format!(
            "<userName>{}</userName><password>{}</password>",
            xml::escape(&self.credentials.username),
            xml::escape(&self.credentials.password)
        );
        let this = self.content.session_manager.clone();
        *self.cookie.write().await = None;
        let (_, headers) = self.send(Service::Vim, "Login", &this, &args).await?;
        let cookie = headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                v.split(';')
                    .next()
                    .and_then(|kv| kv.trim().strip_prefix(&format!("{SESSION_COOKIE}=")))
            })
            .map(|v| v.trim_matches('"').to_owned())
            .ok_or_else(|| {
                self.error(
                    "Login",
                    Some(&this),
                    ErrorKind::Unexpected("no session cookie".into()),
                )
            })?;
        if let Ok(mut redactor) = self.redactor.write() {
            redactor.add(&cookie);
        }
        *self.cookie.write().await = Some(cookie);
        tracing::info!(vcenter = %self.server, user = %self.credentials.username, "logged in");
        Ok(())
    }

    /// Ends the session. Later calls log in again. Dropping a `VCenter`
    /// also logs out, but in the background; call this to be sure it happened.
    pub async fn logout(&self) -> Result<(), VSphereError> {
        let this = self.content.session_manager.clone();
        self.round_trip(Service::Vim, "Logout", &this, "").await?;
        *self.cookie.write().await = None;
        tracing::info!(vcenter = %self.server, "logged out");
        Ok(())
    }

    /// Calls `method` on `this` with the XML `args`; on `NotAuthenticated`
    /// logs in again once and retries, since sessions expire between steps.
    pub async fn call(
        &self,
        method: &str,
        this: &MoRef,
        args: &str,
    ) -> Result<Element, VSphereError> {
        self.call_on(Service::Vim, method, this, args).await
    }

    /// [`VCenter::call`] on another SOAP service of this vCenter.
    pub(crate) async fn call_on(
        &self,
        service: Service,
        method: &str,
        this: &MoRef,
        args: &str,
    ) -> Result<Element, VSphereError> {
        let response = self.response_on(service, method, this, args).await?;
        Ok(response.children.into_iter().next().unwrap_or_default())
    }

    /// [`VCenter::call`] for methods that answer a list: every `returnval`.
    pub(crate) async fn call_all(
        &self,
        method: &str,
        this: &MoRef,
        args: &str,
    ) -> Result<Vec<Element>, VSphereError> {
        let response = self.response_on(Service::Vim, method, this, args).await?;
        Ok(response.children)
    }

    /// The whole response element of a call, logging in again once when the
    /// session has ended.
    async fn response_on(
        &self,
        service: Service,
        method: &str,
        this: &MoRef,
        args: &str,
    ) -> Result<Element, VSphereError> {
        match self.round_trip(service, method, this, args).await {
            Err(VSphereError {
                kind: ErrorKind::NotAuthenticated,
                ..
            }) => {
                tracing::info!(vcenter = %self.server, method, "session expired; logging in again");
                self.login().await?;
                self.round_trip(service, method, this, args).await
            }
            other => other,
        }
    }

    /// One SOAP call; returns the response element.
    async fn round_trip(
        &self,
        service: Service,
        method: &str,
        this: &MoRef,
        args: &str,
    ) -> Result<Element, VSphereError> {
        let (body, _) = self.send(service, method, this, args).await?;
        Ok(body)
    }

    /// Sends one request and maps the answer: the response element and the
    /// HTTP headers, or a typed error. A failed attempt is tried again as
    /// [`super::retry::retry_safety`] allows for `method`.
    async fn send(
        &self,
        service: Service,
        method: &str,
        this: &MoRef,
        args: &str,
    ) -> Result<(Element, reqwest::header::HeaderMap), VSphereError> {
        let request = envelope(service, method, this, args);
        let mut attempts = Attempts::new(&self.options, &self.server, method);
        loop {
            let attempt = attempts.begin();
            match self
                .send_once(service, method, this, &request, attempt)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(failure) => attempts
                    .after(failure)
                    .await
                    .map_err(|kind| self.error(method, Some(this), kind))?,
            }
        }
    }

    /// One attempt of [`VCenter::send`]; every attempt is logged here.
    async fn send_once(
        &self,
        service: Service,
        method: &str,
        this: &MoRef,
        request: &str,
        attempt: u32,
    ) -> Result<(Element, reqwest::header::HeaderMap), Failure> {
        let version = match service {
            Service::Vim => self.content.about.api_version.clone(),
            Service::Cns | Service::CnsTasks => self.vsan_version().await,
        };
        let cookie = self.cookie.read().await.clone();
        let builder = self.soap_request(service, &version, cookie.as_deref());
        let started = Instant::now();
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let lost = |e: &reqwest::Error| Failure::of(e, &self.options, self.options.call_timeout);
        let result = match builder.body(request.to_owned()).send().await {
            Err(err) => Err(lost(&err)),
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                match response.text().await {
                    Err(err) => Err(lost(&err)),
                    Ok(text) => {
                        self.log_bodies(method, request, &text);
                        self.answer(method, this, status, &text)
                            .map(|element| (element, headers))
                            .map_err(|err| match err.kind {
                                // Not vCenter's own answer: a gateway's error page.
                                ErrorKind::Http { .. }
                                | ErrorKind::Xml(_)
                                | ErrorKind::Unexpected(_)
                                    if status != 200 && status != 500 =>
                                {
                                    Failure::of_status(status, ErrorKind::Http { status })
                                }
                                kind => Failure::Final(kind),
                            })
                    }
                }
            }
        };
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(Failure::Final(kind) | Failure::NotSent(kind) | Failure::Lost(kind)) => {
                fault_name(kind)
            }
        };
        tracing::info!(
            vcenter = %self.server,
            method,
            object = %this,
            attempt,
            duration_ms = started.elapsed().as_millis() as u64,
            outcome,
            "vCenter call"
        );
        result
    }

    /// The vSAN API version this vCenter publishes, read once; CNS calls
    /// carry it in their SOAP action.
    async fn vsan_version(&self) -> String {
        self.vsan_version
            .get_or_init(|| async {
                let text = match self.vsan_versions_document().await {
                    Ok(text) => text,
                    Err(kind) => {
                        tracing::warn!(vcenter = %self.server, "cannot read the vSAN API version ({kind}); using {FALLBACK_VSAN_VERSION}");
                        String::new()
                    }
                };
                let version = xml::parse(&text).ok().and_then(|doc| {
                    doc.child("namespace")
                        .and_then(|n| n.child_text("version"))
                        .map(str::to_owned)
                });
                tracing::debug!(vcenter = %self.server, version = ?version, "vSAN API version");
                version.unwrap_or_else(|| FALLBACK_VSAN_VERSION.to_owned())
            })
            .await
            .clone()
    }

    /// `/sdk/vsanServiceVersions.xml`, tried again as a read; empty when
    /// the vCenter does not publish it.
    async fn vsan_versions_document(&self) -> Result<String, ErrorKind> {
        use super::retry::VSAN_VERSIONS;
        let url = format!("{}/sdk/vsanServiceVersions.xml", self.base);
        let mut attempts = Attempts::new(&self.options, &self.server, VSAN_VERSIONS);
        loop {
            attempts.begin();
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            let lost =
                |e: &reqwest::Error| Failure::of(e, &self.options, self.options.call_timeout);
            let sent = self
                .http
                .get(&url)
                .timeout(self.options.call_timeout)
                .send()
                .await;
            let failure = match sent {
                Ok(response) if response.status().is_success() => match response.text().await {
                    Ok(text) => return Ok(text),
                    Err(err) => lost(&err),
                },
                Ok(response) => {
                    let status = response.status().as_u16();
                    match Failure::of_status(status, ErrorKind::Http { status }) {
                        Failure::Final(_) => return Ok(String::new()),
                        lost => lost,
                    }
                }
                Err(err) => lost(&err),
            };
            attempts.after(failure).await?;
        }
    }

    /// Keeps the session alive by calling `CurrentTime` every `every` until
    /// the returned guard is dropped: vCenter ends idle sessions (30 min by
    /// default), and a step can wait longer than that for the cluster.
    pub fn keep_alive(self: &Arc<Self>, every: Duration) -> KeepAlive {
        let vcenter = Arc::clone(self);
        let task = tokio::spawn(async move {
            let this = MoRef::new("ServiceInstance", "ServiceInstance");
            loop {
                tokio::time::sleep(every).await;
                if let Err(err) = vcenter.call("CurrentTime", &this, "").await {
                    tracing::warn!(vcenter = %vcenter.server, "keep-alive call failed: {err}");
                }
            }
        });
        KeepAlive(task)
    }

    fn log_bodies(&self, method: &str, request: &str, response: &str) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let redactor = self.redactor.read().map(|r| r.clone()).unwrap_or_default();
            tracing::debug!(
                vcenter = %self.server,
                method,
                request = %redactor.redact(request),
                response = %redactor.redact(response),
                "vCenter call bodies"
            );
        }
    }

    /// The response element of a SOAP answer, or the fault it carries.
    fn answer(
        &self,
        method: &str,
        this: &MoRef,
        status: u16,
        text: &str,
    ) -> Result<Element, VSphereError> {
        let envelope = xml::parse(text).map_err(|e| {
            let kind = if status == 200 {
                ErrorKind::Xml(e)
            } else {
                ErrorKind::Http { status }
            };
            self.error(method, Some(this), kind)
        })?;
        let body = envelope
            .child("Body")
            .and_then(|b| b.children.first())
            .ok_or_else(|| {
                self.error(
                    method,
                    Some(this),
                    ErrorKind::Unexpected("no SOAP body".into()),
                )
            })?;
        if body.name == "Fault" {
            return Err(self.error(method, Some(this), fault_kind(body)));
        }
        if status != 200 {
            return Err(self.error(method, Some(this), ErrorKind::Http { status }));
        }
        Ok(body.clone())
    }

    /// An error about `method` on `object` of this vCenter.
    pub fn error(&self, method: &str, object: Option<&MoRef>, kind: ErrorKind) -> VSphereError {
        VSphereError {
            vcenter: self.server.clone(),
            method: method.to_owned(),
            object: object.map(MoRef::to_string),
            kind,
        }
    }

    /// The managed object at an inventory path (`/dc/vm/folder`), or `None`.
    pub async fn find_by_inventory_path(&self, path: &str) -> Result<Option<MoRef>, VSphereError> {
        let args = format!(
            "<inventoryPath>{}</inventoryPath>",
            xml::escape(path.trim_start_matches('/'))
        );
        let returnval = self
            .call("FindByInventoryPath", &self.content.search_index, &args)
            .await?;
        Ok(MoRef::from_element(&returnval).filter(|m| !m.value.is_empty()))
    }

    /// The privileges of `privileges` that `user` lacks on `entity` (empty
    /// when every one is granted), from `HasUserPrivilegeOnEntities`.
    pub async fn missing_privileges(
        &self,
        entity: &MoRef,
        user: &str,
        privileges: &[&str],
    ) -> Result<Vec<String>, VSphereError> {
        let ids: String = privileges
            .iter()
            .map(|p| format!("<privId>{}</privId>", xml::escape(p)))
            .collect();
        let args = format!(
            "{}<userName>{}</userName>{ids}",
            entity.to_xml("entities"),
            xml::escape(user)
        );
        let this = self.content.authorization_manager.clone();
        let response = self
            .call("HasUserPrivilegeOnEntities", &this, &args)
            .await?;
        Ok(not_granted(&response, privileges))
    }

    /// Creates folder `name` in `parent` and returns it. An existing folder of
    /// that name is a `DuplicateName` error naming it.
    pub async fn create_folder(&self, parent: &MoRef, name: &str) -> Result<MoRef, VSphereError> {
        let args = format!("<name>{}</name>", xml::escape(name));
        let returnval = self.call("CreateFolder", parent, &args).await?;
        MoRef::from_element(&returnval).ok_or_else(|| {
            self.error(
                "CreateFolder",
                Some(parent),
                ErrorKind::Unexpected("no folder reference".into()),
            )
        })
    }
}

/// Keeps a vCenter session alive while it lives (see [`VCenter::keep_alive`]).
#[derive(Debug)]
pub struct KeepAlive(tokio::task::JoinHandle<()>);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for VCenter {
    /// Logs the session out in the background, so that a step never leaves
    /// sessions behind (vCenter limits how many a user may hold).
    fn drop(&mut self) {
        let Some(cookie) = self.cookie.get_mut().take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let request = self
            .soap_request(Service::Vim, &self.content.about.api_version, Some(&cookie))
            .body(envelope(
                Service::Vim,
                "Logout",
                &self.content.session_manager,
                "",
            ));
        let server = self.server.clone();
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        runtime.spawn(async move {
            let outcome = match request.send().await {
                Ok(response) => response.status().as_u16().to_string(),
                Err(err) => err.to_string(),
            };
            tracing::info!(vcenter = %server, outcome, "logged out on drop");
        });
    }
}

/// The `Cookie` header value carrying session `cookie`.
fn cookie_header(cookie: &str) -> String {
    format!("{SESSION_COOKIE}=\"{cookie}\"")
}

/// The SOAP envelope of one call.
fn envelope(service: Service, method: &str, this: &MoRef, args: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><{method} xmlns="{}">{}{args}</{method}></soapenv:Body></soapenv:Envelope>"#,
        service.namespace(),
        this.to_xml("_this")
    )
}

/// The asked privileges an `EntityPrivilege` answer does not grant; one that
/// is missing from the answer counts as not granted.
fn not_granted(entity_privilege: &Element, asked: &[&str]) -> Vec<String> {
    let granted: Vec<&str> = entity_privilege
        .children_named("privAvailability")
        .filter(|p| p.child_text("isGranted") == Some("true"))
        .filter_map(|p| p.child_text("privId"))
        .collect();
    asked
        .iter()
        .filter(|p| !granted.contains(p))
        .map(|p| (*p).to_owned())
        .collect()
}

/// The fault type of a SOAP fault and its details.
fn fault_kind(fault: &Element) -> ErrorKind {
    let message = fault
        .child_text("faultstring")
        .unwrap_or_default()
        .trim()
        .to_owned();
    method_fault_kind(
        fault.child("detail").and_then(|d| d.children.first()),
        message,
    )
}

/// The kind of a vSphere `MethodFault` element (a SOAP fault's detail, or a
/// task's `info.error.fault`), with `message` for faults without a kind.
pub(crate) fn method_fault_kind(detail: Option<&Element>, message: String) -> ErrorKind {
    let name = detail
        .and_then(|d| {
            d.xsi_type
                .clone()
                .or_else(|| Some(d.name.trim_end_matches("Fault").to_owned()))
        })
        .unwrap_or_else(|| "Unknown".into());
    let detail_text = |n: &str| detail.and_then(|d| d.child_text(n)).map(str::to_owned);
    match name.as_str() {
        "InvalidLogin" => ErrorKind::InvalidLogin,
        "NotAuthenticated" => ErrorKind::NotAuthenticated,
        "NoPermission" => ErrorKind::NoPermission {
            privilege: detail_text("privilegeId"),
        },
        "ManagedObjectNotFound" => ErrorKind::ManagedObjectNotFound,
        "DuplicateName" => ErrorKind::DuplicateName {
            existing: detail
                .and_then(|d| d.child("object"))
                .and_then(MoRef::from_element)
                .map(|m| m.to_string()),
        },
        "InvalidArgument" => ErrorKind::InvalidArgument {
            property: detail_text("invalidProperty"),
        },
        _ => ErrorKind::Fault {
            fault: name,
            message,
        },
    }
}

fn fault_name(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidLogin => "InvalidLogin".into(),
        ErrorKind::NotAuthenticated => "NotAuthenticated".into(),
        ErrorKind::NoPermission { .. } => "NoPermission".into(),
        ErrorKind::ManagedObjectNotFound => "ManagedObjectNotFound".into(),
        ErrorKind::DuplicateName { .. } => "DuplicateName".into(),
        ErrorKind::InvalidArgument { .. } => "InvalidArgument".into(),
        ErrorKind::Fault { fault, .. } => fault.clone(),
        ErrorKind::Tls(_) => "tls-error".into(),
        ErrorKind::Transport(_) => "transport-error".into(),
        ErrorKind::Http { status } => format!("http-{status}"),
        ErrorKind::Xml(_) => "xml-error".into(),
        ErrorKind::Unexpected(_) => "unexpected-answer".into(),
        ErrorKind::Unverified(_) => "unverified".into(),
        ErrorKind::TaskTimeout { .. } => "task-timeout".into(),
        ErrorKind::Timeout { .. } => "timeout".into(),
        ErrorKind::OutcomeUnknown { .. } => "outcome-unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_servers_are_bracketed_in_urls() {
        assert_eq!(base_url("fd00::10", Some(8443)), "https://[fd00::10]:8443");
        assert_eq!(base_url("[fd00::10]", None), "https://[fd00::10]");
        assert_eq!(
            base_url("vc.example.com", Some(443)),
            "https://vc.example.com"
        );
        assert_eq!(
            base_url("127.0.0.10", Some(8989)),
            "https://127.0.0.10:8989"
        );
    }

    /// The shape vCenter answers `HasUserPrivilegeOnEntities` with when a
    /// privilege is denied (vcsim grants everything, so it cannot show this).
    #[test]
    fn denied_and_absent_privileges_are_missing() {
        let answer = xml::parse(
            r#"<returnval><entity type="Folder">group-v3</entity><privAvailability><privId>Folder.Create</privId><isGranted>true</isGranted></privAvailability><privAvailability><privId>VirtualMachine.Inventory.Create</privId><isGranted>false</isGranted></privAvailability></returnval>"#,
        )
        .unwrap();
        let asked = [
            "Folder.Create",
            "VirtualMachine.Inventory.Create",
            "Datastore.AllocateSpace",
        ];
        assert_eq!(
            not_granted(&answer, &asked),
            ["VirtualMachine.Inventory.Create", "Datastore.AllocateSpace"]
        );
    }
}
