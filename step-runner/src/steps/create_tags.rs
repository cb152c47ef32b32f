//! Step 05 create-tags: the `openshift-region` tag on each failure domain's
//! datacenter and the `openshift-zone` tag on its compute cluster, on the
//! target vCenters for the vmi's failure domains and on the source vCenter
//! for the cluster's current ones. Once old and new failure domains coexist
//! the cluster has more than one, zoning turns on, and every node (old ones
//! included) is looked up by these tags (research §7).
//!
//! Existing compatible categories, tags and attachments are reused. An
//! incompatible one (a category that cannot be attached to the object, an
//! object already carrying another region or zone) stops the step before
//! anything is created, with every problem listed. What the step creates is
//! recorded before it is created; the undo removes exactly that.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backup::Backups;
use crate::context::{Outcome, StepContext, StepError};
use crate::infrastructure;
use crate::vcenters::{
    connect_source, connect_target, infrastructure_id, source_server, source_server_in,
};
use crate::vsphere::{Cardinality, Category, Tag, Tagging, VCenter};

/// The category of region tags.
pub const REGION_CATEGORY: &str = "openshift-region";
/// The category of zone tags.
pub const ZONE_CATEGORY: &str = "openshift-zone";
/// The backup key listing what this step created.
pub const CREATED_BACKUP: &str = "05-create-tags.created";

/// One tag a failure domain needs on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The vCenter.
    pub server: String,
    /// `openshift-region` or `openshift-zone`.
    pub category: &'static str,
    /// The tag's name (the failure domain's region or zone).
    pub tag: String,
    /// The inventory path of the datacenter or compute cluster.
    pub object: String,
    /// The vSphere type the category must allow.
    pub object_type: &'static str,
    /// The failure domain, for messages.
    pub failure_domain: String,
}

/// Something this step created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Created {
    /// A category.
    Category {
        /// Its vCenter.
        server: String,
        /// Its name.
        name: String,
    },
    /// A tag.
    Tag {
        /// Its vCenter.
        server: String,
        /// Its category.
        category: String,
        /// Its name.
        name: String,
    },
    /// A tag attached to an object.
    Attachment {
        /// Its vCenter.
        server: String,
        /// The tag's category.
        category: String,
        /// The tag.
        tag: String,
        /// The object's inventory path.
        object: String,
    },
}

impl Created {
    fn server(&self) -> &str {
        match self {
            Created::Category { server, .. }
            | Created::Tag { server, .. }
            | Created::Attachment { server, .. } => server,
        }
    }
}

/// The tags every failure domain needs: the vmi's on the targets, the
/// Infrastructure's current ones on the source.
pub fn wanted(
    source: &str,
    source_domains: &[Value],
    targets: &[vmi_api::topology::FailureDomain],
) -> Vec<Wanted> {
    let mut out = Vec::new();
    let mut push = |server: &str, name: &str, region: &str, zone: &str, dc: &str, cluster: &str| {
        out.push(Wanted {
            server: server.to_owned(),
            category: REGION_CATEGORY,
            tag: region.to_owned(),
            object: format!("/{dc}"),
            object_type: "Datacenter",
            failure_domain: name.to_owned(),
        });
        out.push(Wanted {
            server: server.to_owned(),
            category: ZONE_CATEGORY,
            tag: zone.to_owned(),
            object: cluster.to_owned(),
            object_type: "ClusterComputeResource",
            failure_domain: name.to_owned(),
        });
    };
    for domain in source_domains {
        if domain["server"].as_str() != Some(source) {
            continue;
        }
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        push(
            source,
            &text(&domain["name"]),
            &text(&domain["region"]),
            &text(&domain["zone"]),
            &text(&domain["topology"]["datacenter"]),
            &text(&domain["topology"]["computeCluster"]),
        );
    }
    for domain in targets {
        push(
            &domain.server,
            &domain.name,
            &domain.region,
            &domain.zone,
            &domain.topology.datacenter,
            &domain.topology.compute_cluster,
        );
    }
    out
}

