//! Reading properties through the property collector (one object, or every
//! object of a type below a container, page by page) and waiting for tasks.

use std::time::{Duration, Instant};

use super::error::{ErrorKind, VSphereError};
use super::retry::{is_connection_failure, what_failed};
use super::soap::{MoRef, Service, VCenter, method_fault_kind};
use super::xml::{self, Element};

/// Objects per page of `RetrievePropertiesEx`; the rest come through
/// `ContinueRetrievePropertiesEx`.
const PAGE_SIZE: usize = 100;

/// How a paged read failed: on a continuation, which a new read may get
/// past, or for good.
enum ReadFailure {
    Restart(VSphereError),
    Stop(VSphereError),
}
use ReadFailure::{Restart, Stop};

/// The requested properties of one managed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectContent {
    /// The object.
    pub obj: MoRef,
    /// `(property path, value)`; properties without a value are absent.
    pub properties: Vec<(String, Element)>,
}

impl ObjectContent {
    /// The value of property `path`.
    pub fn get(&self, path: &str) -> Option<&Element> {
        self.properties
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v)
    }

    /// The text of property `path` (strings, numbers, enums).
    pub fn text(&self, path: &str) -> Option<&str> {
        self.get(path).map(|v| v.text.as_str())
    }

    /// Property `path` as a managed object reference.
    pub fn moref(&self, path: &str) -> Option<MoRef> {
        self.get(path).and_then(MoRef::from_element)
    }
}

fn prop_set(kind: &str, paths: &[&str]) -> String {
    let paths: String = paths
        .iter()
        .map(|p| format!("<pathSet>{}</pathSet>", xml::escape(p)))
        .collect();
    format!(
        "<propSet><type>{}</type>{paths}</propSet>",
        xml::escape(kind)
    )
}

fn object_contents(returnval: &Element) -> Vec<ObjectContent> {
    returnval
        .children_named("objects")
        .filter_map(|object| {
            Some(ObjectContent {
                obj: MoRef::from_element(object.child("obj")?)?,
                properties: object
                    .children_named("propSet")
                    .filter_map(|p| {
                        Some((p.child_text("name")?.to_owned(), p.child("val")?.clone()))
                    })
                    .collect(),
            })
        })
        .collect()
}

impl VCenter {
    /// Properties `paths` of `obj`.
    pub async fn properties(
        &self,
        obj: &MoRef,
        paths: &[&str],
    ) -> Result<ObjectContent, VSphereError> {
        self.properties_on(Service::Vim, obj, paths).await
    }

    /// [`VCenter::properties`] read through another service's namespace.
    async fn properties_on(
        &self,
        service: Service,
        obj: &MoRef,
        paths: &[&str],
    ) -> Result<ObjectContent, VSphereError> {
        let spec = format!(
            "<specSet>{}<objectSet>{}<skip>false</skip></objectSet></specSet><options/>",
            prop_set(&obj.kind, paths),
            obj.to_xml("obj")
        );
        let mut found = self.retrieve(service, &spec, obj).await?;
        match found.pop() {
            Some(content) => Ok(content),
            // An object with none of the paths set still exists.
            None => Ok(ObjectContent {
                obj: obj.clone(),
                properties: Vec::new(),
            }),
        }
    }

    /// Properties `paths` of every object of type `kind` anywhere below
    /// `container` (a folder, datacenter, cluster…), through a container
    /// view read page by page.
    pub async fn objects_below(
        &self,
        container: &MoRef,
        kind: &str,
        paths: &[&str],
    ) -> Result<Vec<ObjectContent>, VSphereError> {
        let args = format!(
            "{}<type>{}</type><recursive>true</recursive>",
            container.to_xml("container"),
            xml::escape(kind)
        );
        let view = self
            .call("CreateContainerView", self.view_manager(), &args)
            .await?;
        let view = MoRef::from_element(&view).ok_or_else(|| {
            self.error(
                "CreateContainerView",
                Some(container),
                ErrorKind::Unexpected("no view".into()),
            )
        })?;
        let spec = format!(
            r#"<specSet>{}<objectSet>{}<skip>true</skip><selectSet xsi:type="TraversalSpec"><name>view</name><type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet></specSet><options><maxObjects>{PAGE_SIZE}</maxObjects></options>"#,
            prop_set(kind, paths),
            view.to_xml("obj")
        );
        let result = self.retrieve(Service::Vim, &spec, container).await;
        // The view holds server memory until destroyed; a failure here only leaks it until logout.
        if let Err(err) = self.call("DestroyView", &view, "").await {
            tracing::warn!(vcenter = %self.server(), view = %view, "could not destroy a container view: {err}");
        }
        result
    }

