//! Copy mode: a disk's files streamed from the source datastore to the
//! target datastore over the datastore HTTP file interface, each verified by
//! size and SHA-256 read back from the target. Cold only (the workloads are
//! stopped), and it works between any two vCenters whose datastores expose
//! files (VMFS, NFS).

use crate::context::StepError;
use crate::vsphere::VCenter;
use crate::vsphere::datastore::{DatastoreFile, Transfer};

use super::journal::DiskFile;

/// How much of a disk the pipe between download and upload buffers.
const PIPE: usize = 1 << 20;

/// The largest descriptor read: a text descriptor is a few hundred bytes;
/// anything larger is a disk with its descriptor embedded (monolithic).
const DESCRIPTOR_LIMIT: u64 = 64 << 10;

/// The extent files a VMDK descriptor names (relative to its directory), or
/// why vmi cannot copy that disk file by file: only flat extents (`FLAT`,
/// `VMFS`) without a parent (`parentFileNameHint`) are copied; a delta disk of a snapshot chain,
/// a sparse or raw-device extent is refused before anything changes.
pub fn extents(descriptor: &str) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for line in descriptor.lines().map(str::trim) {
        if let Some(hint) = line.strip_prefix("parentFileNameHint=") {
            return Err(format!(
                "it is a delta disk of a snapshot chain (parent {}); delete or consolidate the snapshots first",
                hint.trim_matches('"')
            ));
        }
        let mut words = line.split_whitespace();
        let Some(access) = words.next() else { continue };
        if !["RW", "RDONLY", "NOACCESS"].contains(&access) {
            continue;
        }
        let kind = words.nth(1).unwrap_or_default();
        let name = line
            .split('"')
            .nth(1)
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| format!("its descriptor line {line:?} names no extent file"))?;
        if !["FLAT", "VMFS"].contains(&kind) {
            return Err(format!(
                "its extent {name} is of type {kind} (a sparse, snapshot or raw device extent), which vmi does not copy"
            ));
        }
        found.push(name.to_owned());
    }
    if found.is_empty() {
        return Err("its descriptor names no extent".into());
    }
    Ok(found)
}

/// `name` in the directory of `file`.
fn sibling(file: &DatastoreFile, name: &str) -> DatastoreFile {
    let path = match file.path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{name}"),
        None => name.to_owned(),
    };
    DatastoreFile {
        path,
        ..file.clone()
    }
}

/// The extent files of the disk whose descriptor is `descriptor` on
/// `vcenter`, or why it cannot be copied (see [`extents`]).
pub async fn layout(
    vcenter: &VCenter,
    descriptor: &DatastoreFile,
) -> Result<Result<Vec<String>, String>, StepError> {
    let Some(size) = vcenter.file_size(descriptor).await? else {
        return Ok(Err(format!(
            "its descriptor {descriptor} is not on vCenter {}",
            vcenter.server()
        )));
    };
    if size > DESCRIPTOR_LIMIT {
        return Ok(Err(format!(
            "its descriptor {descriptor} is {size} bytes, not a text descriptor (a monolithic disk), which vmi does not copy"
        )));
    }
    let mut text = Vec::new();
    vcenter.download(descriptor, &mut text).await?;
    Ok(extents(&String::from_utf8_lossy(&text)))
}

/// The SHA-256 of `file` as `vcenter` serves it now.
async fn read_back(vcenter: &VCenter, file: &DatastoreFile) -> Result<Transfer, StepError> {
    let mut sink = tokio::io::sink();
    Ok(vcenter.download(file, &mut sink).await?)
}

/// Streams `from` on `source` to `to` on `target` without holding the disk
/// in memory or on local disk.
async fn stream(
    source: &VCenter,
    from: &DatastoreFile,
    target: &VCenter,
    to: &DatastoreFile,
    length: u64,
) -> Result<Transfer, StepError> {
    let (mut writer, reader) = tokio::io::duplex(PIPE);
    let download = async {
        let result = source.download(from, &mut writer).await;
        drop(writer);
        result
    };
    let (read, written) = tokio::join!(download, target.upload(to, reader, length));
    let read = read?;
    let written = written?;
    if read != written {
        return Err(StepError::Unverified(format!(
            "copying {from} to {to}: read {} bytes (sha256 {}) but sent {} bytes (sha256 {}); the source is kept",
            read.bytes, read.sha256, written.bytes, written.sha256
        )));
    }
    Ok(read)
}

