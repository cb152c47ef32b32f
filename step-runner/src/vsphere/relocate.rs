//! Moving a VM (and the disks attached to it) to another vCenter with
//! `RelocateVM_Task` and a `ServiceLocator`, then proving it arrived.
//!
//! What a real vCenter does: the source vCenter logs in to the target with
//! the locator's credentials, checks the target's certificate against the
//! SHA-1 thumbprint, copies the VM and its disks to the target datastore
//! and removes them from the source; the VM keeps its instance UUID. The
//! simulator ignores the locator and moves the VM inside itself, so a
//! relocate against it is reported as unverified, which is exactly the
//! case this module exists for: a task that says success is not trusted
//! until the VM is found on the target, with its disks on the target
//! datastore, and gone from the source.

use super::error::{ErrorKind, VSphereError};
use super::soap::{Credentials, MoRef, VCenter};
use super::xml;

/// How the source vCenter reaches the target one.
#[derive(Debug, Clone)]
pub struct ServiceLocator {
    /// The target's `about.instanceUuid`.
    pub instance_uuid: String,
    /// The target's SDK URL, `https://target/sdk`.
    pub url: String,
    /// A target account allowed to create VMs where they go.
    pub credentials: Credentials,
    /// The target certificate's SHA-1 thumbprint (`AB:CD:…`).
    pub ssl_thumbprint: String,
}

impl ServiceLocator {
    /// The locator of `target` as this process connected to it: its instance
    /// UUID, SDK URL and credentials, and the SHA-1 thumbprint of the
    /// certificate this process verified (so the source vCenter trusts
    /// exactly what vmi trusted).
    pub fn to(target: &VCenter) -> Result<ServiceLocator, VSphereError> {
        let (sha1, _) = target.thumbprints().ok_or_else(|| {
            target.error(
                "ServiceLocator",
                None,
                ErrorKind::Unexpected("no certificate was verified for this vCenter".into()),
            )
        })?;
        Ok(ServiceLocator {
            instance_uuid: target.about().instance_uuid.clone(),
            url: format!("{}/sdk", target.base_url()),
            credentials: target.credentials().clone(),
            ssl_thumbprint: sha1,
        })
    }
}

/// Where a relocated VM goes: objects of the target vCenter.
#[derive(Debug, Clone)]
pub struct RelocateSpec<'a> {
    /// The target vCenter; `None` relocates inside the same vCenter.
    pub service: Option<&'a ServiceLocator>,
    /// VM folder.
    pub folder: &'a MoRef,
    /// Datastore for the VM's files.
    pub datastore: &'a MoRef,
    /// Resource pool.
    pub pool: &'a MoRef,
    /// Host, when one must be named.
    pub host: Option<&'a MoRef>,
    /// `(device key, datastore)` for each disk to move (all of them for a
    /// cross-vCenter move).
    pub disks: &'a [(i32, MoRef)],
}

/// The `spec` element of `RelocateVM_Task`, in the WSDL's element order
/// (`service, folder, datastore, diskMoveType, pool, host, disk*`).
pub fn relocate_spec_xml(spec: &RelocateSpec<'_>) -> String {
    let service = spec
        .service
        .map(|s| {
            format!(
                concat!(
                    "<service><instanceUuid>{}</instanceUuid><url>{}</url>",
                    r#"<credential xsi:type="ServiceLocatorNamePassword"><username>{}</username><password>{}</password></credential>"#,
                    "<sslThumbprint>{}</sslThumbprint></service>"
                ),
                xml::escape(&s.instance_uuid),
                xml::escape(&s.url),
                xml::escape(s.credentials.username()),
                xml::escape(s.credentials.password()),
                xml::escape(&s.ssl_thumbprint),
            )
        })
        .unwrap_or_default();
    let disks: String = spec
        .disks
        .iter()
        .map(|(key, datastore)| {
            format!(
                "<disk><diskId>{key}</diskId>{}</disk>",
                datastore.to_xml("datastore")
            )
        })
        .collect();
    format!(
        "<spec>{service}{}{}{}{}{disks}</spec>",
        spec.folder.to_xml("folder"),
        spec.datastore.to_xml("datastore"),
        spec.pool.to_xml("pool"),
        spec.host.map(|h| h.to_xml("host")).unwrap_or_default(),
    )
}

/// A VM that arrived on the target vCenter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelocatedVm {
    /// The VM on the target.
    pub vm: MoRef,
    /// Its disk files there.
    pub disks: Vec<String>,
}

impl VCenter {
    /// Runs `RelocateVM_Task` for `vm` with `spec` and waits for the task.
    /// Success of the task alone proves nothing across vCenters; use
    /// [`relocate_across`] for that.
    pub async fn relocate_vm(
        &self,
        vm: &MoRef,
        spec: &RelocateSpec<'_>,
    ) -> Result<(), VSphereError> {
        const METHOD: &str = "RelocateVM_Task";
        if let Some(service) = spec.service {
            self.redact_also(service.credentials.password());
        }
        let args = format!(
            "{}<priority>defaultPriority</priority>",
            relocate_spec_xml(spec)
        );
        let task = self.task(METHOD, vm, &args).await?;
        self.wait_for_task(METHOD, &task, self.task_limit())
            .await
            .map(|_| ())
    }

    /// The VM with instance UUID `uuid`, if this vCenter has one.
    pub async fn find_vm_by_instance_uuid(
        &self,
        uuid: &str,
    ) -> Result<Option<MoRef>, VSphereError> {
        let args = format!(
            "<uuid>{}</uuid><vmSearch>true</vmSearch><instanceUuid>true</instanceUuid>",
            xml::escape(uuid)
        );
        let found = self
            .call("FindByUuid", &self.search_index().clone(), &args)
            .await?;
        Ok(MoRef::from_element(&found).filter(|m| !m.value.is_empty()))
    }

