//! Did-you-mean: the closest known name to a misspelt one.

/// The label of a suggestion.
pub fn did_you_mean(best: &str) -> String {
    format!("did you mean `{best}`?")
}

/// The closest of `candidates` to `name`, if one is close enough to be a typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(distance, c)| *distance <= (c.len().max(name.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::suggest;

    #[test]
    fn suggestions_catch_typos_but_not_strangers() {
        let keys = ["allowedTools", "deniedTools", "constraints"];
        assert_eq!(suggest("alowedTools", keys), Some("allowedTools"));
        assert_eq!(suggest("AllowedTools", keys), Some("allowedTools"));
        assert_eq!(suggest("deniedtool", keys), Some("deniedTools"));
        assert_eq!(suggest("banana", keys), None);
    }
}