/// What one vCenter has of the wanted tags.
struct Found {
    categories: Vec<Category>,
    tags: Vec<Tag>,
}

impl Found {
    async fn read(tagging: &Tagging, cluster_category: &str) -> Result<Found, StepError> {
        let categories: Vec<Category> = tagging
            .categories()
            .await?
            .into_iter()
            .filter(|c| {
                c.name == REGION_CATEGORY || c.name == ZONE_CATEGORY || c.name == cluster_category
            })
            .collect();
        let mut tags = Vec::new();
        for category in &categories {
            tags.extend(tagging.tags_in(&category.id).await?);
        }
        Ok(Found { categories, tags })
    }

    fn category(&self, name: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.name == name)
    }

    fn tag(&self, category: &str, name: &str) -> Option<&Tag> {
        let category = self.category(category)?;
        self.tags
            .iter()
            .find(|t| t.category_id == category.id && t.name == name)
    }
}

/// A vCenter's connections for this step.
struct Session {
    vcenter: VCenter,
    tagging: Tagging,
}

impl Session {
    async fn open(context: &StepContext, server: &str, source: &str) -> Result<Session, StepError> {
        let vcenter = if server == source {
            connect_source(context).await?
        } else {
            connect_target(context, server).await?
        };
        let tagging = vcenter.tagging().await?;
        Ok(Session { vcenter, tagging })
    }

    /// Logs out of both sessions now (a step's runtime ends with it).
    async fn close(self) {
        if let Err(err) = self.tagging.logout().await {
            tracing::warn!(vcenter = %self.vcenter.server(), "could not close the vAPI session: {err}");
        }
        if let Err(err) = self.vcenter.logout().await {
            tracing::warn!(vcenter = %self.vcenter.server(), "could not log out: {err}");
        }
    }
}

/// The problems with `wanted` on one vCenter; empty when the step can go on.
async fn check(
    session: &Session,
    found: &Found,
    wanted: &[&Wanted],
) -> Result<Vec<String>, StepError> {
    let mut problems = Vec::new();
    for want in wanted {
        let server = &want.server;
        if let Some(category) = found.category(want.category)
            && !category.associable_types.is_empty()
            && !category
                .associable_types
                .iter()
                .any(|t| t == want.object_type)
        {
            problems.push(format!(
                "vCenter {server}: category {} may only be attached to {}, not to a {} ({}); add {} to its associable types",
                want.category,
                category.associable_types.join(", "),
                want.object_type,
                want.object,
                want.object_type
            ));
            continue;
        }
        let Some(object) = session.vcenter.find_by_inventory_path(&want.object).await? else {
            problems.push(format!(
                "vCenter {server}: {} (failure domain {}) does not exist; fix the failure domain's topology",
                want.object, want.failure_domain
            ));
            continue;
        };
        if object.kind != want.object_type {
            problems.push(format!(
                "vCenter {server}: {} is a {}, not a {}; fix the failure domain's topology",
                want.object, object.kind, want.object_type
            ));
            continue;
        }
        let Some(category) = found.category(want.category) else {
            continue;
        };
        let attached = session.tagging.attached_tags(&object).await?;
        let others: Vec<&str> = found
            .tags
            .iter()
            .filter(|t| t.category_id == category.id && t.name != want.tag)
            .filter(|t| attached.contains(&t.id))
            .map(|t| t.name.as_str())
            .collect();
        if !others.is_empty() {
            problems.push(format!(
                "vCenter {server}: {} already carries {} tag {} but failure domain {} says {}; make them agree (change the failure domain or the tag)",
                want.object,
                want.category,
                others.join(", "),
                want.failure_domain,
                want.tag
            ));
        }
    }
    Ok(problems)
}

async fn load_created(backups: &Backups) -> Result<Vec<Created>, StepError> {
    match backups.load(CREATED_BACKUP).await? {
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            StepError::Refused(format!(
                "the backup {} is not readable ({e}); check the tags by hand",
                backups.describe(CREATED_BACKUP)
            ))
        }),
        None => Ok(Vec::new()),
    }
}

