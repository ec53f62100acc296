//! A finished scenario run: the common [`Report`] plus the scenario's own figures (idle memory
//! per tunnel, admin phases, …), which go into the JSON summary under one extra top-level key
//! (`ws`, `admin`) and after the summary on the terminal.

use serde_json::Value;

use crate::report::{OutputFiles, Report, WriteError, json, text};

pub struct Outcome {
    pub report: Report,
    /// The JSON summary's extra top-level key.
    pub key: &'static str,
    pub extra: Value,
    /// Printed after the common summary.
    pub lines: Vec<String>,
}

impl Outcome {
    /// The terminal summary: the common one, then the scenario's lines.
    pub fn render_text(&self) -> String {
        let mut s = text::render(&self.report);
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// The JSON summary (schema `edgeload-report/1` plus the extra key).
    pub fn to_json(&self) -> Value {
        let mut v = json::to_json(&self.report);
        if let Value::Object(m) = &mut v {
            m.insert(self.key.to_owned(), self.extra.clone());
        }
        v
    }

    /// Writes the files asked for; the HDR and HTML files are the common ones.
    pub fn write(&self, files: &OutputFiles) -> Result<(), WriteError> {
        if let Some(p) = &files.json {
            let text = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
            std::fs::write(p, text).map_err(|error| WriteError {
                path: p.display().to_string(),
                error,
            })?;
        }
        OutputFiles {
            json: None,
            ..files.clone()
        }
        .write(&self.report)
    }
}