    /// The instance UUID of `vm`.
    pub async fn instance_uuid(&self, vm: &MoRef) -> Result<String, VSphereError> {
        self.properties(vm, &["config.instanceUuid"])
            .await?
            .text("config.instanceUuid")
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                self.error(
                    "RetrievePropertiesEx",
                    Some(vm),
                    ErrorKind::Unexpected("the VM has no instance UUID".into()),
                )
            })
    }
}

/// Moves `vm` from `source` to `target` as `spec` says and proves it:
/// the VM is found on the target by its instance UUID, every disk of it is
/// on `target_datastore` there, and the source no longer has it. Anything
/// else, including a task that reported success, is an error that says
/// where the VM and its disks are, so that nothing is detached or deleted
/// on the strength of an unproven move.
pub async fn relocate_across(
    source: &VCenter,
    target: &VCenter,
    vm: &MoRef,
    spec: &RelocateSpec<'_>,
    target_datastore: &str,
) -> Result<RelocatedVm, VSphereError> {
    let uuid = source.instance_uuid(vm).await?;
    let disks_before = source.disk_files(vm).await?;
    source.relocate_vm(vm, spec).await?;
    verify_relocation(source, target, &uuid, &disks_before, target_datastore).await
}

/// The check behind [`relocate_across`]: the VM with instance UUID `uuid`
/// is on `target` with every disk on `target_datastore`, and not on
/// `source`. `disks_before` are its disk files before the move, named in
/// the error so the operator knows what to look for.
pub async fn verify_relocation(
    source: &VCenter,
    target: &VCenter,
    uuid: &str,
    disks_before: &[String],
    target_datastore: &str,
) -> Result<RelocatedVm, VSphereError> {
    let unverified = |what: String| {
        source.error(
            "RelocateVM_Task",
            None,
            ErrorKind::Unverified(format!(
                "{what}; the source disks ({}) are kept and nothing was detached or deleted",
                disks_before.join(", ")
            )),
        )
    };
    let on_source = source.find_vm_by_instance_uuid(uuid).await?;
    let Some(on_target) = target.find_vm_by_instance_uuid(uuid).await? else {
        return Err(unverified(match on_source {
            Some(vm) => format!(
                "the VM (instance UUID {uuid}) is not on vCenter {} and is still on {} as {vm}",
                target.server(),
                source.server()
            ),
            None => format!(
                "the VM (instance UUID {uuid}) is on neither vCenter {} nor {}",
                target.server(),
                source.server()
            ),
        }));
    };
    if let Some(vm) = on_source {
        return Err(unverified(format!(
            "the VM (instance UUID {uuid}) is on both vCenters: {} as {on_target} and {} as {vm}",
            target.server(),
            source.server()
        )));
    }
    let disks = target.disk_files(&on_target).await?;
    let prefix = format!("[{target_datastore}]");
    let elsewhere: Vec<&String> = disks.iter().filter(|d| !d.starts_with(&prefix)).collect();
    if disks.len() < disks_before.len() || !elsewhere.is_empty() {
        return Err(unverified(format!(
            "the VM arrived on {} as {on_target} but its disks are {disks:?}, not {} disk(s) on datastore {target_datastore}",
            target.server(),
            disks_before.len()
        )));
    }
    Ok(RelocatedVm {
        vm: on_target,
        disks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact request a real vCenter receives; the simulator ignores
    /// `service`, so this is where its shape is pinned.
    #[test]
    fn a_cross_vcenter_spec_carries_the_locator_first() {
        let locator = ServiceLocator {
            instance_uuid: "0bd5e3f5-1111".into(),
            url: "https://target.example/sdk".into(),
            credentials: Credentials::new("admin@vsphere.local", "p<w>&"),
            ssl_thumbprint: "AB:CD:EF".into(),
        };
        let folder = MoRef::new("Folder", "group-v7");
        let datastore = MoRef::new("Datastore", "datastore-12");
        let pool = MoRef::new("ResourcePool", "resgroup-8");
        let host = MoRef::new("HostSystem", "host-10");
        let disks = [(2000, datastore.clone())];
        let spec = RelocateSpec {
            service: Some(&locator),
            folder: &folder,
            datastore: &datastore,
            pool: &pool,
            host: Some(&host),
            disks: &disks,
        };
        assert_eq!(
            relocate_spec_xml(&spec),
            concat!(
                "<spec><service><instanceUuid>0bd5e3f5-1111</instanceUuid><url>https://target.example/sdk</url>",
                r#"<credential xsi:type="ServiceLocatorNamePassword"><username>admin@vsphere.local</username><password>p&lt;w&gt;&amp;</password></credential>"#,
                "<sslThumbprint>AB:CD:EF</sslThumbprint></service>",
                r#"<folder type="Folder">group-v7</folder><datastore type="Datastore">datastore-12</datastore>"#,
                r#"<pool type="ResourcePool">resgroup-8</pool><host type="HostSystem">host-10</host>"#,
                r#"<disk><diskId>2000</diskId><datastore type="Datastore">datastore-12</datastore></disk></spec>"#
            )
        );
        let local = RelocateSpec {
            service: None,
            host: None,
            disks: &[],
            ..spec
        };
        assert!(!relocate_spec_xml(&local).contains("<service>"));
    }
}
