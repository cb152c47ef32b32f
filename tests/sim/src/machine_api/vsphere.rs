//! The vSphere actuator of the machine API stand-in: what it does in a
//! vCenter for one Machine, with `govc` and the credentials the Machine's
//! secret holds for its `workspace.server` (research §4.2). Every function
//! blocks; the controller runs them in `spawn_blocking`.

use serde_json::Value;

use crate::vcsim::GovcTarget;

/// Why a Machine could not get (or lose) its VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// The Machine cannot work as written: phase `Failed`, `errorReason:
    /// InvalidConfiguration` (`InvalidMachineConfiguration` in the real
    /// actuator).
    Invalid(String),
    /// Worth retrying (a refused login, a vCenter error): the message goes
    /// to `status.errorMessage` and the phase stays.
    Transient(String),
}

/// `govc` against one vCenter as one user.
pub(crate) struct Govc<'a> {
    pub target: &'a GovcTarget,
    pub username: &'a str,
    pub password: &'a str,
}

impl Govc<'_> {
    fn run(&self, args: &[&str]) -> Result<String, Trouble> {
        self.target
            .govc_as(self.username, self.password, args)
            .map_err(|e| Trouble::Transient(readable(&e.to_string())))
    }

    fn json(&self, args: &[&str]) -> Result<Value, Trouble> {
        let text = self.run(args)?;
        serde_json::from_str(&text).map_err(|e| {
            Trouble::Transient(format!("govc {}: not JSON ({e}): {text}", args.join(" ")))
        })
    }
}

/// A govc error as a person reads it: `govc: ` instead of the program's
/// path, and a fault `-json` printed as JSON as its code and text.
fn readable(message: &str) -> String {
    let mut text = message.to_owned();
    if let Some(end) = text.find("/govc: ") {
        let start = text[..end].rfind(' ').map_or(0, |at| at + 1);
        text.replace_range(start..end + 1, "");
    }
    let Some(at) = text.find('{') else {
        return text;
    };
    match serde_json::from_str::<Value>(&text[at..]) {
        Ok(fault) if fault["Fault"]["String"].is_string() => format!(
            "{}{}: {}",
            &text[..at],
            fault["Fault"]["Code"].as_str().unwrap_or("fault"),
            fault["Fault"]["String"].as_str().unwrap_or_default()
        ),
        _ => text,
    }
}

/// Where and how a Machine's VM is cloned: the provider spec's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Placement {
    pub datacenter: String,
    pub folder: String,
    pub resource_pool: String,
    pub datastore: String,
    pub network: Option<String>,
    pub template: String,
    pub cpus: Option<u64>,
    pub memory_mib: Option<u64>,
}

