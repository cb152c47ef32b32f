//! Where a volume's First Class Disk is in vSphere: which datacenter and
//! datastore of a vCenter hold the disk a CSI volume handle names.

use crate::context::StepError;
use crate::vsphere::fcd::Fcd;
use crate::vsphere::{MoRef, VCenter};

/// A datastore and the datacenter it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datastore {
    /// The datacenter's name.
    pub datacenter: String,
    /// The datastore's name.
    pub name: String,
    /// The datastore.
    pub moref: MoRef,
    /// `summary.type`: `VMFS`, `NFS`, `NFS41`, `vsan`, `vvol`…
    pub kind: String,
    /// `summary.url` (`ds:///vmfs/volumes/<id>/`): the same for the same
    /// storage seen from two vCenters (a LUN or an NFS export mounted by
    /// hosts of both).
    pub url: String,
}

/// Every datastore of `vcenter`, with its datacenter.
pub async fn datastores(vcenter: &VCenter) -> Result<Vec<Datastore>, StepError> {
    let mut found = Vec::new();
    let datacenters = vcenter
        .objects_below(vcenter.root_folder(), "Datacenter", &["name"])
        .await?;
    for datacenter in datacenters {
        let dc_name = datacenter.text("name").unwrap_or_default().to_owned();
        for datastore in vcenter
            .objects_below(
                &datacenter.obj,
                "Datastore",
                &["name", "summary.type", "summary.url"],
            )
            .await?
        {
            found.push(Datastore {
                datacenter: dc_name.clone(),
                name: datastore.text("name").unwrap_or_default().to_owned(),
                kind: datastore
                    .text("summary.type")
                    .unwrap_or_default()
                    .to_owned(),
                url: datastore.text("summary.url").unwrap_or_default().to_owned(),
                moref: datastore.obj,
            });
        }
    }
    Ok(found)
}

/// Whether `a` and `b` are the same storage, seen from two vCenters: Copy
/// mode would then write the copy over the very files it reads.
pub fn same_storage(a: &Datastore, b: &Datastore) -> bool {
    !a.url.is_empty() && a.url.trim_end_matches('/') == b.url.trim_end_matches('/')
}

/// The disk `id` and the datastore holding it, searching `datastores`
/// (those named in `hint` first).
pub async fn find_disk<'a>(
    vcenter: &VCenter,
    datastores: &'a [Datastore],
    id: &str,
    hint: Option<&str>,
) -> Result<Option<(Fcd, &'a Datastore)>, StepError> {
    let mut ordered: Vec<&Datastore> = datastores.iter().collect();
    ordered.sort_by_key(|d| Some(d.moref.value.as_str()) != hint);
    for datastore in ordered {
        if let Some(disk) = vcenter.retrieve_disk(id, &datastore.moref).await? {
            return Ok(Some((disk, datastore)));
        }
    }
    Ok(None)
}

/// Whether disks on `datastore` can be read and written as files over the
/// datastore HTTP interface (vSAN and vVols keep their extents as objects).
pub fn serves_files(datastore: &Datastore) -> bool {
    !matches!(
        datastore.kind.to_ascii_lowercase().as_str(),
        "vsan" | "vvol"
    )
}

/// The datastore named by an inventory path such as
/// `/datacenter-b/datastore/LocalDS_0` (the failure domain's
/// `topology.datastore`), among `datastores`.
pub fn by_path<'a>(datastores: &'a [Datastore], path: &str) -> Option<&'a Datastore> {
    let trimmed = path.trim_start_matches('/');
    let (datacenter, rest) = trimmed.split_once('/')?;
    let name = rest.rsplit('/').next()?;
    datastores
        .iter()
        .find(|d| d.datacenter == datacenter && d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_domain_datastore_path_names_datacenter_and_datastore() {
        let stores = vec![
            Datastore {
                datacenter: "dc-a".into(),
                name: "ds".into(),
                moref: MoRef::new("Datastore", "datastore-1"),
                kind: "VMFS".into(),
                url: "ds:///vmfs/volumes/5f1e-a/".into(),
            },
            Datastore {
                datacenter: "dc-b".into(),
                name: "ds".into(),
                moref: MoRef::new("Datastore", "datastore-2"),
                kind: "VMFS".into(),
                url: "ds:///vmfs/volumes/5f1e-b/".into(),
            },
        ];
        let found = by_path(&stores, "/dc-b/datastore/ds").unwrap();
        assert_eq!(found.moref.value, "datastore-2");
        assert!(by_path(&stores, "/dc-c/datastore/ds").is_none());
    }

    #[test]
    fn the_same_lun_or_export_under_two_vcenters_is_the_same_storage() {
        let at = |url: &str, server: &str| Datastore {
            datacenter: server.into(),
            name: "shared".into(),
            moref: MoRef::new("Datastore", "datastore-9"),
            kind: "NFS".into(),
            url: url.into(),
        };
        assert!(same_storage(
            &at("ds:///vmfs/volumes/0a1b2c3d-e4f5a6b7/", "vc-a"),
            &at("ds:///vmfs/volumes/0a1b2c3d-e4f5a6b7", "vc-b")
        ));
        assert!(!same_storage(
            &at("ds:///vmfs/volumes/0a1b2c3d-e4f5a6b7/", "vc-a"),
            &at("ds:///vmfs/volumes/99999999-e4f5a6b7/", "vc-b")
        ));
        assert!(
            !same_storage(&at("", "vc-a"), &at("", "vc-b")),
            "unknown is not the same"
        );
    }
}
