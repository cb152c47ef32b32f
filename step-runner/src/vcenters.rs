//! Connecting a step to the vCenters of a migration: the target ones from
//! the vmi's spec (credentials from its Secret, TLS as its spec says), and
//! reading the cluster facts the vSphere steps name things after.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;
use vmi_api::topology::{TargetVCenter, VCenterTls};

use crate::context::{StepContext, StepError};
use crate::vsphere::{Credentials, Trust, VCenter};

/// The ConfigMap key of a CA bundle when the spec names none.
const DEFAULT_CA_KEY: &str = "ca-bundle.crt";

/// The spec entry of target vCenter `server`.
pub fn target_spec<'a>(
    context: &'a StepContext,
    server: &str,
) -> Result<&'a TargetVCenter, StepError> {
    context
        .vmi
        .spec
        .vcenters
        .iter()
        .find(|v| v.server == server)
        .ok_or_else(|| {
            StepError::Refused(format!(
                "vCenter {server} is not in spec.vcenters of vmi {}",
                context.vmi_ref
            ))
        })
}

/// How the spec says to trust `server`'s certificate.
async fn trust(
    context: &StepContext,
    server: &str,
    tls: Option<&VCenterTls>,
) -> Result<Trust, StepError> {
    let Some(tls) = tls else {
        return Ok(Trust::SystemRoots);
    };
    if let Some(thumbprint) = &tls.thumbprint {
        return Ok(Trust::Thumbprint(thumbprint.clone()));
    }
    if let Some(reference) = &tls.ca_bundle {
        let namespace = &context.vmi_ref.namespace;
        let key = reference.key.as_deref().unwrap_or(DEFAULT_CA_KEY);
        let map = Api::<ConfigMap>::namespaced(context.client.clone(), namespace)
            .get_opt(&reference.name)
            .await
            .map_err(StepError::kube(format!(
                "read ConfigMap {namespace}/{}",
                reference.name
            )))?;
        let pem = map
            .and_then(|m| m.data)
            .and_then(|d| d.get(key).cloned())
            .ok_or_else(|| {
                StepError::Refused(format!(
                    "the CA bundle for vCenter {server} is missing: ConfigMap {namespace}/{} has no key {key:?}; create it with the PEM bundle that signed the vCenter's certificate",
                    reference.name
                ))
            })?;
        return Ok(Trust::CaBundle(pem));
    }
    if tls.insecure == Some(true) {
        return Ok(Trust::Insecure);
    }
    Ok(Trust::SystemRoots)
}

/// The credentials of `server` from the vmi's credentials Secret
/// (`<server>.username`, `<server>.password`, as `vsphere-creds` has them).
pub(crate) async fn credentials(
    context: &StepContext,
    server: &str,
) -> Result<Credentials, StepError> {
    let namespace = &context.vmi_ref.namespace;
    let name = &context.vmi.spec.credentials_secret.name;
    let secret = Api::<Secret>::namespaced(context.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(StepError::kube(format!("read Secret {namespace}/{name}")))?
        .ok_or_else(|| {
            StepError::Refused(format!(
                "the credentials Secret {namespace}/{name} (spec.credentialsSecret) does not exist; create it with keys {server}.username and {server}.password"
            ))
        })?;
    credentials_in(
        secret,
        server,
        &format!("the credentials Secret {namespace}/{name}"),
        "add it",
    )
}

/// `<server>.username` and `<server>.password` of `secret` (named
/// `described` in messages, which end with `remedy` when a key is missing).
fn credentials_in(
    secret: Secret,
    server: &str,
    described: &str,
    remedy: &str,
) -> Result<Credentials, StepError> {
    let data = secret.data.unwrap_or_default();
    let key = |suffix: &str| -> Result<String, StepError> {
        let key = format!("{server}.{suffix}");
        data.get(&key)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| StepError::Refused(format!("{described} has no key {key}; {remedy}")))
    };
    Ok(Credentials::new(&key("username")?, &key("password")?))
}

