//! Where a pod's files live under the simulator's root directory. One place, because the
//! kubelet writes them and the API (`pods/log`) reads them.
//!
//! ```text
//! root/pods/<namespace>/<pod>/                 working directory (and $HOME) of the process
//! root/pods/<namespace>/<pod>/<container>.log  stdout + stderr
//! root/pods/<namespace>/<pod>/volumes/<vol>/   emptyDir, downwardAPI, configMap, secret volumes
//! root/pvcs/<namespace>/<claim>/               persistentVolumeClaim volumes (outlive the pod)
//! root/nfs/<server>/<path>/                    nfs volumes (shared by every pod naming them)
//! ```

use std::path::{Component, Path, PathBuf};

pub fn pod_dir(root: &Path, namespace: &str, pod: &str) -> PathBuf {
    root.join("pods").join(safe(namespace)).join(safe(pod))
}

pub fn log_file(root: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    pod_dir(root, namespace, pod).join(format!("{}.log", safe(container)))
}

pub fn volume_dir(root: &Path, namespace: &str, pod: &str, volume: &str) -> PathBuf {
    pod_dir(root, namespace, pod).join("volumes").join(safe(volume))
}

pub fn claim_dir(root: &Path, namespace: &str, claim: &str) -> PathBuf {
    root.join("pvcs").join(safe(namespace)).join(safe(claim))
}

pub fn nfs_dir(root: &Path, server: &str, path: &str) -> PathBuf {
    let mut dir = root.join("nfs").join(safe(server));
    for part in Path::new(path).components() {
        if let Component::Normal(part) = part {
            dir.push(part);
        }
    }
    dir
}

/// A name as one path component: no separators, no `..` (names are validated by the API, but
/// a path must not depend on that).
fn safe(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c == '/' || c == '\\' || c == '\0' { '_' } else { c })
        .collect();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_root() {
        let root = Path::new("/r");
        assert_eq!(pod_dir(root, "..", "a/b"), Path::new("/r/pods/_../a_b"));
        assert_eq!(
            nfs_dir(root, "srv", "/export/../home"),
            Path::new("/r/nfs/srv/export/home")
        );
    }
}
