//! The demo's command line.

use std::path::PathBuf;
use std::time::Duration;

/// How to run the demo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The legacy path (release-4.22 Infrastructure CRD, INI
    /// cloud-provider-config) instead of the native one (multi-vCenter
    /// day-2 CRD, YAML).
    pub legacy: bool,
    /// Where `vmi-orchestrator` and `vmi-step` are; this program's own
    /// directory when `None`.
    pub bin_dir: Option<PathBuf>,
    /// Where to keep the artifacts; `target/vmi-demo/<time>` when `None`.
    pub artifacts: Option<PathBuf>,
    /// How long the migration may take.
    pub timeout: Duration,
    /// Worker machines of the source cluster.
    pub workers: u32,
    /// Seed vSphere CSI volumes and have step 13 move them (`--no-volumes`
    /// turns it off).
    pub volumes: bool,
}

/// The `--help` text.
pub const USAGE: &str = "\
Usage: vmi-demo [--legacy] [--no-volumes] [--bin-dir DIR] [--artifacts DIR] [--timeout-minutes N] [--workers N]

Runs a whole vCenter migration on the simulated cluster (real kube-apiserver,
etcd and kube-controller-manager, two vcsim vCenters) with live progress, then
prints a summary and keeps every log under the artifacts directory. By default
it also seeds vSphere CSI volumes (Deployment web, StatefulSet db of 3, one
unused claim) that step 13 moves to the target vCenter in Copy mode.

  --legacy             the legacy path: release-4.22 Infrastructure CRD, INI
                       cloud-provider-config (default: the native path with the
                       multi-vCenter day-2 CRD and a YAML cloud-provider-config)
  --no-volumes         seed no volumes: step 13 has nothing to move
  --bin-dir DIR        where vmi-orchestrator and vmi-step are (default: the
                       directory of this program)
  --artifacts DIR      where to keep logs, events and the final vmi (default:
                       target/vmi-demo/<UTC time>)
  --timeout-minutes N  give up after N minutes (default 30)
  --workers N          worker machines of the source cluster (default 2)

Exit status: 0 when the migration succeeded, every volume is on the target with
its original bytes and the secrets scan is clean; 1 otherwise; 2 for a bad
command line.";

/// Parses the arguments (without the program name). `Ok(None)` is `--help`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        legacy: false,
        bin_dir: None,
        artifacts: None,
        timeout: Duration::from_secs(30 * 60),
        workers: 2,
        volumes: true,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--legacy" => parsed.legacy = true,
            "--no-volumes" => parsed.volumes = false,
            "--bin-dir" => parsed.bin_dir = Some(PathBuf::from(value("--bin-dir")?)),
            "--artifacts" => parsed.artifacts = Some(PathBuf::from(value("--artifacts")?)),
            "--timeout-minutes" => {
                let minutes: u64 = value("--timeout-minutes")?
                    .parse()
                    .map_err(|_| "--timeout-minutes needs a whole number".to_owned())?;
                parsed.timeout = Duration::from_secs(minutes.max(1) * 60);
            }
            "--workers" => {
                parsed.workers = value("--workers")?
                    .parse()
                    .map_err(|_| "--workers needs a whole number".to_owned())?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Option<Args>, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn defaults_and_flags() {
        let defaults = args("").unwrap().unwrap();
        assert!(!defaults.legacy);
        assert_eq!(defaults.timeout, Duration::from_secs(1800));
        assert_eq!(defaults.workers, 2);
        assert!(defaults.volumes);
        let all = args(
            "--legacy --no-volumes --bin-dir /b --artifacts=/a --timeout-minutes 5 --workers=3",
        )
        .unwrap()
        .unwrap();
        assert!(all.legacy);
        assert!(!all.volumes);
        assert_eq!(all.bin_dir, Some(PathBuf::from("/b")));
        assert_eq!(all.artifacts, Some(PathBuf::from("/a")));
        assert_eq!(all.timeout, Duration::from_secs(300));
        assert_eq!(all.workers, 3);
        assert_eq!(args("--help").unwrap(), None);
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(args("--nope").unwrap_err(), "unknown argument --nope");
        assert_eq!(
            args("--artifacts").unwrap_err(),
            "--artifacts needs a value"
        );
        assert_eq!(
            args("--workers two").unwrap_err(),
            "--workers needs a whole number"
        );
    }
}