/// A logged-in connection to target vCenter `server`.
pub async fn connect_target(context: &StepContext, server: &str) -> Result<VCenter, StepError> {
    let spec = target_spec(context, server)?;
    let trust = trust(context, server, spec.tls.as_ref()).await?;
    let credentials = credentials(context, server).await?;
    let port = spec.port.and_then(|p| u16::try_from(p).ok());
    Ok(VCenter::connect(server, port, &trust, credentials).await?)
}

/// The source vCenter: the one vCenter of the Infrastructure that is not a
/// target. When the spec names the source, it must be that one.
pub async fn source_server(context: &StepContext) -> Result<String, StepError> {
    let stored = crate::infrastructure::read_vsphere(context).await?;
    source_server_in(context, &stored.vsphere)
}

/// [`source_server`] from a vSphere spec already read.
pub fn source_server_in(context: &StepContext, vsphere: &Value) -> Result<String, StepError> {
    let targets: Vec<&str> = context.target_servers();
    let sources: Vec<String> = crate::infrastructure::list(vsphere, "vcenters")
        .iter()
        .filter_map(|v| v["server"].as_str())
        .filter(|s| !targets.contains(s))
        .map(str::to_owned)
        .collect();
    let [source] = sources.as_slice() else {
        return Err(StepError::Refused(format!(
            "{} lists {} vCenter(s) besides the targets ({}); a migration moves from exactly one source vCenter; nothing was changed",
            crate::infrastructure::OBJECT,
            sources.len(),
            sources.join(", ")
        )));
    };
    if let Some(expected) = &context.vmi.spec.source
        && expected.server != *source
    {
        return Err(StepError::Refused(format!(
            "spec.source.server is {} but the cluster's vCenter is {source}; fix spec.source; nothing was changed",
            expected.server
        )));
    }
    Ok(source.clone())
}

/// A logged-in connection to the source vCenter, with the cluster's own
/// credentials (`kube-system/vsphere-creds`) and the TLS settings of
/// `spec.source`.
pub async fn connect_source(context: &StepContext) -> Result<VCenter, StepError> {
    let stored = crate::infrastructure::read_vsphere(context).await?;
    let server = source_server_in(context, &stored.vsphere)?;
    let tls = context
        .vmi
        .spec
        .source
        .as_ref()
        .and_then(|s| s.tls.as_ref());
    let trust = trust(context, &server, tls).await?;
    let secret = Api::<Secret>::namespaced(context.client.clone(), "kube-system")
        .get_opt("vsphere-creds")
        .await
        .map_err(StepError::kube("read Secret kube-system/vsphere-creds"))?
        .ok_or_else(|| {
            StepError::Refused(
                "Secret kube-system/vsphere-creds does not exist, so the source vCenter's credentials are unknown; nothing was changed".into(),
            )
        })?;
    let credentials = credentials_in(
        secret,
        &server,
        "Secret kube-system/vsphere-creds",
        "the source vCenter's credentials are missing there",
    )?;
    let port = crate::infrastructure::list(&stored.vsphere, "vcenters")
        .iter()
        .find(|v| v["server"].as_str() == Some(server.as_str()))
        .and_then(|v| v["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok());
    Ok(VCenter::connect(&server, port, &trust, credentials).await?)
}

/// The cluster's infrastructure id (`infrastructure/cluster`
/// `status.infrastructureName`), which folders, tags and templates are
/// named after.
pub async fn infrastructure_id(context: &StepContext) -> Result<String, StepError> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "config.openshift.io",
        "v1",
        "Infrastructure",
    ));
    let infrastructure = Api::<DynamicObject>::all_with(context.client.clone(), &resource)
        .get("cluster")
        .await
        .map_err(StepError::kube("read infrastructure/cluster"))?;
    infrastructure.data["status"]["infrastructureName"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            StepError::Refused(
                "infrastructure/cluster has no status.infrastructureName: this does not look like an installed OpenShift cluster".into(),
            )
        })
}
