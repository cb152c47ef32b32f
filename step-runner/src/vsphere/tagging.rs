//! vAPI REST tagging: categories, tags, and attaching them to inventory
//! objects (the `openshift-region` / `openshift-zone` tags of failure
//! domains).
//!
//! vCenter 7.0U2 and later serve `/api/cis/tagging/…`; older ones, and vcsim,
//! only the deprecated `/rest/com/vmware/cis/…` form. The session call is
//! tried on `/api` once and the answer decides which form every later call
//! uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ErrorKind, VSphereError};
use super::redact::Redactor;
use super::retry::{Attempts, ClientOptions, Failure};
use super::soap::{Credentials, MoRef, VCenter};

/// Which form of the vAPI this vCenter serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `/api/...`, bare JSON (vCenter 7.0U2+).
    Api,
    /// `/rest/com/vmware/...`, answers wrapped in `{"value": …}`.
    Rest,
}

/// How many tags of a category an object may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    /// At most one (region and zone categories).
    Single,
    /// Any number.
    Multiple,
}

/// A tag category.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Category {
    /// Its id (`urn:vmomi:InventoryServiceCategory:…`).
    pub id: String,
    /// Its name, e.g. `openshift-zone`.
    pub name: String,
    /// `SINGLE` or `MULTIPLE`.
    pub cardinality: String,
    /// Object types its tags may be attached to; empty means any.
    #[serde(default)]
    pub associable_types: Vec<String>,
}

/// A tag.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Tag {
    /// Its id (`urn:vmomi:InventoryServiceTag:…`).
    pub id: String,
    /// Its name, e.g. `us-east-1a`.
    pub name: String,
    /// The category it belongs to.
    pub category_id: String,
}

/// A logged-in tagging session on one vCenter. It logs in again once when
/// the session has expired, and logs out when dropped.
pub struct Tagging {
    server: String,
    base: String,
    http: reqwest::Client,
    flavor: Flavor,
    credentials: Credentials,
    session: std::sync::RwLock<String>,
    redactor: std::sync::RwLock<Redactor>,
    round_trips: Arc<AtomicU64>,
    options: ClientOptions,
}

impl std::fmt::Debug for Tagging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tagging({}, {:?})", self.base, self.flavor)
    }
}

impl Flavor {
    fn session_path(self) -> &'static str {
        match self {
            Flavor::Api => "/api/session",
            Flavor::Rest => "/rest/com/vmware/cis/session",
        }
    }
}

impl VCenter {
    /// Opens a vAPI session for tagging, choosing `/api` or `/rest`.
    pub async fn tagging(&self) -> Result<Tagging, VSphereError> {
        let mut tagging = Tagging {
            server: self.server().to_owned(),
            base: self.base_url().to_owned(),
            http: self.http().clone(),
            flavor: Flavor::Api,
            credentials: self.credentials().clone(),
            session: std::sync::RwLock::new(String::new()),
            redactor: std::sync::RwLock::new(self.redactor()),
            round_trips: self.round_trip_counter(),
            options: self.options().clone(),
        };
        for flavor in [Flavor::Api, Flavor::Rest] {
            tagging.flavor = flavor;
            if tagging.login().await? {
                tracing::info!(vcenter = %self.server(), api = ?flavor, "vAPI session opened");
                return Ok(tagging);
            }
        }
        Err(tagging.error(
            "POST /api/session",
            ErrorKind::Unexpected("the vCenter serves neither /api nor /rest vAPI sessions".into()),
        ))
    }
}

fn log_call(server: &str, method: &str, path: &str, status: u16, started: Instant) {
    tracing::info!(vcenter = %server, method, path, status, duration_ms = started.elapsed().as_millis() as u64, "vAPI call");
}

fn object_id(object: &MoRef) -> Value {
    json!({"type": object.kind, "id": object.value})
}

