//! `ssl.principal.mapping.rules` (KIP-371): how a certificate's subject becomes a principal
//! name. Rules are tried in order; `DEFAULT` keeps the whole RFC 2253 subject, and
//! `RULE:pattern/replacement/[LU]` applies when `pattern` matches the whole subject, giving
//! `replacement` with `$1`… filled in from the pattern's groups, lower- or upper-cased with
//! `L` or `U`. A subject no rule matches is refused, as Kafka refuses it.

use regex::Regex;

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace { pattern: Regex, replacement: String, case: Case },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// The parsed rules of `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl Default for PrincipalMapper {
    fn default() -> PrincipalMapper {
        PrincipalMapper { rules: vec![Rule::Default] }
    }
}

impl PrincipalMapper {
    pub fn parse(text: &str) -> Result<PrincipalMapper, String> {
        let invalid = |why: &str| format!("ssl.principal.mapping.rules: {why} in '{text}'");
        let mut rules = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) =
                    until_slash(after).ok_or_else(|| invalid("a rule's pattern has no closing '/'"))?;
                let (replacement, after) =
                    until_slash(after).ok_or_else(|| invalid("a rule's replacement has no closing '/'"))?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Case::Lower, &after[1..]),
                    Some('U') => (Case::Upper, &after[1..]),
                    _ => (Case::Keep, after),
                };
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| invalid(&format!("pattern '{pattern}' is not a regular expression ({e})")))?;
                rules.push(Rule::Replace { pattern, replacement: replacement.to_string(), case });
                rest = after;
            } else {
                return Err(invalid("expected DEFAULT or RULE:pattern/replacement/[LU]"));
            }
            // anything up to the next comma belongs to the rule just read (Kafka's lazy `.*?`)
            rest = rest.split_once(',').map_or("", |(_, next)| next).trim_start();
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(PrincipalMapper { rules })
    }

    /// The principal of a verified certificate: its RFC 2253 subject, mapped by the rules.
    pub fn principal(&self, cert: &rustls::pki_types::CertificateDer<'_>) -> Result<super::Principal, String> {
        let subject = super::tls::certificate_subject(cert).ok_or("the certificate's subject cannot be read")?;
        self.name(&subject).map(super::Principal::user)
    }

    /// The principal name for the certificate subject `dn`, or why none.
    pub fn name(&self, dn: &str) -> Result<String, String> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(dn.to_string()),
                Rule::Replace { pattern, replacement, case } => {
                    let Some(groups) = pattern.captures(dn) else { continue };
                    let name = expand(replacement, &groups);
                    return Ok(match case {
                        Case::Keep => name,
                        Case::Lower => name.to_lowercase(),
                        Case::Upper => name.to_uppercase(),
                    });
                }
            }
        }
        Err(format!("no ssl.principal.mapping.rules rule applies to {dn}"))
    }
}

/// Splits at the first '/' not escaped by a backslash (escapes stay, for the regex).
fn until_slash(text: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '/' if !escaped => return Some((&text[..i], &text[i + 1..])),
            _ => escaped = false,
        }
    }
    None
}

/// Java's replacement syntax: `$n` is group n (the longest number that names a group; a `$n`
/// naming no group stays literal, as Kafka keeps it), `\c` is `c`.
fn expand(replacement: &str, groups: &regex::Captures<'_>) -> String {
    let count = groups.len() - 1;
    let mut out = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '$' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    let longer: usize = format!("{digits}{d}").parse().unwrap_or(usize::MAX);
                    if !digits.is_empty() && longer > count {
                        break;
                    }
                    digits.push(*d);
                    chars.next();
                }
                let n: usize = digits.parse().unwrap_or(usize::MAX);
                match (n <= count).then(|| groups.get(n)).flatten() {
                    Some(m) => out.push_str(m.as_str()),
                    None if n <= count => {}
                    None => out.push_str(&format!("${digits}")),
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_documentation_examples() {
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\n RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, \
             RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            m.name("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown").unwrap(),
            "serviceuser"
        );
        assert_eq!(
            m.name("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown").unwrap(),
            "adminuser@admin"
        );
        assert_eq!(m.name("OU=x,cn=Broker1.example").unwrap(), "broker1.example");
        assert_eq!(m.name("O=nobody").unwrap(), "O=nobody");
        assert_eq!(PrincipalMapper::parse("RULE:^CN=(.*?),.*$/$1/U").unwrap().name("CN=ab,O=x").unwrap(), "AB");
    }

    #[test]
    fn no_matching_rule_is_an_error_and_bad_rules_are_refused() {
        let m = PrincipalMapper::parse("RULE:^CN=(.*?),O=Weir$/$1/").unwrap();
        assert_eq!(m.name("CN=broker,O=Weir").unwrap(), "broker");
        assert!(m.name("CN=broker,O=Other").is_err());
        assert_eq!(PrincipalMapper::parse("").unwrap().name("CN=a").unwrap(), "CN=a");
        assert!(PrincipalMapper::parse("RULE:^CN=(.*$/x/").is_err());
        assert!(PrincipalMapper::parse("RULE:abc").is_err());
        assert!(PrincipalMapper::parse("WHATEVER").is_err());
        // an escaped slash belongs to the pattern; a group number past the last group is literal
        let m = PrincipalMapper::parse(r"RULE:^CN=a\/b$/x$2\$/").unwrap();
        assert_eq!(m.name("CN=a/b").unwrap(), "x$2$");
    }
}
