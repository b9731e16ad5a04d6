//! Kafka's `sasl.jaas.config` values: one JAAS login module with its options, e.g.
//! `org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="…";`.
//!
//! A broker reads two things from them, as Kafka does: the credentials it presents when it
//! connects to other brokers or controllers (`username`, `password`), and, for PLAIN, the
//! users its listener accepts (`user_<name>="<password>"`).

use std::collections::BTreeMap;

/// The login modules Weir understands, by the mechanism they serve.
const MODULES: &[(&str, &str)] = &[
    ("org.apache.kafka.common.security.plain.PlainLoginModule", "PLAIN"),
    ("org.apache.kafka.common.security.scram.ScramLoginModule", "SCRAM"),
];

/// A parsed `sasl.jaas.config`. Its `Debug` leaves out every value, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct JaasConfig {
    pub module: String,
    options: BTreeMap<String, String>,
}

impl std::fmt::Debug for JaasConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JaasConfig").field("module", &self.module).field("options", &self.options.keys()).finish()
    }
}

impl JaasConfig {
    /// Parses one login module entry: `CLASS FLAG (key=value)* ;`. Values may be quoted
    /// (`"…"` with `\"` and `\\` escapes) or bare words.
    pub fn parse(text: &str) -> Result<JaasConfig, String> {
        let mut tokens = Tokens { rest: text.trim() };
        let module = tokens.word().ok_or("sasl.jaas.config: expected a login module class name")?;
        if !MODULES.iter().any(|(m, _)| *m == module) {
            return Err(format!(
                "sasl.jaas.config: login module '{module}' is not supported (PlainLoginModule or ScramLoginModule)"
            ));
        }
        let flag = tokens.word().ok_or("sasl.jaas.config: expected a control flag after the class name")?;
        if !["required", "requisite", "sufficient", "optional"].contains(&flag.to_ascii_lowercase().as_str()) {
            return Err(format!("sasl.jaas.config: '{flag}' is not a control flag (e.g. required)"));
        }
        let mut options = BTreeMap::new();
        loop {
            if tokens.semicolon() {
                break;
            }
            let key = tokens.word().ok_or("sasl.jaas.config: expected key=value or ';'")?;
            if !tokens.equals() {
                return Err(format!("sasl.jaas.config: option '{key}' has no '='"));
            }
            let value = tokens.value().ok_or_else(|| format!("sasl.jaas.config: option '{key}' has no value"))?;
            options.insert(key, value);
        }
        if !tokens.rest.trim().is_empty() {
            return Err("sasl.jaas.config: expected exactly one login module".into());
        }
        Ok(JaasConfig { module, options })
    }

    /// The mechanism family of the module: "PLAIN" or "SCRAM".
    pub fn family(&self) -> &'static str {
        MODULES.iter().find(|(m, _)| *m == self.module).map_or("", |(_, f)| f)
    }

    /// The credentials this broker presents: (`username`, `password`).
    pub fn credentials(&self) -> Option<(String, String)> {
        Some((self.options.get("username")?.clone(), self.options.get("password")?.clone()))
    }

    /// PLAIN's `user_<name>="<password>"` entries: the users a listener accepts.
    pub fn plain_users(&self) -> BTreeMap<String, String> {
        self.options.iter().filter_map(|(k, v)| Some((k.strip_prefix("user_")?.to_string(), v.clone()))).collect()
    }
}

struct Tokens<'a> {
    rest: &'a str,
}

impl Tokens<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn word(&mut self) -> Option<String> {
        self.skip_space();
        let end =
            self.rest.find(|c: char| c.is_whitespace() || c == '=' || c == ';' || c == '"').unwrap_or(self.rest.len());
        (end > 0).then(|| {
            let (w, rest) = self.rest.split_at(end);
            self.rest = rest;
            w.to_string()
        })
    }

    fn punct(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn equals(&mut self) -> bool {
        self.punct('=')
    }

    fn semicolon(&mut self) -> bool {
        self.punct(';')
    }

    fn value(&mut self) -> Option<String> {
        self.skip_space();
        let Some(quoted) = self.rest.strip_prefix('"') else { return self.word() };
        let mut out = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &quoted[i + 1..];
                    return Some(out);
                }
                '\\' => out.push(chars.next()?.1),
                c => out.push(c),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_jaas_entries() {
        let scram = JaasConfig::parse(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="s3cr\"et";"#,
        )
        .unwrap();
        assert_eq!(scram.family(), "SCRAM");
        assert_eq!(scram.credentials(), Some(("broker".into(), "s3cr\"et".into())));
        let plain = JaasConfig::parse(
            "org.apache.kafka.common.security.plain.PlainLoginModule required\n username=admin password=\"a b\"\n \
             user_admin=\"a b\" user_alice=\"alice-secret\" ;",
        )
        .unwrap();
        assert_eq!(plain.credentials(), Some(("admin".into(), "a b".into())));
        assert_eq!(plain.plain_users().get("alice").map(String::as_str), Some("alice-secret"));
        assert_eq!(plain.plain_users().len(), 2);
        assert!(!format!("{plain:?}").contains("alice-secret"), "Debug shows no value");
    }

    #[test]
    fn refuses_what_kafka_refuses() {
        for bad in [
            "",
            "com.example.Krb5LoginModule required;",
            "org.apache.kafka.common.security.plain.PlainLoginModule username=\"a\";",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a\"",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username;",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a;",
            "org.apache.kafka.common.security.plain.PlainLoginModule required; org.apache.kafka.common.security.plain.PlainLoginModule required;",
        ] {
            assert!(JaasConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
