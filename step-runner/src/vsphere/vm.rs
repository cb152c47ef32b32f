//! Virtual machine operations the migration needs (helper VMs for volume
//! moves, cleanup), each a task awaited and verified.

use super::error::{ErrorKind, VSphereError};
use super::soap::{MoRef, VCenter};
use super::xml;

/// Device key of the first SCSI controller vmi adds to its helper VMs.
const NEW_CONTROLLER_KEY: i32 = -100;

/// A VM to create: where, and how big.
#[derive(Debug, Clone)]
pub struct NewVm<'a> {
    /// VM name.
    pub name: &'a str,
    /// VM folder to create it in.
    pub folder: &'a MoRef,
    /// Resource pool to run it in.
    pub pool: &'a MoRef,
    /// Datastore name for its files (`[name]`).
    pub datastore: &'a str,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
}

impl VCenter {
    /// Creates a powered-off VM with one paravirtual SCSI controller and no
    /// disk, and returns it.
    pub async fn create_vm(&self, vm: &NewVm<'_>) -> Result<MoRef, VSphereError> {
        let args = format!(
            r#"<config><name>{}</name><guestId>otherLinux64Guest</guestId><files><vmPathName>[{}]</vmPathName></files><numCPUs>{}</numCPUs><memoryMB>{}</memoryMB><deviceChange><operation>add</operation><device xsi:type="ParaVirtualSCSIController"><key>{NEW_CONTROLLER_KEY}</key><busNumber>0</busNumber><sharedBus>noSharing</sharedBus></device></deviceChange></config>{}"#,
            xml::escape(vm.name),
            xml::escape(vm.datastore),
            vm.cpus,
            vm.memory_mib,
            vm.pool.to_xml("pool")
        );
        let task = self.task("CreateVM_Task", vm.folder, &args).await?;
        let result = self
            .wait_for_task("CreateVM_Task", &task, self.task_limit())
            .await?;
        result
            .as_ref()
            .and_then(MoRef::from_element)
            .ok_or_else(|| {
                self.error(
                    "CreateVM_Task",
                    Some(vm.folder),
                    ErrorKind::Unexpected("the task returned no VM".into()),
                )
            })
    }

    /// Powers `vm` off (a VM already off is left as it is).
    pub async fn power_off(&self, vm: &MoRef) -> Result<(), VSphereError> {
        if self
            .properties(vm, &["runtime.powerState"])
            .await?
            .text("runtime.powerState")
            == Some("poweredOff")
        {
            return Ok(());
        }
        let task = self.task("PowerOffVM_Task", vm, "").await?;
        self.wait_for_task("PowerOffVM_Task", &task, self.task_limit())
            .await
            .map(|_| ())
    }

    /// Destroys `entity` (a VM: with its files; its disks must be detached
    /// first when they are to be kept).
    pub async fn destroy(&self, entity: &MoRef) -> Result<(), VSphereError> {
        let task = self.task("Destroy_Task", entity, "").await?;
        self.wait_for_task("Destroy_Task", &task, self.task_limit())
            .await
            .map(|_| ())
    }

    /// Removes `vm` from the inventory, keeping its files on the datastore
    /// (what a relocated helper VM's source side needs). Verified: the VM is
    /// gone from the inventory afterwards.
    pub async fn unregister(&self, vm: &MoRef) -> Result<(), VSphereError> {
        self.call("UnregisterVM", vm, "").await?;
        match self.properties(vm, &["name"]).await {
            Err(VSphereError {
                kind: ErrorKind::ManagedObjectNotFound,
                ..
            }) => Ok(()),
            Err(other) => Err(other),
            Ok(_) => Err(self.error(
                "UnregisterVM",
                Some(vm),
                ErrorKind::Unexpected("the VM is still in the inventory after UnregisterVM".into()),
            )),
        }
    }