/// Records `item` before it is created.
async fn record(
    backups: &Backups,
    created: &mut Vec<Created>,
    item: Created,
) -> Result<(), StepError> {
    if !created.contains(&item) {
        created.push(item);
        let text = serde_json::to_string(created)
            .map_err(|e| StepError::Refused(format!("internal: {e}")))?;
        backups.save_replacing(CREATED_BACKUP, &text).await?;
    }
    Ok(())
}

/// The servers of `wanted`, in first-seen order.
fn servers(wanted: &[Wanted]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for want in wanted {
        if !out.contains(&want.server) {
            out.push(want.server.clone());
        }
    }
    out
}

/// Runs the step.
pub async fn run(context: &StepContext) -> Result<Outcome, StepError> {
    let stored = infrastructure::read_vsphere(context).await?;
    let source = source_server_in(context, &stored.vsphere)?;
    let infra_id = infrastructure_id(context).await?;
    let cluster_category = format!("openshift-{infra_id}");
    let wanted = wanted(
        &source,
        infrastructure::list(&stored.vsphere, "failureDomains"),
        &context.vmi.spec.failure_domains,
    );
    if let Some(domain) = context.vmi.spec.failure_domains.iter().find(|d| {
        d.region_affinity
            .as_ref()
            .is_some_and(|r| r.kind == vmi_api::topology::RegionAffinityType::ComputeCluster)
    }) {
        return Err(StepError::Refused(format!(
            "failure domain {} puts its region on a compute cluster (regionAffinity ComputeCluster), which this version of vmi does not tag; tag it by hand or use datacenter regions; nothing was changed",
            domain.name
        )));
    }
    if let Some(domain) = context.vmi.spec.failure_domains.iter().find(|d| {
        d.zone_affinity
            .as_ref()
            .is_some_and(|z| z.host_group.is_some())
    }) {
        return Err(StepError::Refused(format!(
            "failure domain {} uses host-group zones, which this version of vmi does not tag; tag its host group by hand or use compute-cluster zones; nothing was changed",
            domain.name
        )));
    }
    // Check everything on every vCenter before changing anything.
    let mut sessions = Vec::new();
    let mut problems = Vec::new();
    for server in servers(&wanted) {
        let session = Session::open(context, &server, &source).await?;
        let found = Found::read(&session.tagging, &cluster_category).await?;
        let mine: Vec<&Wanted> = wanted.iter().filter(|w| w.server == server).collect();
        problems.extend(check(&session, &found, &mine).await?);
        sessions.push((session, found));
    }
    if !problems.is_empty() {
        for (session, _) in sessions {
            session.close().await;
        }
        return Err(StepError::Refused(format!(
            "{}; then retry; nothing was changed",
            problems.join("; ")
        )));
    }
    let backups = Backups::of(context);
    let mut created = load_created(&backups).await?;
    let mut outcome = Outcome::default();
    let mut reused = 0;
    for (session, mut found) in sessions {
        let mut result = apply(
            &session,
            &mut found,
            &wanted,
            &backups,
            &mut created,
            &mut outcome,
            &mut reused,
        )
        .await;
        if result.is_ok() && session.vcenter.server() != source {
            result = ensure_cluster_tag(
                &session,
                &mut found,
                &infra_id,
                &backups,
                &mut created,
                &mut outcome,
            )
            .await;
        }
        session.close().await;
        result?;
    }
    if !outcome.changes.is_empty() {
        outcome.backups.push(backups.describe(CREATED_BACKUP));
    }
    outcome.result = if outcome.changes.is_empty() {
        format!(
            "every failure domain's region and zone tags are already in place ({reused} attachment(s)); nothing changed"
        )
    } else {
        format!(
            "created {} tagging object(s), reused {reused} attachment(s), for {} failure domain(s)",
            outcome.changes.len(),
            wanted.len() / 2
        )
    };
    Ok(outcome)
}