/// Copies one file unless `done` shows an earlier run already copied it
/// (checked again on the target), and verifies the copy.
async fn copy_file(
    source: &VCenter,
    from: &DatastoreFile,
    target: &VCenter,
    to: &DatastoreFile,
    length: u64,
    done: Option<&DiskFile>,
) -> Result<DiskFile, StepError> {
    if let Some(done) = done
        && done.bytes == length
        && target.file_size(to).await? == Some(length)
        && read_back(target, to).await?.sha256 == done.sha256
    {
        return Ok(done.clone());
    }
    let copied = stream(source, from, target, to, length).await?;
    let size = target.file_size(to).await?;
    let back = read_back(target, to).await?;
    if size != Some(copied.bytes) || back.sha256 != copied.sha256 {
        return Err(StepError::Unverified(format!(
            "the copy of {from} at {to} on vCenter {} does not match: {} bytes, sha256 {} there; {} bytes, sha256 {} read from the source; the source is kept, delete this step's Job to copy again",
            target.server(),
            size.map_or_else(|| "no file".into(), |s| s.to_string()),
            back.sha256,
            copied.bytes,
            copied.sha256
        )));
    }
    Ok(DiskFile {
        path: to.datastore_path(),
        bytes: copied.bytes,
        sha256: copied.sha256,
    })
}

/// Copies the disk whose descriptor is `from` to `to` (same layout), with
/// every extent its descriptor names, and returns each file copied with its
/// size and checksum. `done` are the files an earlier run recorded.
pub async fn copy_disk(
    source: &VCenter,
    from: &DatastoreFile,
    target: &VCenter,
    to: &DatastoreFile,
    done: &[DiskFile],
) -> Result<Vec<DiskFile>, StepError> {
    let names = layout(source, from).await?.map_err(|why| {
        StepError::Refused(format!(
            "disk {from} on vCenter {} cannot be copied: {why}; nothing was copied",
            source.server()
        ))
    })?;
    let mut files = vec![(from.clone(), to.clone())];
    files.extend(names.iter().map(|n| (sibling(from, n), sibling(to, n))));
    let mut copied = Vec::new();
    for (from, to) in &files {
        let Some(length) = source.file_size(from).await? else {
            return Err(StepError::Refused(format!(
                "{from} is not on vCenter {}, although the disk's descriptor names it; nothing was copied",
                source.server()
            )));
        };
        let previous = done.iter().find(|f| f.path == to.datastore_path());
        copied.push(copy_file(source, from, target, to, length, previous).await?);
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_extents_are_copied_file_by_file() {
        let vcsim = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"vmfs\"\n\n# Extent description\nRW 2048 VMFS \"32ee3c2c-flat.vmdk\"\n\n#DDB\n";
        assert_eq!(extents(vcsim).unwrap(), vec!["32ee3c2c-flat.vmdk"]);
        let split = "createType=\"twoGbMaxExtentFlat\"\nRW 4192256 FLAT \"d-f001.vmdk\" 0\nRW 4192256 FLAT \"d-f002.vmdk\" 0\n";
        assert_eq!(extents(split).unwrap(), vec!["d-f001.vmdk", "d-f002.vmdk"]);
    }

    #[test]
    fn snapshots_sparse_and_raw_extents_are_refused() {
        let delta = "parentCID=1a2b3c4d\nparentFileNameHint=\"disk.vmdk\"\nRW 2048 SESPARSE \"disk-000001-sesparse.vmdk\"\n";
        assert!(
            extents(delta).unwrap_err().contains("snapshot"),
            "{:?}",
            extents(delta)
        );
        let sparse = "parentCID=ffffffff\nRW 2048 VMFSSPARSE \"disk-delta.vmdk\"\n";
        assert!(extents(sparse).unwrap_err().contains("VMFSSPARSE"));
        let rdm = "RW 2048 VMFSRDM \"disk-rdm.vmdk\"\n";
        assert!(extents(rdm).unwrap_err().contains("VMFSRDM"));
        assert!(
            extents("# nothing here\n")
                .unwrap_err()
                .contains("no extent")
        );
        let escape = "RW 2048 VMFS \"../other/secret-flat.vmdk\"\n";
        assert!(
            extents(escape).is_err(),
            "an extent outside the disk's folder is not followed"
        );
    }
}