impl Tagging {
    /// Which form of the API this vCenter serves.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    fn error(&self, method: &str, kind: ErrorKind) -> VSphereError {
        VSphereError {
            vcenter: self.server.clone(),
            method: method.to_owned(),
            object: None,
            kind,
        }
    }

    fn session(&self) -> String {
        self.session.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Creates a session in this form of the API; `false` when the vCenter
    /// does not serve this form (404). Sent again only when no connection
    /// could be made.
    async fn login(&self) -> Result<bool, VSphereError> {
        let path = self.flavor.session_path();
        let error = |kind| self.error(&format!("POST {path}"), kind);
        let mut attempts = Attempts::new(&self.options, &self.server, "session.create");
        let response = loop {
            attempts.begin();
            let started = Instant::now();
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .http
                .post(format!("{}{path}", self.base))
                .timeout(self.options.call_timeout)
                .basic_auth(
                    self.credentials.username(),
                    Some(self.credentials.password()),
                )
                .send()
                .await;
            let failure = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    log_call(&self.server, "POST", path, status, started);
                    match Failure::of_status(status, ErrorKind::Http { status }) {
                        Failure::Final(_) => break response,
                        lost => lost,
                    }
                }
                Err(err) => Failure::of(&err, &self.options, self.options.call_timeout),
            };
            attempts.after(failure).await.map_err(error)?;
        };
        match response.status().as_u16() {
            404 => Ok(false),
            401 | 403 => Err(error(ErrorKind::InvalidLogin)),
            200 | 201 => {
                let body: Value = response
                    .json()
                    .await
                    .map_err(|e| error(ErrorKind::Unexpected(e.to_string())))?;
                let session = match self.flavor {
                    Flavor::Api => body.as_str(),
                    Flavor::Rest => body["value"].as_str(),
                }
                .ok_or_else(|| error(ErrorKind::Unexpected("no session id".into())))?
                .to_owned();
                if let Ok(mut redactor) = self.redactor.write() {
                    redactor.add(&session);
                }
                if let Ok(mut current) = self.session.write() {
                    *current = session;
                }
                Ok(true)
            }
            status => Err(error(ErrorKind::Http { status })),
        }
    }

    /// Ends the session. Later calls log in again; dropping a `Tagging`
    /// also logs out, in the background.
    pub async fn logout(&self) -> Result<(), VSphereError> {
        let path = self.flavor.session_path();
        let (status, _) = self
            .send("session.delete", &Method::DELETE, path, None)
            .await
            .map_err(|kind| self.error(&format!("DELETE {path}"), kind))?;
        match status {
            200..=299 | 401 => {
                if let Ok(mut current) = self.session.write() {
                    current.clear(); // nothing left for Drop to close
                }
                tracing::info!(vcenter = %self.server, "vAPI session closed");
                Ok(())
            }
            status => Err(self.error(&format!("DELETE {path}"), ErrorKind::Http { status })),
        }
    }

    /// An HTTP exchange with the current session: status and body text,
    /// tried again as [`super::retry::retry_safety`] allows for `operation`.
    async fn send(
        &self,
        operation: &str,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), ErrorKind> {
        let mut attempts = Attempts::new(&self.options, &self.server, operation);
        loop {
            attempts.begin();
            match self.send_once(method, path, body).await {
                Ok(answer) => return Ok(answer),
                Err(failure) => attempts.after(failure).await?,
            }
        }
    }

    /// One attempt of [`Tagging::send`].
    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), Failure> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(self.options.call_timeout)
            .header("vmware-api-session-id", self.session());
        if let Some(body) = body {
            if tracing::enabled!(tracing::Level::DEBUG) {
                let redactor = self.redactor.read().map(|r| r.clone()).unwrap_or_default();
                tracing::debug!(vcenter = %self.server, path, request = %redactor.redact(&body.to_string()), "vAPI call body");
            }
            request = request.json(body);
        }
        let started = Instant::now();
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let lost = |e: &reqwest::Error| Failure::of(e, &self.options, self.options.call_timeout);
        let response = request.send().await.map_err(|e| lost(&e))?;
        let status = response.status().as_u16();
        log_call(&self.server, method.as_str(), path, status, started);
        let text = response.text().await.map_err(|e| lost(&e))?;
        match Failure::of_status(status, ErrorKind::Http { status }) {
            Failure::Final(_) => Ok((status, text)),
            lost => Err(lost),
        }
    }

    /// One vAPI call in this vCenter's form of the API. Returns the
    /// unwrapped answer (`Null` when there is none). An expired session is
    /// renewed once.
    async fn call(&self, call: Call) -> Result<Value, VSphereError> {
        let operation = call.operation;
        let (method, path, body) = call.route(self.flavor);
        let path = path.as_str();
        let error = |kind| self.error(&format!("{method} {path}"), kind);
        let (mut status, mut text) = self
            .send(operation, &method, path, body.as_ref())
            .await
            .map_err(error)?;
        if status == 401 {
            tracing::info!(vcenter = %self.server, path, "vAPI session expired; logging in again");
            self.login().await?;
            (status, text) = self
                .send(operation, &method, path, body.as_ref())
                .await
                .map_err(error)?;
        }
        match status {
            200..=299 => {
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                let value: Value = serde_json::from_str(&text)
                    .map_err(|e| error(ErrorKind::Unexpected(format!("not JSON: {e}"))))?;
                Ok(match self.flavor {
                    Flavor::Rest => value.get("value").cloned().unwrap_or(Value::Null),
                    Flavor::Api => value,
                })
            }
            401 => Err(error(ErrorKind::NotAuthenticated)),
            403 => Err(error(ErrorKind::NoPermission { privilege: None })),
            404 => Err(error(ErrorKind::ManagedObjectNotFound)),
            _ if text.contains("already_exists") => {
                Err(error(ErrorKind::DuplicateName { existing: None }))
            }
            _ => {
                let redactor = self.redactor.read().map(|r| r.clone()).unwrap_or_default();
                Err(error(ErrorKind::Fault {
                    fault: format!("HTTP {status}"),
                    message: redactor.redact(text.trim()),
                }))
            }
        }
    }

    /// A list answer; vcsim (and the `/rest` form) answer an empty list as null.
    fn parse_list<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        value: Value,
    ) -> Result<Vec<T>, VSphereError> {
        if value.is_null() {
            Ok(Vec::new())
        } else {
            self.parse(what, value)
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        value: Value,
    ) -> Result<T, VSphereError> {
        serde_json::from_value(value).map_err(|e| VSphereError {
            vcenter: self.server.clone(),
            method: what.to_owned(),
            object: None,
            kind: ErrorKind::Unexpected(e.to_string()),
        })
    }

    /// Every tag category.
    pub async fn categories(&self) -> Result<Vec<Category>, VSphereError> {
        let ids: Vec<String> = self.parse_list(
            "list categories",
            self.call(calls::list_categories()).await?,
        )?;
        let mut categories = Vec::with_capacity(ids.len());
        for id in ids {
            let value = self.call(calls::get_category(&id)).await?;
            categories.push(self.parse("read a category", value)?);
        }
        Ok(categories)
    }

    /// The category named `name`, if any.
    pub async fn find_category(&self, name: &str) -> Result<Option<Category>, VSphereError> {
        Ok(self
            .categories()
            .await?
            .into_iter()
            .find(|c| c.name == name))
    }

    /// Creates a category and returns its id; an existing name is `DuplicateName`.
    pub async fn create_category(
        &self,
        name: &str,
        cardinality: Cardinality,
        associable_types: &[&str],
    ) -> Result<String, VSphereError> {
        let value = self
            .call(calls::create_category(name, cardinality, associable_types))
            .await?;
        self.parse("create a category", value)
    }

    /// The tags of category `category_id`.
    pub async fn tags_in(&self, category_id: &str) -> Result<Vec<Tag>, VSphereError> {
        let ids: Vec<String> =
            self.parse_list("list tags", self.call(calls::list_tags(category_id)).await?)?;
        let mut tags = Vec::with_capacity(ids.len());
        for id in ids {
            let value = self.call(calls::get_tag(&id)).await?;
            tags.push(self.parse("read a tag", value)?);
        }
        Ok(tags)
    }

    /// Creates tag `name` in category `category_id` and returns its id.
    pub async fn create_tag(&self, category_id: &str, name: &str) -> Result<String, VSphereError> {
        let value = self.call(calls::create_tag(category_id, name)).await?;
        self.parse("create a tag", value)
    }

    /// Attaches tag `tag_id` to `object`.
    pub async fn attach(&self, tag_id: &str, object: &MoRef) -> Result<(), VSphereError> {
        self.call(calls::attach(tag_id, object)).await.map(|_| ())
    }

    /// Detaches tag `tag_id` from `object`.
    pub async fn detach(&self, tag_id: &str, object: &MoRef) -> Result<(), VSphereError> {
        self.call(calls::detach(tag_id, object)).await.map(|_| ())
    }

    /// Deletes tag `tag_id` (and with it every attachment of it).
    pub async fn delete_tag(&self, tag_id: &str) -> Result<(), VSphereError> {
        self.call(calls::delete_tag(tag_id)).await.map(|_| ())
    }

    /// Deletes category `category_id`.
    pub async fn delete_category(&self, category_id: &str) -> Result<(), VSphereError> {
        self.call(calls::delete_category(category_id))
            .await
            .map(|_| ())
    }

    /// The ids of the tags attached to `object`.
    pub async fn attached_tags(&self, object: &MoRef) -> Result<Vec<String>, VSphereError> {
        let value = self.call(calls::attached_tags(object)).await?;
        self.parse_list("list attached tags", value)
    }
}

