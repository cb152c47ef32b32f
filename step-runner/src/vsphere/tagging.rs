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
        let (user, password) = self.credentials();
        let mut tagging = Tagging {
            server: self.server().to_owned(),
            base: self.base_url().to_owned(),
            http: self.http().clone(),
            flavor: Flavor::Api,
            credentials: Credentials::new(user, password),
            session: std::sync::RwLock::new(String::new()),
            redactor: std::sync::RwLock::new(self.redactor()),
            round_trips: self.round_trip_counter(),
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
    /// does not serve this form (404).
    async fn login(&self) -> Result<bool, VSphereError> {
        let path = self.flavor.session_path();
        let error = |kind| self.error(&format!("POST {path}"), kind);
        let started = Instant::now();
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth(
                self.credentials.username(),
                Some(self.credentials.password()),
            )
            .send()
            .await
            .map_err(|e| error(ErrorKind::Transport(e.to_string())))?;
        let status = response.status().as_u16();
        log_call(&self.server, "POST", path, status, started);
        match status {
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
            .send_once(&Method::DELETE, path, None)
            .await
            .map_err(|kind| self.error(&format!("DELETE {path}"), kind))?;
        match status {
            200..=299 | 401 => {
                tracing::info!(vcenter = %self.server, "vAPI session closed");
                Ok(())
            }
            status => Err(self.error(&format!("DELETE {path}"), ErrorKind::Http { status })),
        }
    }

    /// One HTTP exchange with the current session: status and body text.
    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), ErrorKind> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
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
        let response = request
            .send()
            .await
            .map_err(|e| ErrorKind::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        log_call(&self.server, method.as_str(), path, status, started);
        let text = response
            .text()
            .await
            .map_err(|e| ErrorKind::Transport(e.to_string()))?;
        Ok((status, text))
    }

    /// One vAPI call; `rest` and `api` are the paths of the two forms, `body`
    /// the request (wrapped for `/rest` as it expects). Returns the unwrapped
    /// answer (`Null` when there is none). An expired session is renewed
    /// once.
    async fn call(
        &self,
        method: Method,
        api: &str,
        rest: &str,
        body: Option<Value>,
        rest_wrap: Option<&str>,
    ) -> Result<Value, VSphereError> {
        let path = match self.flavor {
            Flavor::Api => api,
            Flavor::Rest => rest,
        };
        let body = body.map(|body| match (self.flavor, rest_wrap) {
            (Flavor::Rest, Some(key)) => json!({ key: body }),
            _ => body,
        });
        let error = |kind| self.error(&format!("{method} {path}"), kind);
        let (mut status, mut text) = self
            .send_once(&method, path, body.as_ref())
            .await
            .map_err(error)?;
        if status == 401 {
            tracing::info!(vcenter = %self.server, path, "vAPI session expired; logging in again");
            self.login().await?;
            (status, text) = self
                .send_once(&method, path, body.as_ref())
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
            self.call(
                Method::GET,
                "/api/cis/tagging/category",
                "/rest/com/vmware/cis/tagging/category",
                None,
                None,
            )
            .await?,
        )?;
        let mut categories = Vec::with_capacity(ids.len());
        for id in ids {
            let value = self
                .call(
                    Method::GET,
                    &format!("/api/cis/tagging/category/{id}"),
                    &format!("/rest/com/vmware/cis/tagging/category/id:{id}"),
                    None,
                    None,
                )
                .await?;
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
        let cardinality = match cardinality {
            Cardinality::Single => "SINGLE",
            Cardinality::Multiple => "MULTIPLE",
        };
        let spec = json!({"name": name, "description": "Created by vmi", "cardinality": cardinality, "associable_types": associable_types});
        let value = self
            .call(
                Method::POST,
                "/api/cis/tagging/category",
                "/rest/com/vmware/cis/tagging/category",
                Some(spec),
                Some("create_spec"),
            )
            .await?;
        self.parse("create a category", value)
    }

    /// The tags of category `category_id`.
    pub async fn tags_in(&self, category_id: &str) -> Result<Vec<Tag>, VSphereError> {
        let ids: Vec<String> = self.parse_list(
            "list tags",
            self.call(
                Method::POST,
                "/api/cis/tagging/tag?action=list-tags-for-category",
                &format!("/rest/com/vmware/cis/tagging/tag/id:{category_id}?~action=list-tags-for-category"),
                (self.flavor == Flavor::Api).then(|| json!({"category_id": category_id})),
                None,
            )
            .await?,
        )?;
        let mut tags = Vec::with_capacity(ids.len());
        for id in ids {
            let value = self
                .call(
                    Method::GET,
                    &format!("/api/cis/tagging/tag/{id}"),
                    &format!("/rest/com/vmware/cis/tagging/tag/id:{id}"),
                    None,
                    None,
                )
                .await?;
            tags.push(self.parse("read a tag", value)?);
        }
        Ok(tags)
    }

    /// Creates tag `name` in category `category_id` and returns its id.
    pub async fn create_tag(&self, category_id: &str, name: &str) -> Result<String, VSphereError> {
        let spec =
            json!({"name": name, "description": "Created by vmi", "category_id": category_id});
        let value = self
            .call(
                Method::POST,
                "/api/cis/tagging/tag",
                "/rest/com/vmware/cis/tagging/tag",
                Some(spec),
                Some("create_spec"),
            )
            .await?;
        self.parse("create a tag", value)
    }

    /// Attaches tag `tag_id` to `object`.
    pub async fn attach(&self, tag_id: &str, object: &MoRef) -> Result<(), VSphereError> {
        self.call(
            Method::POST,
            &format!("/api/cis/tagging/tag-association/{tag_id}?action=attach"),
            &format!("/rest/com/vmware/cis/tagging/tag-association/id:{tag_id}?~action=attach"),
            Some(json!({"object_id": object_id(object)})),
            None,
        )
        .await
        .map(|_| ())
    }

    /// The ids of the tags attached to `object`.
    pub async fn attached_tags(&self, object: &MoRef) -> Result<Vec<String>, VSphereError> {
        let value = self
            .call(
                Method::POST,
                "/api/cis/tagging/tag-association?action=list-attached-tags",
                "/rest/com/vmware/cis/tagging/tag-association?~action=list-attached-tags",
                Some(json!({"object_id": object_id(object)})),
                None,
            )
            .await?;
        self.parse_list("list attached tags", value)
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
