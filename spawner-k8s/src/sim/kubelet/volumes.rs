//! Volumes without mounts. A process cannot mount anything, so every volume is a local
//! directory, and the container sees it through one rewriting rule:
//!
//! > a command word, argument, env value or `workingDir` that is a volume's `mountPath`, starts
//! > with `mountPath/`, or is `--flag=` followed by either, has that prefix replaced by the
//! > volume's local directory (the longest matching mount wins).
//!
//! Directories: `emptyDir`, `downwardAPI`, `configMap`, `secret`, `projected` → per pod;
//! `persistentVolumeClaim` → per claim (the data outlives the pod, as on a cluster); `nfs` → per
//! server and path, shared; `hostPath` → the host path itself. `subPath` is honoured.
//!
//! A `downwardAPI` volume's files are written before the process starts and rewritten whenever
//! the pod's labels or annotations change, in the kubelet's format: one `key="value"` line per
//! entry, sorted by key, values quoted like Go's `strconv.Quote`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::super::{object, paths};
use super::env;

/// One mount of the container: where the pod spec says it is, and where it really is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_path: String,
    pub local: PathBuf,
}

/// The local directory backing a pod volume (by the volume's source).
fn volume_dir(root: &Path, pod: &Value, volume: &Value) -> PathBuf {
    let (namespace, pod_name) = (object::namespace(pod), object::name(pod));
    let name = object::str_at(volume, "/name");
    if let Some(claim) = volume
        .pointer("/persistentVolumeClaim/claimName")
        .and_then(Value::as_str)
    {
        paths::claim_dir(root, namespace, claim)
    } else if volume.get("nfs").is_some() {
        paths::nfs_dir(
            root,
            object::str_at(volume, "/nfs/server"),
            object::str_at(volume, "/nfs/path"),
        )
    } else if let Some(host) = volume.pointer("/hostPath/path").and_then(Value::as_str) {
        PathBuf::from(host)
    } else {
        paths::volume_dir(root, namespace, pod_name, name)
    }
}

/// Creates the directories of the container's mounts and returns the mounts, longest
/// `mountPath` first (the order [`rewrite`] needs).
pub fn prepare(root: &Path, pod: &Value, container: &Value) -> std::io::Result<Vec<Mount>> {
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut mounts = Vec::new();
    for mount in container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = object::str_at(mount, "/name");
        let Some(volume) = volumes.iter().find(|v| object::str_at(v, "/name") == name) else {
            continue;
        };
        let mut local = volume_dir(root, pod, volume);
        let sub_path = object::str_at(mount, "/subPath");
        for part in Path::new(sub_path).components() {
            if let std::path::Component::Normal(part) = part {
                local.push(part);
            }
        }
        std::fs::create_dir_all(&local)?;
        mounts.push(Mount {
            mount_path: object::str_at(mount, "/mountPath").trim_end_matches('/').to_string(),
            local,
        });
    }
    for volume in &volumes {
        let dir = volume_dir(root, pod, volume);
        std::fs::create_dir_all(&dir)?;
        if volume.get("downwardAPI").is_some() {
            write_downward_api(&dir, pod, volume)?;
        }
    }
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_path.len()));
    Ok(mounts)
}

/// Applies the mount rule to one value.
pub fn rewrite(value: &str, mounts: &[Mount]) -> String {
    if let Some((flag, rest)) = value.split_once('=')
        && flag.starts_with("--")
    {
        let rewritten = rewrite_path(rest, mounts);
        if rewritten != rest {
            return format!("{flag}={rewritten}");
        }
        return value.to_string();
    }
    rewrite_path(value, mounts)
}

fn rewrite_path(value: &str, mounts: &[Mount]) -> String {
    for mount in mounts {
        if mount.mount_path.is_empty() {
            continue;
        }
        if value == mount.mount_path {
            return mount.local.display().to_string();
        }
        if let Some(rest) = value.strip_prefix(&mount.mount_path)
            && rest.starts_with('/')
        {
            return format!("{}{rest}", mount.local.display());
        }
    }
    value.to_string()
}

/// Rewrites every downward API volume of the pod (after a label or annotation change).
pub fn refresh_downward_api(root: &Path, pod: &Value) -> std::io::Result<()> {
    for volume in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if volume.get("downwardAPI").is_some() {
            write_downward_api(&volume_dir(root, pod, volume), pod, volume)?;
        }
    }
    Ok(())
}

fn write_downward_api(dir: &Path, pod: &Value, volume: &Value) -> std::io::Result<()> {
    for item in volume
        .pointer("/downwardAPI/items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let relative = object::str_at(item, "/path");
        let Some(field) = item.pointer("/fieldRef/fieldPath").and_then(Value::as_str) else {
            continue;
        };
        let content = match field {
            "metadata.labels" => format_map(pod.pointer("/metadata/labels")),
            "metadata.annotations" => format_map(pod.pointer("/metadata/annotations")),
            other => env::field_ref(pod, other).unwrap_or_default(),
        };
        let mut path = dir.to_path_buf();
        for part in Path::new(relative).components() {
            if let std::path::Component::Normal(part) = part {
                path.push(part);
            }
        }
        if path == dir || std::fs::read_to_string(&path).is_ok_and(|old| old == content) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Write then rename, so a reader never sees half a file (the kubelet swaps a symlink
        // for the same reason).
        let temp = path.with_extension(format!("tmp{}", object::random_u64()));
        std::fs::write(&temp, content)?;
        std::fs::rename(&temp, &path)?;
    }
    Ok(())
}

/// `key="value"` lines, sorted by key, newline-separated (no trailing newline), as the
/// kubelet's `fieldpath.FormatMap`.
pub fn format_map(map: Option<&Value>) -> String {
    let Some(map) = map.and_then(Value::as_object) else {
        return String::new();
    };
    let mut entries: Vec<(&String, &str)> = map.iter().map(|(k, v)| (k, v.as_str().unwrap_or_default())).collect();
    entries.sort();
    entries
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote`: printable characters stay, `"` and `\` are escaped, control characters
/// use the short escapes or `\xNN`/`\uNNNN`.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mount_paths_are_rewritten_on_component_boundaries() {
        let mounts = vec![
            Mount {
                mount_path: "/home/jovyan/shared".into(),
                local: "/r/nfs/srv/shared".into(),
            },
            Mount {
                mount_path: "/home/jovyan".into(),
                local: "/r/pvcs/ns/claim-alice".into(),
            },
        ];
        let cases = [
            ("/home/jovyan", "/r/pvcs/ns/claim-alice"),
            ("/home/jovyan/work/a.ipynb", "/r/pvcs/ns/claim-alice/work/a.ipynb"),
            ("/home/jovyan/shared/x", "/r/nfs/srv/shared/x"),
            ("/home/jovyanx", "/home/jovyanx"),
            ("--notebook-dir=/home/jovyan", "--notebook-dir=/r/pvcs/ns/claim-alice"),
            ("--port=8888", "--port=8888"),
            ("relative/home/jovyan", "relative/home/jovyan"),
        ];
        for (value, expected) in cases {
            assert_eq!(rewrite(value, &mounts), expected, "{value:?}");
        }
    }

    #[test]
    fn downward_api_maps_use_the_kubelet_format() {
        let annotations = json!({"b": "two words", "a": "quote\"and\\slash\nnewline", "c": "é"});
        assert_eq!(
            format_map(Some(&annotations)),
            "a=\"quote\\\"and\\\\slash\\nnewline\"\nb=\"two words\"\nc=\"é\""
        );
        assert_eq!(format_map(None), "");
    }
}