/// One vAPI request in both forms: the `/api` path, the `/rest` path, the
/// body, and what `/rest` makes of the body.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    /// The vAPI operation, as [`super::retry::retry_safety`] knows it.
    operation: &'static str,
    method: Method,
    api: String,
    rest: String,
    body: Option<Value>,
    rest_body: RestBody,
}

/// How the `/rest` form carries a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RestBody {
    /// As `/api` does.
    Same,
    /// Wrapped in an object under this key (`create_spec`).
    Wrapped(&'static str),
    /// Not at all (the arguments are in the path).
    Omitted,
}

impl Call {
    /// Method, path and body in `flavor`.
    fn route(self, flavor: Flavor) -> (Method, String, Option<Value>) {
        match flavor {
            Flavor::Api => (self.method, self.api, self.body),
            Flavor::Rest => {
                let body = match self.rest_body {
                    RestBody::Same => self.body,
                    RestBody::Wrapped(key) => self.body.map(|body| json!({ key: body })),
                    RestBody::Omitted => None,
                };
                (self.method, self.rest, body)
            }
        }
    }
}

/// The requests, written from the vSphere Automation API reference for
/// `/api` and from what vCenter (and vcsim) serve for `/rest`.
mod calls {
    use super::{Call, Cardinality, Method, MoRef, RestBody, Value, json, object_id};

