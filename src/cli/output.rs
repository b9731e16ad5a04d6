//! What a command prints: a table for people, JSON (stable field names, docs/cli.md) for
//! scripts.

use serde_json::Value;

/// `--format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Text,
    /// One JSON document (JSON lines for `consume`).
    Json,
}

/// A command's result: its JSON form, its text form and its exit code.
pub struct Outcome {
    pub json: Value,
    pub text: String,
    pub exit: i32,
}

impl Outcome {
    pub fn new(json: Value, text: String) -> Outcome {
        Outcome { json, text, exit: 0 }
    }

    /// Nothing more to print (a streaming command printed as it went).
    pub fn printed() -> Outcome {
        Outcome { json: Value::Null, text: String::new(), exit: 0 }
    }

    /// Prints to stdout; a closed pipe (`| head`) is not an error worth a panic.
    pub fn print(&self, format: Format) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = match format {
            Format::Json if !self.json.is_null() => writeln!(out, "{}", self.json),
            Format::Text if !self.text.is_empty() => write!(out, "{}", self.text),
            _ => Ok(()),
        };
        let _ = out.flush();
    }
}

/// Left-aligned columns, two spaces apart, a header row in capitals.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
            let mut text = String::new();
            for (i, cell) in cells.enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                text.push_str(&format!("{cell:<w$}  "));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut out, &mut self.headers.iter().copied());
        for row in &self.rows {
            line(&mut out, &mut row.iter().map(String::as_str));
        }
        out
    }
}

/// `-` for a missing value in a table.
pub fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A list of ids as `1,2,3`.
pub fn ids(list: &[i32]) -> String {
    list.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", "N"]);
        t.row(vec!["orders".into(), "12".into()]);
        t.row(vec!["a".into(), "3".into()]);
        assert_eq!(t.render(), "NAME    N\norders  12\na       3\n");
    }
}