impl Placement {
    /// The placement a `VSphereMachineProviderSpec` asks for.
    pub fn of(spec: &Value) -> Placement {
        let workspace = &spec["workspace"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Placement {
            datacenter: text(&workspace["datacenter"]),
            folder: text(&workspace["folder"]),
            resource_pool: text(&workspace["resourcePool"]),
            datastore: text(&workspace["datastore"]),
            network: spec["network"]["devices"][0]["networkName"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            template: text(&spec["template"]),
            cpus: spec["numCPUs"].as_u64().filter(|n| *n > 0),
            memory_mib: spec["memoryMiB"].as_u64().filter(|n| *n > 0),
        }
    }

    /// The VM's inventory path once cloned as `name`.
    pub fn vm_path(&self, name: &str) -> String {
        if self.folder.is_empty() {
            format!("/{}/vm/{name}", self.datacenter)
        } else {
            format!("{}/{name}", self.folder.trim_end_matches('/'))
        }
    }

    /// The compute cluster the resource pool belongs to: its path up to
    /// `/Resources`.
    pub fn cluster_path(&self) -> Option<String> {
        let pool = self.resource_pool.trim_end_matches('/');
        pool.find("/Resources")
            .map(|at| pool[..at].to_owned())
            .filter(|c| !c.is_empty())
    }
}

/// What the controller writes back about a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmFacts {
    /// BIOS UUID: `spec.providerID` is `vsphere://<uuid>`.
    pub uuid: String,
    /// `poweredOn`, `poweredOff`…
    pub power_state: String,
    /// Its CPUs.
    pub cpus: u64,
    /// Its memory in MiB.
    pub memory_mib: u64,
    /// The `openshift-region` tag on its datacenter, if any.
    pub region: Option<String>,
    /// The `openshift-zone` tag on its compute cluster, if any.
    pub zone: Option<String>,
}

/// Clones the Machine `name`'s VM unless its datacenter has a VM of that
/// name already (the actuator's `Exists` before `Create`). Returns whether
/// it cloned one.
pub(crate) fn ensure_clone(
    govc: &Govc<'_>,
    name: &str,
    placement: &Placement,
) -> Result<bool, Trouble> {
    if find_vm(govc, &placement.datacenter, name)?.is_some() {
        return Ok(false);
    }
    clone(govc, name, placement)?;
    Ok(true)
}

/// The Machine `name`'s VM once cloned, with the cluster-id tag attached,
/// and the region and zone tags of where it runs.
pub(crate) fn reconcile_vm(
    govc: &Govc<'_>,
    name: &str,
    placement: &Placement,
    infra_id: &str,
) -> Result<VmFacts, Trouble> {
    let mut facts = find_vm(govc, &placement.datacenter, name)?
        .ok_or_else(|| Trouble::Transient(format!("{name}: the cloned VM is not there")))?;
    attach_cluster_tag(govc, &placement.vm_path(name), infra_id)?;
    let (region, zone) = region_and_zone(govc, placement)?;
    facts.region = region;
    facts.zone = zone;
    Ok(facts)
}

/// The VM named `name` in `datacenter` (searched in its whole VM folder
/// tree, as the actuator's finder does), if there is one.
pub(crate) fn find_vm(
    govc: &Govc<'_>,
    datacenter: &str,
    name: &str,
) -> Result<Option<VmFacts>, Trouble> {
    let info = govc.json(&["vm.info", "-json", "-dc", datacenter, name])?;
    let Some(vm) = info["virtualMachines"]
        .as_array()
        .and_then(|vms| vms.first())
    else {
        return Ok(None);
    };
    let hardware = &vm["config"]["hardware"];
    Ok(Some(VmFacts {
        uuid: vm["config"]["uuid"].as_str().unwrap_or_default().to_owned(),
        power_state: vm["runtime"]["powerState"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        cpus: hardware["numCPU"].as_u64().unwrap_or_default(),
        memory_mib: hardware["memoryMB"].as_u64().unwrap_or_default(),
        region: None,
        zone: None,
    }))
}

/// Clones the template (a name, searched in the datacenter, or a path)
/// into the folder, pool and datastore, on the network, powered on.
fn clone(govc: &Govc<'_>, name: &str, placement: &Placement) -> Result<(), Trouble> {
    let mut args: Vec<String> = ["vm.clone", "-dc", &placement.datacenter, "-vm"]
        .map(str::to_owned)
        .to_vec();
    args.push(placement.template.clone());
    for (flag, value) in [
        ("-folder", &placement.folder),
        ("-pool", &placement.resource_pool),
        ("-ds", &placement.datastore),
    ] {
        if !value.is_empty() {
            args.extend([flag.to_owned(), value.clone()]);
        }
    }
    if let Some(network) = &placement.network {
        args.extend(["-net".to_owned(), network.clone()]);
    }
    if let Some(cpus) = placement.cpus {
        args.extend(["-c".to_owned(), cpus.to_string()]);
    }
    if let Some(memory) = placement.memory_mib {
        args.extend(["-m".to_owned(), memory.to_string()]);
    }
    args.extend(["-on=true".to_owned(), name.to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    govc.run(&args).map(|_| ()).map_err(classify_clone_error)
}

/// A clone error as the actuator reports it: an object of the workspace
/// that does not exist is an invalid configuration (`handleVSphereError`),
/// anything else is retried.
fn classify_clone_error(trouble: Trouble) -> Trouble {
    let Trouble::Transient(message) = &trouble else {
        return trouble;
    };
    if !message.contains("not found") {
        return trouble;
    }
    let invalid = [
        ("govc: vm '", "template not found, specify valid value"),
        ("govc: folder '", "folder not found, specify valid value"),
        (
            "govc: datastore '",
            "datastore not found, specify valid value",
        ),
        (
            "govc: resource pool '",
            "resource pool not found, specify valid value",
        ),
    ];
    invalid
        .iter()
        .find(|(prefix, _)| message.contains(prefix))
        .map(|(_, reason)| Trouble::Invalid(format!("{reason} ({message})")))
        .unwrap_or(trouble)
}

/// Attaches tag `<infra_id>` of category `openshift-<infra_id>` to the VM
/// when both exist in this vCenter and it is not attached yet; skips
/// silently otherwise, as the actuator does on clusters without the tag.
fn attach_cluster_tag(govc: &Govc<'_>, vm_path: &str, infra_id: &str) -> Result<(), Trouble> {
    if infra_id.is_empty() {
        return Ok(());
    }
    let category = format!("openshift-{infra_id}");
    let categories = govc.json(&["tags.category.ls", "-json"])?;
    if category_id(&categories, &category).is_none() {
        return Ok(());
    }
    let tags = govc.json(&["tags.ls", "-json", "-c", &category])?;
    let exists = tags
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["name"] == infra_id);
    if !exists
        || attached_tags(govc, &[vm_path])?
            .iter()
            .any(|t| t.1 == infra_id)
    {
        return Ok(());
    }
    govc.run(&["tags.attach", "-c", &category, infra_id, vm_path])
        .map(|_| ())
}

/// The ID of the category named `name` in `tags.category.ls -json` output.
fn category_id(categories: &Value, name: &str) -> Option<String> {
    categories
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["id"].as_str())
        .map(str::to_owned)
}

/// (category ID, tag name) of every tag attached to the objects at `paths`.
fn attached_tags(govc: &Govc<'_>, paths: &[&str]) -> Result<Vec<(String, String)>, Trouble> {
    let mut args = vec!["tags.attached.ls", "-l", "-json", "-r"];
    args.extend_from_slice(paths);
    let attached = govc.json(&args)?;
    Ok(attached
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|object| object["tags"].as_array().cloned().unwrap_or_default())
        .filter_map(|tag| {
            Some((
                tag["category_id"].as_str()?.to_owned(),
                tag["name"].as_str()?.to_owned(),
            ))
        })
        .collect())
}

/// The `openshift-region` tag on the datacenter and the `openshift-zone`
/// tag on the compute cluster, when the categories exist and tags are
/// attached.
fn region_and_zone(
    govc: &Govc<'_>,
    placement: &Placement,
) -> Result<(Option<String>, Option<String>), Trouble> {
    let categories = govc.json(&["tags.category.ls", "-json"])?;
    let (Some(region_category), Some(zone_category)) = (
        category_id(&categories, "openshift-region"),
        category_id(&categories, "openshift-zone"),
    ) else {
        return Ok((None, None));
    };
    let datacenter = format!("/{}", placement.datacenter);
    let tag_in = |path: &str, category: &str| -> Result<Option<String>, Trouble> {
        Ok(attached_tags(govc, &[path])?
            .into_iter()
            .find(|(id, _)| id == category)
            .map(|(_, name)| name))
    };
    let region = tag_in(&datacenter, &region_category)?;
    let zone = match placement.cluster_path() {
        Some(cluster) => tag_in(&cluster, &zone_category)?,
        None => None,
    };
    Ok((region, zone))
}

/// Destroys the VM named `name` in `datacenter` (govc powers it off first)
/// and checks it is gone. Returns whether there was one to destroy.
pub(crate) fn destroy_vm(govc: &Govc<'_>, datacenter: &str, name: &str) -> Result<bool, Trouble> {
    if find_vm(govc, datacenter, name)?.is_none() {
        return Ok(false);
    }
    govc.run(&["vm.destroy", "-dc", datacenter, name])?;
    match find_vm(govc, datacenter, name)? {
        None => Ok(true),
        Some(_) => Err(Trouble::Transient(format!(
            "{name}: the VM is still there after vm.destroy"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placement_reads_the_provider_spec() {
        let spec = json!({
            "template": "rhcos-template-b",
            "workspace": {"server": "127.0.0.11", "datacenter": "datacenter-b",
                "folder": "/datacenter-b/vm/ocp", "datastore": "/datacenter-b/datastore/datastore-b",
                "resourcePool": "/datacenter-b/host/cluster-b/Resources"},
            "network": {"devices": [{"networkName": "ocp-network-b"}]},
            "numCPUs": 4, "memoryMiB": 16384,
        });
        let placement = Placement::of(&spec);
        assert_eq!(placement.network.as_deref(), Some("ocp-network-b"));
        assert_eq!(placement.vm_path("m"), "/datacenter-b/vm/ocp/m");
        assert_eq!(
            placement.cluster_path().as_deref(),
            Some("/datacenter-b/host/cluster-b")
        );
        assert_eq!(
            (placement.cpus, placement.memory_mib),
            (Some(4), Some(16384))
        );
        let bare = Placement::of(&json!({"workspace": {"datacenter": "dc"}}));
        assert_eq!(bare.vm_path("m"), "/dc/vm/m");
        assert_eq!(bare.cluster_path(), None);
    }

    #[test]
    fn govc_errors_read_well() {
        assert_eq!(
            readable("govc vm.clone failed: /cache/tools/bin/govc: folder '/dc/vm/x' not found"),
            "govc vm.clone failed: govc: folder '/dc/vm/x' not found"
        );
        let fault = r#"govc vm.info -json failed: {"Fault": {"Code": "ServerFaultCode", "String": "Login failure", "Detail": {"Fault": {}}}}"#;
        assert_eq!(
            readable(fault),
            "govc vm.info -json failed: ServerFaultCode: Login failure"
        );
    }

    #[test]
    fn a_missing_workspace_object_is_an_invalid_configuration() {
        let folder = classify_clone_error(Trouble::Transient(
            "govc vm.clone … failed: govc: folder '/dc/vm/x' not found".into(),
        ));
        assert!(
            matches!(&folder, Trouble::Invalid(m) if m.starts_with("folder not found")),
            "{folder:?}"
        );
        let login = Trouble::Transient("govc: ServerFaultCode: Login failure".into());
        assert_eq!(classify_clone_error(login.clone()), login);
    }
}
