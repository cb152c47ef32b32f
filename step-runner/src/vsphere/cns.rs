//! Cloud Native Storage (`/vsanHealth`): the volumes the vSphere CSI driver
//! sees. A moved disk becomes a CSI volume again on the target by
//! `CnsCreateVolume` with its FCD as backing, so the volume id stays the FCD id.
//!
//! A CNS task can succeed while the volume it was about failed: each volume
//! has its own result with its own fault, and both are checked here.

use super::error::{ErrorKind, VSphereError};
use super::soap::{MoRef, Service, VCenter, method_fault_kind};
use super::xml::{self, Element};

/// The one CNS volume manager of a vCenter.
fn volume_manager() -> MoRef {
    MoRef::new("CnsVolumeManager", "cns-volume-manager")
}

/// The Kubernetes cluster a CNS volume belongs to, as the CSI driver
/// reports it (`containerCluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCluster {
    /// The cluster id the CSI driver is configured with (`cluster-id`).
    pub cluster_id: String,
    /// The vCenter user the CSI driver runs as.
    pub vsphere_user: String,
    /// `OpenShift` for this project's clusters.
    pub distribution: String,
}

/// A block volume to create in CNS from an existing First Class Disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVolume<'a> {
    /// The volume name (the CSI driver uses the PV name).
    pub name: &'a str,
    /// The FCD that backs it; it becomes the volume id.
    pub backing_disk_id: &'a str,
    /// The datastore holding that disk.
    pub datastore: &'a MoRef,
    /// Capacity in MiB.
    pub capacity_mb: u64,
    /// The cluster that owns it.
    pub cluster: &'a ContainerCluster,
}

/// A CNS volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CnsVolume {
    /// The volume id (the FCD id, and the CSI volume handle).
    pub id: String,
    /// Its name.
    pub name: String,
    /// `BLOCK` or `FILE`.
    pub volume_type: String,
    /// The datastore URL (`ds:///vmfs/volumes/...`).
    pub datastore_url: String,
    /// Capacity in MiB.
    pub capacity_mb: u64,
    /// The backing disk file, when vCenter reports it.
    pub backing_disk_path: Option<String>,
    /// The owning cluster's id.
    pub cluster_id: String,
}

