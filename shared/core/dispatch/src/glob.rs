//! Stream-name patterns: `*` is one path segment (any characters but `/`), `**` is zero
//! or more whole segments; anything else is literal.

/// Checks a pattern: segments of `**` alone, others without a `**` inside.
pub fn check(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("pattern must not be empty".into());
    }
    if pattern.starts_with('/') || pattern.ends_with('/') {
        return Err(format!(
            "pattern `{pattern}` must not start or end with `/`"
        ));
    }
    for segment in pattern.split('/') {
        if segment.is_empty() {
            return Err(format!("pattern `{pattern}` has an empty segment"));
        }
        if segment.contains("**") && segment != "**" {
            return Err(format!("pattern `{pattern}`: `**` must be a whole segment"));
        }
    }
    Ok(())
}

/// Whether `name` matches `pattern`: a table over (pattern segment, name segment), so any
/// number of `**` costs at most segments × segments steps.
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let name: Vec<&str> = name.split('/').collect();
    // done[j]: the pattern so far matches exactly the first j name segments.
    let mut done = vec![false; name.len() + 1];
    done[0] = true;
    for segment in &pattern {
        let mut next = vec![false; name.len() + 1];
        if *segment == "**" {
            let mut reachable = false;
            for j in 0..=name.len() {
                reachable |= done[j];
                next[j] = reachable;
            }
        } else {
            for j in 0..name.len() {
                if done[j] && segment_matches(segment, name[j]) {
                    next[j + 1] = true;
                }
            }
        }
        done = next;
    }
    done[name.len()]
}

/// `*` within one segment matches any run of characters.
fn segment_matches(pattern: &str, segment: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = segment.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The literal part of `pattern` before its first wildcard: every name it matches starts
/// with it (what a token's scope must cover).
pub fn literal_prefix(pattern: &str) -> &str {
    pattern.find('*').map_or(pattern, |at| &pattern[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_star_is_one_segment_two_are_any_number() {
        assert!(matches("events/*", "events/abc"));
        assert!(!matches("events/*", "events/a/b"));
        assert!(!matches("events/*", "events"));
        assert!(matches("events/**", "events"));
        assert!(matches("events/**", "events/a/b"));
        assert!(matches("**/x", "a/b/x"));
        assert!(matches("chat-*", "chat-42"));
        assert!(!matches("chat-*", "chats/42"));
        assert!(matches("a/*-log/**", "a/x-log/1/2"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(matches("a*b*c", "abxbc"));
        assert!(!matches("a*b*c", "acb"));
        // Many `**` against a deep name: linear in each, not exponential.
        let deep = vec!["x"; 200].join("/");
        let pattern = format!("{}/y", vec!["**"; 50].join("/"));
        assert!(!matches(&pattern, &deep));
        assert!(matches(&pattern, &format!("{deep}/y")));
    }

    #[test]
    fn bad_patterns_are_named() {
        assert!(check("events/*").is_ok());
        assert!(check("").is_err());
        assert!(check("a//b").unwrap_err().contains("empty segment"));
        assert!(check("a/x**").unwrap_err().contains("whole segment"));
        assert!(check("/a").is_err());
        assert_eq!(literal_prefix("chat-*"), "chat-");
        assert_eq!(literal_prefix("a/b"), "a/b");
    }
}