    fn request(operation: &'static str, method: Method, api: String, rest: String) -> Call {
        Call {
            operation,
            method,
            api,
            rest,
            body: None,
            rest_body: RestBody::Same,
        }
    }

    pub(super) fn list_categories() -> Call {
        request(
            "tagging.category.list",
            Method::GET,
            "/api/cis/tagging/category".into(),
            "/rest/com/vmware/cis/tagging/category".into(),
        )
    }

    pub(super) fn get_category(id: &str) -> Call {
        request(
            "tagging.category.get",
            Method::GET,
            format!("/api/cis/tagging/category/{id}"),
            format!("/rest/com/vmware/cis/tagging/category/id:{id}"),
        )
    }

    pub(super) fn create_category(
        name: &str,
        cardinality: Cardinality,
        associable_types: &[&str],
    ) -> Call {
        let cardinality = match cardinality {
            Cardinality::Single => "SINGLE",
            Cardinality::Multiple => "MULTIPLE",
        };
        Call {
            body: Some(
                json!({"name": name, "description": "Created by vmi", "cardinality": cardinality, "associable_types": associable_types}),
            ),
            rest_body: RestBody::Wrapped("create_spec"),
            ..request(
                "tagging.category.create",
                Method::POST,
                "/api/cis/tagging/category".into(),
                "/rest/com/vmware/cis/tagging/category".into(),
            )
        }
    }