/// Creates on a target vCenter the cluster's own tag, `<infraID>` in
/// category `openshift-<infraID>` (VMs only), as the installer does on the
/// source: the machine API attaches it to every VM it clones when it exists
/// (research §4.2), and the installer's destroy finds the cluster's VMs by it.
async fn ensure_cluster_tag(
    session: &Session,
    found: &mut Found,
    infra_id: &str,
    backups: &Backups,
    created: &mut Vec<Created>,
    outcome: &mut Outcome,
) -> Result<(), StepError> {
    let server = session.vcenter.server().to_owned();
    let category_name = format!("openshift-{infra_id}");
    let category_id = match found.category(&category_name) {
        Some(c) => c.id.clone(),
        None => {
            record(
                backups,
                created,
                Created::Category {
                    server: server.clone(),
                    name: category_name.clone(),
                },
            )
            .await?;
            let id = session
                .tagging
                .create_category(&category_name, Cardinality::Single, &["VirtualMachine"])
                .await?;
            outcome.changes.push(format!(
                "vCenter {server}: created category {category_name} ({id})"
            ));
            found.categories.push(Category {
                id: id.clone(),
                name: category_name.clone(),
                cardinality: "SINGLE".into(),
                associable_types: vec!["VirtualMachine".into()],
            });
            id
        }
    };
    if found.tag(&category_name, infra_id).is_none() {
        record(
            backups,
            created,
            Created::Tag {
                server: server.clone(),
                category: category_name.clone(),
                name: infra_id.to_owned(),
            },
        )
        .await?;
        let id = session.tagging.create_tag(&category_id, infra_id).await?;
        outcome.changes.push(format!(
            "vCenter {server}: created tag {category_name}/{infra_id} ({id}) for the cluster's VMs"
        ));
        found.tags.push(Tag {
            id,
            name: infra_id.to_owned(),
            category_id,
        });
    }
    Ok(())
}

/// Creates what is missing on one vCenter, recording each object first,
/// and verifies every attachment.
async fn apply(
    session: &Session,
    found: &mut Found,
    wanted: &[Wanted],
    backups: &Backups,
    created: &mut Vec<Created>,
    outcome: &mut Outcome,
    reused: &mut usize,
) -> Result<(), StepError> {
    let server = session.vcenter.server().to_owned();
    let server = server.as_str();
    for want in wanted.iter().filter(|w| w.server == server) {
        let category_id = match found.category(want.category) {
            Some(c) => c.id.clone(),
            None => {
                record(
                    backups,
                    created,
                    Created::Category {
                        server: server.to_owned(),
                        name: want.category.to_owned(),
                    },
                )
                .await?;
                let id = session
                    .tagging
                    .create_category(want.category, Cardinality::Single, &[want.object_type])
                    .await?;
                outcome.changes.push(format!(
                    "vCenter {server}: created category {} ({id})",
                    want.category
                ));
                found.categories.push(Category {
                    id: id.clone(),
                    name: want.category.to_owned(),
                    cardinality: "SINGLE".into(),
                    associable_types: vec![want.object_type.to_owned()],
                });
                id
            }
        };
        let tag_id = match found.tag(want.category, &want.tag) {
            Some(t) => t.id.clone(),
            None => {
                record(
                    backups,
                    created,
                    Created::Tag {
                        server: server.to_owned(),
                        category: want.category.to_owned(),
                        name: want.tag.clone(),
                    },
                )
                .await?;
                let id = session.tagging.create_tag(&category_id, &want.tag).await?;
                outcome.changes.push(format!(
                    "vCenter {server}: created tag {}/{} ({id})",
                    want.category, want.tag
                ));
                found.tags.push(Tag {
                    id: id.clone(),
                    name: want.tag.clone(),
                    category_id: category_id.clone(),
                });
                id
            }
        };
        let object = session
            .vcenter
            .find_by_inventory_path(&want.object)
            .await?
            .ok_or_else(|| {
                StepError::Refused(format!("vCenter {server}: {} disappeared", want.object))
            })?;
        if session
            .tagging
            .attached_tags(&object)
            .await?
            .contains(&tag_id)
        {
            *reused += 1;
            continue;
        }
        record(
            backups,
            created,
            Created::Attachment {
                server: server.to_owned(),
                category: want.category.to_owned(),
                tag: want.tag.clone(),
                object: want.object.clone(),
            },
        )
        .await?;
        session.tagging.attach(&tag_id, &object).await?;
        if !session
            .tagging
            .attached_tags(&object)
            .await?
            .contains(&tag_id)
        {
            return Err(StepError::Unverified(format!(
                "vCenter {server}: attached {}/{} to {} but it is not listed on it",
                want.category, want.tag, want.object
            )));
        }
        outcome.changes.push(format!(
            "vCenter {server}: attached {}/{} to {}",
            want.category, want.tag, want.object
        ));
    }
    Ok(())
}

