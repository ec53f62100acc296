//! Facts about the machine a run happened on, recorded in every JSON report so that numbers are
//! never quoted without their context.

use serde_json::{Map, Value, json};

/// The machine: kernel, CPU model, CPUs online and CPUs this process may run on.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub kernel: String,
    pub cpu_model: String,
    pub cpu_count: usize,
    /// CPUs in this process's affinity mask (`taskset`), e.g. `"0"` or `"0-3"`.
    pub cpus_allowed: String,
    /// How many CPUs the process may use.
    pub cpus_usable: usize,
}

impl Environment {
    pub fn detect() -> Environment {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let status = read("/proc/self/status");
        Environment {
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            cpu_count: cpuinfo.lines().filter(|l| l.starts_with("processor")).count().max(1),
            cpus_allowed: field(&status, "Cpus_allowed_list").unwrap_or_else(|| "unknown".into()),
            cpus_usable: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    pub fn to_json(&self) -> Map<String, Value> {
        let v = json!({
            "kernel": self.kernel,
            "cpu_model": self.cpu_model,
            "cpu_count": self.cpu_count,
            "cpus_allowed": self.cpus_allowed,
            "cpus_usable": self.cpus_usable,
        });
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

/// The value of `key: value` in a `/proc` text file.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_fields() {
        let text = "processor\t: 0\nmodel name\t: Some CPU @ 2.5GHz\n";
        assert_eq!(field(text, "model name").as_deref(), Some("Some CPU @ 2.5GHz"));
        assert_eq!(field(text, "flags"), None);
    }

    #[test]
    fn detects_this_machine() {
        let env = Environment::detect();
        assert!(env.cpu_count >= 1 && env.cpus_usable >= 1);
    }
}