    /// Attaches the existing disk file `path` (`[datastore] dir/disk.vmdk`)
    /// to `vm` on its first SCSI controller at `unit`.
    pub async fn attach_existing_disk(
        &self,
        vm: &MoRef,
        path: &str,
        unit: u32,
    ) -> Result<(), VSphereError> {
        let controller = self.first_scsi_controller(vm).await?;
        let args = format!(
            r#"<spec><deviceChange><operation>add</operation><device xsi:type="VirtualDisk"><key>-1</key><backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>{}</fileName><diskMode>persistent</diskMode></backing><controllerKey>{controller}</controllerKey><unitNumber>{unit}</unitNumber><capacityInKB>0</capacityInKB></device></deviceChange></spec>"#,
            xml::escape(path)
        );
        let task = self.task("ReconfigVM_Task", vm, &args).await?;
        self.wait_for_task("ReconfigVM_Task", &task, self.task_limit())
            .await
            .map(|_| ())
    }

    /// Detaches the disk backed by `path` from `vm`, keeping its file.
    /// Verified: the disk is no longer attached afterwards. A disk already
    /// detached is left alone.
    pub async fn detach_disk(&self, vm: &MoRef, path: &str) -> Result<(), VSphereError> {
        const METHOD: &str = "ReconfigVM_Task";
        let Some(key) = self.disk_key(vm, path).await? else {
            return Ok(());
        };
        let args = format!(
            r#"<spec><deviceChange><operation>remove</operation><device xsi:type="VirtualDisk"><key>{key}</key><capacityInKB>0</capacityInKB></device></deviceChange></spec>"#
        );
        let task = self.task(METHOD, vm, &args).await?;
        self.wait_for_task(METHOD, &task, self.task_limit()).await?;
        if self.disk_key(vm, path).await?.is_some() {
            return Err(self.error(
                METHOD,
                Some(vm),
                ErrorKind::Unverified(format!("{path} is still attached after the detach")),
            ));
        }
        Ok(())
    }

    /// The device key of the disk backed by `path`, if `vm` has one.
    async fn disk_key(&self, vm: &MoRef, path: &str) -> Result<Option<String>, VSphereError> {
        let content = self.properties(vm, &["config.hardware.device"]).await?;
        Ok(content.get("config.hardware.device").and_then(|devices| {
            devices
                .children
                .iter()
                .filter(|d| d.xsi_type.as_deref() == Some("VirtualDisk"))
                .find(|d| d.child("backing").and_then(|b| b.child_text("fileName")) == Some(path))
                .and_then(|d| d.child_text("key").map(str::to_owned))
        }))
    }

    /// The disk files attached to `vm`.
    pub async fn disk_files(&self, vm: &MoRef) -> Result<Vec<String>, VSphereError> {
        let content = self.properties(vm, &["config.hardware.device"]).await?;
        Ok(content
            .get("config.hardware.device")
            .map(|devices| {
                devices
                    .children
                    .iter()
                    .filter(|d| d.xsi_type.as_deref() == Some("VirtualDisk"))
                    .filter_map(|d| {
                        d.child("backing")
                            .and_then(|b| b.child_text("fileName"))
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn first_scsi_controller(&self, vm: &MoRef) -> Result<String, VSphereError> {
        let content = self.properties(vm, &["config.hardware.device"]).await?;
        content
            .get("config.hardware.device")
            .and_then(|devices| {
                devices.children.iter().find(|d| {
                    d.xsi_type.as_deref().is_some_and(|t| {
                        t.ends_with("SCSIController") || t == "VirtualLsiLogicController"
                    })
                })
            })
            .and_then(|d| d.child_text("key").map(str::to_owned))
            .ok_or_else(|| {
                self.error(
                    "ReconfigVM_Task",
                    Some(vm),
                    ErrorKind::Unexpected("the VM has no SCSI controller".into()),
                )
            })
    }

    /// Starts `method` and returns its task.
    pub(crate) async fn task(
        &self,
        method: &str,
        this: &MoRef,
        args: &str,
    ) -> Result<MoRef, VSphereError> {
        let returnval = self.call(method, this, args).await?;
        MoRef::from_element(&returnval)
            .ok_or_else(|| self.error(method, Some(this), ErrorKind::Unexpected("no task".into())))
    }
}
