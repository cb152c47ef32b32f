//! Reading properties through the property collector (one object, or every
//! object of a type below a container, page by page) and waiting for tasks.

use std::time::{Duration, Instant};

use super::error::{ErrorKind, VSphereError};
use super::soap::{MoRef, Service, VCenter, method_fault_kind};
use super::xml::{self, Element};

/// Objects per page of `RetrievePropertiesEx`; the rest come through
/// `ContinueRetrievePropertiesEx`.
const PAGE_SIZE: usize = 100;

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
    async fn retrieve(
        &self,
        service: Service,
        spec: &str,
        about: &MoRef,
    ) -> Result<Vec<ObjectContent>, VSphereError> {
        let collector = self.property_collector().clone();
        let mut page = self
            .call_on(service, "RetrievePropertiesEx", &collector, spec)
            .await
            .map_err(|mut e| {
                e.object = Some(about.to_string());
                e
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
                .await?;
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
            let info = self.properties_on(service, task, &["info"]).await?;
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
