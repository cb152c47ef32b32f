//! First Class Disks (`VcenterVStorageObjectManager`): the vSphere objects
//! behind CSI volumes. Volume moves register a copied disk file as an FCD on
//! the target and read one back to prove it is there.

use super::datastore::DatastoreFile;
use super::error::{ErrorKind, VSphereError};
use super::soap::{MoRef, VCenter};
use super::xml::{self, Element};

/// A First Class Disk as vCenter describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fcd {
    /// The disk id (`config.id.id`), which is also the CSI volume handle.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Capacity in MiB.
    pub capacity_mb: u64,
    /// The datastore holding it.
    pub datastore: MoRef,
    /// Its backing file, `[datastore] path`.
    pub file_path: String,
    /// The VMs using it (`config.consumerId`): empty when attached to none.
    pub consumers: Vec<String>,
}

impl Fcd {
    fn from_element(object: &Element) -> Option<Fcd> {
        let config = object.child("config")?;
        let backing = config.child("backing")?;
        Some(Fcd {
            id: config.child("id")?.child_text("id")?.to_owned(),
            name: config.child_text("name").unwrap_or_default().to_owned(),
            capacity_mb: config.child_text("capacityInMB")?.parse().ok()?,
            datastore: MoRef::from_element(backing.child("datastore")?)?,
            file_path: backing
                .child_text("filePath")
                .unwrap_or_default()
                .to_owned(),
            consumers: config
                .children
                .iter()
                .filter(|c| c.name == "consumerId")
                .filter_map(|c| c.child_text("id").map(str::to_owned))
                .collect(),
        })
    }
}

fn id_xml(id: &str) -> String {
    format!("<id><id>{}</id></id>", xml::escape(id))
}

impl VCenter {
    fn fcd(&self, method: &str, object: Option<&Element>) -> Result<Fcd, VSphereError> {
        object.and_then(Fcd::from_element).ok_or_else(|| {
            self.error(
                method,
                None,
                ErrorKind::Unexpected("no VStorageObject in the answer".into()),
            )
        })
    }

    /// Creates an empty thin disk of `capacity_mb` MiB named `name` on
    /// `datastore`, kept when a VM it is attached to is deleted.
    pub async fn create_disk(
        &self,
        name: &str,
        datastore: &MoRef,
        capacity_mb: u64,
    ) -> Result<Fcd, VSphereError> {
        const METHOD: &str = "CreateDisk_Task";
        let manager = self.vstorage_object_manager(METHOD)?;
        let args = format!(
            r#"<spec><name>{}</name><keepAfterDeleteVm>true</keepAfterDeleteVm><backingSpec xsi:type="VslmCreateSpecDiskFileBackingSpec">{}<provisioningType>thin</provisioningType></backingSpec><capacityInMB>{capacity_mb}</capacityInMB></spec>"#,
            xml::escape(name),
            datastore.to_xml("datastore")
        );
        let task = self.task(METHOD, &manager, &args).await?;
        let result = self.wait_for_task(METHOD, &task, self.task_limit()).await?;
        self.fcd(METHOD, result.as_ref())
    }

    /// The disk `id` on `datastore`, or `None` when vCenter does not know it
    /// there (or its backing file is gone).
    pub async fn retrieve_disk(
        &self,
        id: &str,
        datastore: &MoRef,
    ) -> Result<Option<Fcd>, VSphereError> {
        const METHOD: &str = "RetrieveVStorageObject";
        let manager = self.vstorage_object_manager(METHOD)?;
        let args = format!("{}{}", id_xml(id), datastore.to_xml("datastore"));
        match self.call(METHOD, &manager, &args).await {
            Ok(object) => self.fcd(METHOD, Some(&object)).map(Some),
            Err(VSphereError {
                kind: ErrorKind::Fault { fault, .. },
                ..
            }) if fault == "NotFound" => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Registers an existing disk file as a First Class Disk named `name`
    /// and returns it. A file that is missing or already registered is an
    /// `InvalidArgument` error.
    pub async fn register_disk(
        &self,
        file: &DatastoreFile,
        name: &str,
    ) -> Result<Fcd, VSphereError> {
        const METHOD: &str = "RegisterDisk";
        let manager = self.vstorage_object_manager(METHOD)?;
        let url = file
            .url(self.base_url())
            .map_err(|e| self.error(METHOD, Some(&manager), ErrorKind::Unexpected(e)))?;
        let args = format!(
            "<path>{}</path><name>{}</name>",
            xml::escape(url.as_str()),
            xml::escape(name)
        );
        let object = self.call(METHOD, &manager, &args).await.map_err(|mut e| {
            e.object = Some(file.to_string());
            e
        })?;
        self.fcd(METHOD, Some(&object))
    }

    /// The ids of every First Class Disk on `datastore`.
    pub async fn list_disks(&self, datastore: &MoRef) -> Result<Vec<String>, VSphereError> {
        const METHOD: &str = "ListVStorageObject";
        let manager = self.vstorage_object_manager(METHOD)?;
        let answer = self
            .call_all(METHOD, &manager, &datastore.to_xml("datastore"))
            .await?;
        Ok(answer
            .iter()
            .filter_map(|id| id.child_text("id").map(str::to_owned))
            .collect())
    }

    /// Deletes disk `id` on `datastore`, file included.
    pub async fn delete_disk(&self, id: &str, datastore: &MoRef) -> Result<(), VSphereError> {
        const METHOD: &str = "DeleteVStorageObject_Task";
        let manager = self.vstorage_object_manager(METHOD)?;
        let args = format!("{}{}", id_xml(id), datastore.to_xml("datastore"));
        let task = self.task(METHOD, &manager, &args).await?;
        self.wait_for_task(METHOD, &task, self.task_limit())
            .await
            .map(|_| ())
    }

    /// Attaches First Class Disk `id` (on `datastore`) to `vm`, keeping its
    /// identity, so vCenter records the VM as its consumer.
    pub async fn attach_fcd(
        &self,
        vm: &MoRef,
        id: &str,
        datastore: &MoRef,
    ) -> Result<(), VSphereError> {
        const METHOD: &str = "AttachDisk_Task";
        let args = format!(
            "<diskId><id>{}</id></diskId>{}",
            xml::escape(id),
            datastore.to_xml("datastore")
        );
        let task = self.task(METHOD, vm, &args).await?;
        self.wait_for_task(METHOD, &task, self.task_limit())
            .await
            .map(|_| ())
    }

    /// Detaches First Class Disk `id` from `vm`, keeping the disk.
    pub async fn detach_fcd(&self, vm: &MoRef, id: &str) -> Result<(), VSphereError> {
        const METHOD: &str = "DetachDisk_Task";
        let args = format!("<diskId><id>{}</id></diskId>", xml::escape(id));
        let task = self.task(METHOD, vm, &args).await?;
        self.wait_for_task(METHOD, &task, self.task_limit())
            .await
            .map(|_| ())
    }
}