/// Undoes the step: detaches, deletes the tags and then the categories it
/// created, newest first, skipping what is already gone. A category that
/// holds tags the step did not create is kept.
pub async fn undo(context: &StepContext) -> Result<Outcome, StepError> {
    let backups = Backups::of(context);
    let created = load_created(&backups).await?;
    if created.is_empty() {
        return Ok(Outcome::unchanged(
            "nothing to undo: step 05 created nothing",
        ));
    }
    let source = source_server(context).await?;
    let infra_id = infrastructure_id(context).await?;
    let mut outcome = Outcome::default();
    let mut kept = Vec::new();
    let mut servers: Vec<&str> = Vec::new();
    for item in &created {
        if !servers.contains(&item.server()) {
            servers.push(item.server());
        }
    }
    for server in servers {
        let session = Session::open(context, server, &source).await?;
        let result = undo_on(
            &session,
            &infra_id,
            server,
            &created,
            &mut outcome,
            &mut kept,
        )
        .await;
        session.close().await;
        result?;
    }
    outcome.result = match (outcome.changes.is_empty(), kept.is_empty()) {
        (true, true) => "nothing step 05 created is left; nothing changed".into(),
        (false, true) => format!(
            "removed {} tagging object(s) step 05 created",
            outcome.changes.len()
        ),
        (_, false) => format!(
            "removed {} tagging object(s); kept {} because they hold tags vmi did not create",
            outcome.changes.len(),
            kept.join(", ")
        ),
    };
    Ok(outcome)
}

async fn undo_on(
    session: &Session,
    infra_id: &str,
    server: &str,
    created: &[Created],
    outcome: &mut Outcome,
    kept: &mut Vec<String>,
) -> Result<(), StepError> {
    let cluster_category = format!("openshift-{infra_id}");
    let mut found = Found::read(&session.tagging, &cluster_category).await?;
    for item in created.iter().rev().filter(|c| c.server() == server) {
        match item {
            Created::Attachment {
                category,
                tag,
                object,
                ..
            } => {
                let Some(tag_found) = found.tag(category, tag) else {
                    continue;
                };
                let Some(target) = session.vcenter.find_by_inventory_path(object).await? else {
                    continue;
                };
                if !session
                    .tagging
                    .attached_tags(&target)
                    .await?
                    .contains(&tag_found.id)
                {
                    continue;
                }
                session.tagging.detach(&tag_found.id, &target).await?;
                outcome.changes.push(format!(
                    "vCenter {server}: detached {category}/{tag} from {object}"
                ));
            }
            Created::Tag { category, name, .. } => {
                let Some(tag_found) = found.tag(category, name) else {
                    continue;
                };
                let id = tag_found.id.clone();
                session.tagging.delete_tag(&id).await?;
                found.tags.retain(|t| t.id != id);
                outcome
                    .changes
                    .push(format!("vCenter {server}: deleted tag {category}/{name}"));
            }
            Created::Category { name, .. } => {
                let Some(category) = found.category(name) else {
                    continue;
                };
                if found.tags.iter().any(|t| t.category_id == category.id) {
                    kept.push(format!("{server}:{name}"));
                    continue;
                }
                let id = category.id.clone();
                session.tagging.delete_category(&id).await?;
                found.categories.retain(|c| c.id != id);
                outcome
                    .changes
                    .push(format!("vCenter {server}: deleted category {name}"));
            }
        }
    }
    Ok(())
}
