//! vCenter inventories shaped like an installer-provisioned OpenShift
//! cluster: the source has the datacenter, cluster, datastore, port group,
//! the VM folder named after the infrastructure id and the RHCOS template the
//! installer made; the target has other names, its own template, and no
//! folder yet (step 06 creates it).

use crate::SimError;
use crate::vcsim::VCenterSim;

/// The names of one vCenter's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// Datacenter name (the region).
    pub datacenter: String,
    /// Compute cluster name (the zone).
    pub cluster: String,
    /// ESXi host in the cluster.
    pub host: String,
    /// Datastore name.
    pub datastore: String,
    /// Distributed switch holding the port group.
    pub switch: String,
    /// Port group the machines use.
    pub port_group: String,
    /// VM folder name (the infrastructure id) when it exists.
    pub folder: Option<String>,
    /// RHCOS template name.
    pub template: String,
}

impl Inventory {
    /// The source vCenter of a cluster whose infrastructure id is `infra_id`,
    /// as the installer leaves it (generated region and zone).
    pub fn source(infra_id: &str) -> Inventory {
        Inventory {
            datacenter: "datacenter-a".into(),
            cluster: "cluster-a".into(),
            host: "esxi-a1.example.com".into(),
            datastore: "datastore-a".into(),
            switch: "dvs-a".into(),
            port_group: "ocp-network-a".into(),
            folder: Some(infra_id.to_owned()),
            template: format!("{infra_id}-rhcos-generated-region-generated-zone"),
        }
    }

    /// The target vCenter: different names, an uploaded template, no folder.
    pub fn target() -> Inventory {
        Inventory {
            datacenter: "datacenter-b".into(),
            cluster: "cluster-b".into(),
            host: "esxi-b1.example.com".into(),
            datastore: "datastore-b".into(),
            switch: "dvs-b".into(),
            port_group: "ocp-network-b".into(),
            folder: None,
            template: "rhcos-template-b".into(),
        }
    }

    /// `/<datacenter>/host/<cluster>`
    pub fn cluster_path(&self) -> String {
        format!("/{}/host/{}", self.datacenter, self.cluster)
    }

    /// `/<datacenter>/host/<cluster>/Resources`
    pub fn resource_pool_path(&self) -> String {
        format!("{}/Resources", self.cluster_path())
    }

    /// `/<datacenter>/datastore/<datastore>`
    pub fn datastore_path(&self) -> String {
        format!("/{}/datastore/{}", self.datacenter, self.datastore)
    }

    /// `/<datacenter>/network/<port group>`
    pub fn network_path(&self) -> String {
        format!("/{}/network/{}", self.datacenter, self.port_group)
    }

    /// `/<datacenter>/vm/<folder>`, or `/<datacenter>/vm` without a folder.
    pub fn folder_path(&self) -> String {
        match &self.folder {
            Some(folder) => format!("/{}/vm/{folder}", self.datacenter),
            None => format!("/{}/vm", self.datacenter),
        }
    }

    /// Inventory path of the template.
    pub fn template_path(&self) -> String {
        format!("{}/{}", self.folder_path(), self.template)
    }

    /// Creates this inventory in `vcenter` (which must be empty).
    pub fn create_in(&self, vcenter: &VCenterSim) -> Result<(), SimError> {
        let dc = self.datacenter.as_str();
        let datastore_dir = vcenter.dir().join(&self.datastore);
        std::fs::create_dir_all(&datastore_dir).map_err(|e| {
            SimError::Setup(format!("cannot create {}: {e}", datastore_dir.display()))
        })?;
        let host_path = format!("{}/{}", self.cluster_path(), self.host);
        let switch_path = format!("/{dc}/network/{}", self.switch);
        vcenter.govc(&["datacenter.create", dc])?;
        vcenter.govc(&["cluster.create", "-dc", dc, &self.cluster])?;
        vcenter.govc(&[
            "cluster.add",
            "-dc",
            dc,
            "-cluster",
            &self.cluster,
            "-hostname",
            &self.host,
            "-username",
            "root",
            "-password",
            "unused",
            "-noverify",
        ])?;
        vcenter.govc(&[
            "datastore.create",
            "-type",
            "local",
            "-name",
            &self.datastore,
            "-path",
            &datastore_dir.to_string_lossy(),
            &host_path,
        ])?;
        vcenter.govc(&["dvs.create", "-dc", dc, &self.switch])?;
        vcenter.govc(&["dvs.add", "-dvs", &switch_path, &host_path])?;
        vcenter.govc(&[
            "dvs.portgroup.add",
            "-dc",
            dc,
            "-dvs",
            &self.switch,
            &self.port_group,
        ])?;
        if self.folder.is_some() {
            vcenter.govc(&["folder.create", &self.folder_path()])?;
        }
        vcenter.govc(&[
            "vm.create",
            "-dc",
            dc,
            "-ds",
            &self.datastore,
            "-pool",
            &self.resource_pool_path(),
            "-folder",
            &self.folder_path(),
            "-net",
            &self.port_group,
            "-on=false",
            "-c",
            "4",
            "-m",
            "16384",
            "-disk",
            "120G",
            &self.template,
        ])?;
        vcenter.govc(&["vm.markastemplate", &self.template_path()])?;
        Ok(())
    }
}
