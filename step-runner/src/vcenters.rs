//! Connecting a step to the vCenters of a migration: the target ones from
//! the vmi's spec (credentials from its Secret, TLS as its spec says), and
//! reading the cluster facts the vSphere steps name things after.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use vmi_api::topology::TargetVCenter;

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

/// How the spec says to trust `vcenter`'s certificate.
async fn trust(context: &StepContext, vcenter: &TargetVCenter) -> Result<Trust, StepError> {
    let Some(tls) = vcenter.tls.as_ref() else {
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
                    "the CA bundle for vCenter {} is missing: ConfigMap {namespace}/{} has no key {key:?}; create it with the PEM bundle that signed the vCenter's certificate",
                    vcenter.server, reference.name
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
pub(crate) async fn credentials(context: &StepContext, server: &str) -> Result<Credentials, StepError> {
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
    let data = secret.data.unwrap_or_default();
    let key = |suffix: &str| -> Result<String, StepError> {
        let key = format!("{server}.{suffix}");
        data.get(&key)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                StepError::Refused(format!(
                    "the credentials Secret {namespace}/{name} has no key {key}; add it"
                ))
            })
    };
    Ok(Credentials::new(&key("username")?, &key("password")?))
}

/// A logged-in connection to target vCenter `server`.
pub async fn connect_target(context: &StepContext, server: &str) -> Result<VCenter, StepError> {
    let spec = target_spec(context, server)?;
    let trust = trust(context, spec).await?;
    let credentials = credentials(context, server).await?;
    let port = spec.port.and_then(|p| u16::try_from(p).ok());
    Ok(VCenter::connect(server, port, &trust, credentials).await?)
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