    /// `RetrievePropertiesEx` with `spec`, following continuation tokens.
    /// A continuation is never sent twice (the server's cursor may have
    /// moved on, and a page would be skipped): when one fails on the way,
    /// the whole read starts over.
    async fn retrieve(
        &self,
        service: Service,
        spec: &str,
        about: &MoRef,
    ) -> Result<Vec<ObjectContent>, VSphereError> {
        let options = self.options();
        let mut pause = options.backoff;
        let mut reads = 1;
        loop {
            match self.retrieve_once(service, spec, about).await {
                Err(Restart(err)) if reads < options.attempts => {
                    tracing::warn!(
                        vcenter = %self.server(),
                        method = "ContinueRetrievePropertiesEx",
                        object = %about,
                        attempt = reads,
                        attempts = options.attempts,
                        retry_in_ms = pause.as_millis() as u64,
                        cause = %err.kind,
                        "a paged read lost a page; reading again from the first page"
                    );
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2);
                    reads += 1;
                }
                Err(Restart(err) | Stop(err)) => return Err(err),
                Ok(objects) => return Ok(objects),
            }
        }
    }

    /// One read of [`VCenter::retrieve`], page by page.
    async fn retrieve_once(
        &self,
        service: Service,
        spec: &str,
        about: &MoRef,
    ) -> Result<Vec<ObjectContent>, ReadFailure> {
        let collector = self.property_collector().clone();
        let mut page = self
            .call_on(service, "RetrievePropertiesEx", &collector, spec)
            .await
            .map_err(|mut e| {
                e.object = Some(about.to_string());
                Stop(e)
            })?;
        let mut objects = object_contents(&page);
        while let Some(token) = page
            .child_text("token")
            .map(str::to_owned)
            .filter(|t| !t.is_empty())
        {
            page = self
                .call_on(
                    service,
                    "ContinueRetrievePropertiesEx",
                    &collector,
                    &format!("<token>{}</token>", xml::escape(&token)),
                )
                .await
                .map_err(|e| {
                    if is_connection_failure(&e.kind) {
                        Restart(e)
                    } else {
                        Stop(e)
                    }
                })?;
            objects.extend(object_contents(&page));
        }
        Ok(objects)
    }

    /// Waits until `task` ends and returns its `info.result` (e.g. the new
    /// VM), or the task's fault as a typed error. A task still running after
    /// `limit` is reported as such, never as success.
    pub async fn wait_for_task(
        &self,
        method: &str,
        task: &MoRef,
        limit: Duration,
    ) -> Result<Option<Element>, VSphereError> {
        self.wait_for_task_on(Service::Vim, method, task, limit)
            .await
    }

    /// [`VCenter::wait_for_task`] for a task of another service (CNS).
    pub(crate) async fn wait_for_task_on(
        &self,
        service: Service,
        method: &str,
        task: &MoRef,
        limit: Duration,
    ) -> Result<Option<Element>, VSphereError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let info = match self.properties_on(service, task, &["info"]).await {
                Ok(info) => info,
                // The task was started: whether it does its work is unknown.
                Err(err) if is_connection_failure(&err.kind) => {
                    return Err(self.error(
                        method,
                        Some(task),
                        ErrorKind::OutcomeUnknown {
                            cause: format!(
                                "the task {task} was started, then reading its progress failed: {}",
                                what_failed(&err.kind)
                            ),
                        },
                    ));
                }
                Err(err) => return Err(err),
            };
            let info = info.get("info").cloned().unwrap_or_default();
            match info.child_text("state") {
                Some("success") => return Ok(info.child("result").cloned()),
                Some("error") => {
                    let error = info.child("error");
                    let message = error
                        .and_then(|e| e.child_text("localizedMessage"))
                        .unwrap_or_default()
                        .to_owned();
                    let entity = info.child("entity").and_then(MoRef::from_element);
                    return Err(self.error(
                        method,
                        entity.as_ref().or(Some(task)),
                        method_fault_kind(error.and_then(|e| e.child("fault")), message),
                    ));
                }
                _ if started.elapsed() >= limit => {
                    return Err(self.error(
                        method,
                        Some(task),
                        ErrorKind::TaskTimeout {
                            task: task.to_string(),
                            waited_seconds: limit.as_secs(),
                        },
                    ));
                }
                _ => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}