    /// The `/api` form names the category in the body, `/rest` in the path.
    pub(super) fn list_tags(category_id: &str) -> Call {
        let mut list = request(
            "tagging.tag.list-tags-for-category",
            Method::POST,
            "/api/cis/tagging/tag?action=list-tags-for-category".into(),
            format!(
                "/rest/com/vmware/cis/tagging/tag/id:{category_id}?~action=list-tags-for-category"
            ),
        );
        list.body = Some(json!({"category_id": category_id}));
        list.rest_body = RestBody::Omitted;
        list
    }

    pub(super) fn get_tag(id: &str) -> Call {
        request(
            "tagging.tag.get",
            Method::GET,
            format!("/api/cis/tagging/tag/{id}"),
            format!("/rest/com/vmware/cis/tagging/tag/id:{id}"),
        )
    }

    pub(super) fn create_tag(category_id: &str, name: &str) -> Call {
        Call {
            body: Some(
                json!({"name": name, "description": "Created by vmi", "category_id": category_id}),
            ),
            rest_body: RestBody::Wrapped("create_spec"),
            ..request(
                "tagging.tag.create",
                Method::POST,
                "/api/cis/tagging/tag".into(),
                "/rest/com/vmware/cis/tagging/tag".into(),
            )
        }
    }

    pub(super) fn attach(tag_id: &str, object: &MoRef) -> Call {
        Call {
            body: Some(object_body(object)),
            ..request(
                "tagging.tag-association.attach",
                Method::POST,
                format!("/api/cis/tagging/tag-association/{tag_id}?action=attach"),
                format!("/rest/com/vmware/cis/tagging/tag-association/id:{tag_id}?~action=attach"),
            )
        }
    }

    pub(super) fn detach(tag_id: &str, object: &MoRef) -> Call {
        Call {
            body: Some(object_body(object)),
            ..request(
                "tagging.tag-association.detach",
                Method::POST,
                format!("/api/cis/tagging/tag-association/{tag_id}?action=detach"),
                format!("/rest/com/vmware/cis/tagging/tag-association/id:{tag_id}?~action=detach"),
            )
        }
    }

    pub(super) fn delete_tag(id: &str) -> Call {
        request(
            "tagging.tag.delete",
            Method::DELETE,
            format!("/api/cis/tagging/tag/{id}"),
            format!("/rest/com/vmware/cis/tagging/tag/id:{id}"),
        )
    }

    pub(super) fn delete_category(id: &str) -> Call {
        request(
            "tagging.category.delete",
            Method::DELETE,
            format!("/api/cis/tagging/category/{id}"),
            format!("/rest/com/vmware/cis/tagging/category/id:{id}"),
        )
    }

    pub(super) fn attached_tags(object: &MoRef) -> Call {
        Call {
            body: Some(object_body(object)),
            ..request(
                "tagging.tag-association.list-attached-tags",
                Method::POST,
                "/api/cis/tagging/tag-association?action=list-attached-tags".into(),
                "/rest/com/vmware/cis/tagging/tag-association?~action=list-attached-tags".into(),
            )
        }
    }

    fn object_body(object: &MoRef) -> Value {
        json!({"object_id": object_id(object)})
    }
}