impl CnsVolume {
    fn from_element(volume: &Element) -> Option<CnsVolume> {
        let backing = volume.child("backingObjectDetails");
        Some(CnsVolume {
            id: volume.child("volumeId")?.child_text("id")?.to_owned(),
            name: volume.child_text("name").unwrap_or_default().to_owned(),
            volume_type: volume
                .child_text("volumeType")
                .unwrap_or_default()
                .to_owned(),
            datastore_url: volume
                .child_text("datastoreUrl")
                .unwrap_or_default()
                .to_owned(),
            capacity_mb: backing
                .and_then(|b| b.child_text("capacityInMb"))
                .and_then(|c| c.parse().ok())
                .unwrap_or_default(),
            backing_disk_path: backing
                .and_then(|b| b.child_text("backingDiskPath"))
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            cluster_id: volume
                .child("metadata")
                .and_then(|m| m.child("containerCluster"))
                .and_then(|c| c.child_text("clusterId"))
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

/// The request body of `CnsCreateVolume` for `volume`.
fn create_spec(volume: &NewVolume<'_>) -> String {
    format!(
        concat!(
            "<createSpecs><name>{name}</name><volumeType>BLOCK</volumeType>{datastore}",
            "<metadata><containerCluster><clusterType>KUBERNETES</clusterType>",
            "<clusterId>{cluster}</clusterId><vSphereUser>{user}</vSphereUser>",
            "<clusterFlavor>VANILLA</clusterFlavor><clusterDistribution>{distribution}</clusterDistribution>",
            "</containerCluster></metadata>",
            r#"<backingObjectDetails xsi:type="CnsBlockBackingDetails"><capacityInMb>{capacity}</capacityInMb>"#,
            "<backingDiskId>{disk}</backingDiskId></backingObjectDetails></createSpecs>"
        ),
        name = xml::escape(volume.name),
        datastore = volume.datastore.to_xml("datastores"),
        cluster = xml::escape(&volume.cluster.cluster_id),
        user = xml::escape(&volume.cluster.vsphere_user),
        distribution = xml::escape(&volume.cluster.distribution),
        capacity = volume.capacity_mb,
        disk = xml::escape(volume.backing_disk_id),
    )
}

impl VCenter {
    /// Runs a CNS task and returns the result of its one volume, or the
    /// fault of the task or of that volume.
    async fn cns_task(
        &self,
        method: &str,
        args: &str,
        volume: &str,
    ) -> Result<Element, VSphereError> {
        let manager = volume_manager();
        let with_volume = |mut e: VSphereError| {
            e.object = Some(format!("volume {volume}"));
            e
        };
        let task = self
            .call_on(Service::Cns, method, &manager, args)
            .await
            .map_err(with_volume)?;
        let task = MoRef::from_element(&task).ok_or_else(|| {
            self.error(
                method,
                Some(&manager),
                ErrorKind::Unexpected("no task".into()),
            )
        })?;
        let result = self
            .wait_for_task_on(Service::CnsTasks, method, &task, self.task_limit())
            .await
            .map_err(with_volume)?
            .unwrap_or_default();
        let outcome = result.child("volumeResults").cloned().ok_or_else(|| {
            with_volume(self.error(
                method,
                Some(&task),
                ErrorKind::Unexpected("the task reported no volume result".into()),
            ))
        })?;
        if let Some(fault) = outcome.child("fault") {
            let message = fault
                .child_text("localizedMessage")
                .unwrap_or_default()
                .to_owned();
            return Err(with_volume(self.error(
                method,
                Some(&task),
                method_fault_kind(fault.child("fault"), message),
            )));
        }
        Ok(outcome)
    }

    /// Creates a CNS block volume backed by an existing First Class Disk and
    /// returns its id (the disk's id).
    pub async fn cns_create_volume(&self, volume: &NewVolume<'_>) -> Result<String, VSphereError> {
        const METHOD: &str = "CnsCreateVolume";
        let outcome = self
            .cns_task(METHOD, &create_spec(volume), volume.name)
            .await?;
        outcome
            .child("volumeId")
            .and_then(|v| v.child_text("id"))
            .map(str::to_owned)
            .ok_or_else(|| {
                self.error(
                    METHOD,
                    None,
                    ErrorKind::Unexpected(format!("no volume id for {}", volume.name)),
                )
            })
    }

    /// The CNS volumes with these ids (those CNS does not know are absent).
    pub async fn cns_query_volumes(&self, ids: &[&str]) -> Result<Vec<CnsVolume>, VSphereError> {
        let filter: String = ids
            .iter()
            .map(|id| format!("<volumeIds><id>{}</id></volumeIds>", xml::escape(id)))
            .collect();
        let result = self
            .call_on(
                Service::Cns,
                "CnsQueryVolume",
                &volume_manager(),
                // vcsim decodes a filter without its type as none and fails.
                &format!(r#"<filter xsi:type="CnsQueryFilter">{filter}</filter>"#),
            )
            .await?;
        Ok(result
            .children_named("volumes")
            .filter_map(CnsVolume::from_element)
            .collect())
    }

    /// Removes volume `id` from CNS; with `delete_disk` its disk is deleted
    /// too, otherwise the disk stays as a plain First Class Disk.
    pub async fn cns_delete_volume(&self, id: &str, delete_disk: bool) -> Result<(), VSphereError> {
        let args = format!(
            "<volumeIds><id>{}</id></volumeIds><deleteDisk>{delete_disk}</deleteDisk>",
            xml::escape(id)
        );
        self.cns_task("CnsDeleteVolume", &args, id)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element order is the WSDL's (`CnsVolumeCreateSpec`); vCenter
    /// rejects another order.
    #[test]
    fn a_create_spec_names_its_backing_disk_and_cluster() {
        let cluster = ContainerCluster {
            cluster_id: "ocp-x7k2p".into(),
            vsphere_user: "csi@vsphere.local".into(),
            distribution: "OpenShift".into(),
        };
        let datastore = MoRef::new("Datastore", "datastore-12");
        let spec = create_spec(&NewVolume {
            name: "pvc-1<2>",
            backing_disk_id: "6c4e-fcd",
            datastore: &datastore,
            capacity_mb: 1024,
            cluster: &cluster,
        });
        assert_eq!(
            spec,
            concat!(
                "<createSpecs><name>pvc-1&lt;2&gt;</name><volumeType>BLOCK</volumeType>",
                r#"<datastores type="Datastore">datastore-12</datastores>"#,
                "<metadata><containerCluster><clusterType>KUBERNETES</clusterType><clusterId>ocp-x7k2p</clusterId>",
                "<vSphereUser>csi@vsphere.local</vSphereUser><clusterFlavor>VANILLA</clusterFlavor>",
                "<clusterDistribution>OpenShift</clusterDistribution></containerCluster></metadata>",
                r#"<backingObjectDetails xsi:type="CnsBlockBackingDetails"><capacityInMb>1024</capacityInMb>"#,
                "<backingDiskId>6c4e-fcd</backingDiskId></backingObjectDetails></createSpecs>"
            )
        );
    }
}
