//! The simulated cluster's programs (kube-apiserver, etcd, vcsim, …) and the
//! OpenShift CRD manifests, built by `tests/tools/build.sh` into a cache
//! outside the repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::SimError;

/// Where the built tools are.
#[derive(Debug)]
pub struct Tools {
    dir: PathBuf,
}

static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();

impl Tools {
    /// The tools, from `$VMI_TOOLS_DIR` when set (the directory
    /// `tests/tools/build.sh` prints), otherwise built or found by running
    /// that script once per process (a no-op when its cache is warm).
    pub fn get() -> Result<&'static Tools, SimError> {
        TOOLS
            .get_or_init(locate)
            .as_ref()
            .map_err(|e| SimError::Setup(e.clone()))
    }

    /// Path of the program `name` (e.g. `kube-apiserver`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// The unpacked `github.com/openshift/api` tree of pin `name`
    /// (`master`, `release-4.22`; see `tests/tools/openshift-api/pins.txt`).
    pub fn openshift_api(&self, name: &str) -> PathBuf {
        self.dir.join("openshift-api").join(name)
    }
}

fn locate() -> Result<Tools, String> {
    if let Some(dir) = std::env::var_os("VMI_TOOLS_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.join(".complete").exists() {
            Ok(Tools { dir })
        } else {
            Err(format!(
                "VMI_TOOLS_DIR={} is not a complete tools build; unset it or run tests/tools/build.sh",
                dir.display()
            ))
        };
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}); its messages are above",
            script.display(),
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().map(str::trim).unwrap_or_default();
    if dir.is_empty() || !Path::new(dir).join(".complete").exists() {
        return Err(format!(
            "{} did not print a complete tools directory (got {dir:?})",
            script.display()
        ));
    }
    Ok(Tools {
        dir: PathBuf::from(dir),
    })
}