impl Drop for Tagging {
    /// Closes the session in the background, so that steps leave none behind.
    fn drop(&mut self) {
        let session = self.session();
        if session.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let request = self
            .http
            .delete(format!("{}{}", self.base, self.flavor.session_path()))
            .timeout(self.options.call_timeout)
            .header("vmware-api-session-id", session);
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let server = self.server.clone();
        runtime.spawn(async move {
            let outcome = match request.send().await {
                Ok(response) => response.status().as_u16().to_string(),
                Err(err) => err.to_string(),
            };
            tracing::info!(vcenter = %server, outcome, "vAPI session closed on drop");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(call: Call, flavor: Flavor) -> (String, String, String) {
        let (method, path, body) = call.route(flavor);
        (
            method.to_string(),
            path,
            body.map(|b| b.to_string()).unwrap_or_default(),
        )
    }

    /// The `/api` form (vCenter 7.0U2 and later) is not served by vcsim, so
    /// its requests are pinned here; `/rest` is exercised against vcsim.
    #[test]
    fn both_forms_of_every_tagging_request() {
        let folder = MoRef::new("Folder", "group-v7");
        let cases = [
            (
                calls::create_category("openshift-zone", Cardinality::Single, &["Folder"]),
                (
                    "POST",
                    "/api/cis/tagging/category",
                    r#"{"associable_types":["Folder"],"cardinality":"SINGLE","description":"Created by vmi","name":"openshift-zone"}"#,
                ),
                (
                    "POST",
                    "/rest/com/vmware/cis/tagging/category",
                    r#"{"create_spec":{"associable_types":["Folder"],"cardinality":"SINGLE","description":"Created by vmi","name":"openshift-zone"}}"#,
                ),
            ),
            (
                calls::get_category("urn:c1"),
                ("GET", "/api/cis/tagging/category/urn:c1", ""),
                ("GET", "/rest/com/vmware/cis/tagging/category/id:urn:c1", ""),
            ),
            (
                calls::list_tags("urn:c1"),
                (
                    "POST",
                    "/api/cis/tagging/tag?action=list-tags-for-category",
                    r#"{"category_id":"urn:c1"}"#,
                ),
                (
                    "POST",
                    "/rest/com/vmware/cis/tagging/tag/id:urn:c1?~action=list-tags-for-category",
                    "",
                ),
            ),
            (
                calls::create_tag("urn:c1", "us-east-1a"),
                (
                    "POST",
                    "/api/cis/tagging/tag",
                    r#"{"category_id":"urn:c1","description":"Created by vmi","name":"us-east-1a"}"#,
                ),
                (
                    "POST",
                    "/rest/com/vmware/cis/tagging/tag",
                    r#"{"create_spec":{"category_id":"urn:c1","description":"Created by vmi","name":"us-east-1a"}}"#,
                ),
            ),
            (
                calls::attach("urn:t1", &folder),
                (
                    "POST",
                    "/api/cis/tagging/tag-association/urn:t1?action=attach",
                    r#"{"object_id":{"id":"group-v7","type":"Folder"}}"#,
                ),
                (
                    "POST",
                    "/rest/com/vmware/cis/tagging/tag-association/id:urn:t1?~action=attach",
                    r#"{"object_id":{"id":"group-v7","type":"Folder"}}"#,
                ),
            ),
            (
                calls::attached_tags(&folder),
                (
                    "POST",
                    "/api/cis/tagging/tag-association?action=list-attached-tags",
                    r#"{"object_id":{"id":"group-v7","type":"Folder"}}"#,
                ),
                (
                    "POST",
                    "/rest/com/vmware/cis/tagging/tag-association?~action=list-attached-tags",
                    r#"{"object_id":{"id":"group-v7","type":"Folder"}}"#,
                ),
            ),
            (
                calls::detach("urn:t1", &folder),
                (
                    "POST",
                    "/api/cis/tagging/tag-association/urn:t1?action=detach",
                    r#"{"object_id":{"id":"group-v7","type":"Folder"}}"#,
                ),
                (
                    "POST",
                    "/rest/com/vmware/cis/tagging/tag-association/id:urn:t1?~action=detach",
                    r#"{"object_id":{"id":"group-v7","type":"Folder"}}"#,
                ),
            ),
            (
                calls::delete_tag("urn:t1"),
                ("DELETE", "/api/cis/tagging/tag/urn:t1", ""),
                ("DELETE", "/rest/com/vmware/cis/tagging/tag/id:urn:t1", ""),
            ),
            (
                calls::delete_category("urn:c1"),
                ("DELETE", "/api/cis/tagging/category/urn:c1", ""),
                (
                    "DELETE",
                    "/rest/com/vmware/cis/tagging/category/id:urn:c1",
                    "",
                ),
            ),
        ];
        for (call, api, rest) in cases {
            for (flavor, (method, path, body)) in [(Flavor::Api, api), (Flavor::Rest, rest)] {
                assert_eq!(
                    routed(call.clone(), flavor),
                    (method.to_owned(), path.to_owned(), body.to_owned()),
                    "{flavor:?}"
                );
            }
        }
        assert_eq!(
            routed(calls::list_categories(), Flavor::Api).1,
            "/api/cis/tagging/category"
        );
        assert_eq!(Flavor::Api.session_path(), "/api/session");
    }
}
