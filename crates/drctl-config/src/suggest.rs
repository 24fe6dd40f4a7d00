//! "Did you mean …?" suggestions for misspelt keys, tiers and region names.
//!
//! Owns only the similarity rule; callers decide what the candidates are and
//! how to phrase the hint.

/// Below this Jaro–Winkler similarity a candidate is more likely a different
/// word than a typo of it; 0.7 is what clap uses for the same purpose.
const MIN_SIMILARITY: f64 = 0.7;

/// The candidate most similar to `input`, if any is similar enough.
pub(crate) fn did_you_mean<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let input = input.to_lowercase();
    let mut best: Option<(f64, &'a str)> = None;
    for candidate in candidates {
        let lower = candidate.to_lowercase();
        // Jaro–Winkler rates shared prefixes ("colour" → "cluster") but
        // scores a swap in a short word poorly ("hto" vs "hot": 0.56); one
        // edit away is a typo whatever the length.
        let one_edit = strsim::damerau_levenshtein(&input, &lower) == 1;
        let score = strsim::jaro_winkler(&input, &lower).max(if one_edit { 0.9 } else { 0.0 });
        // Strictly greater keeps the first of equally good candidates, so the
        // suggestion follows file/schema order and is stable.
        let better = match best {
            Some((best_score, _)) => score > best_score,
            None => true,
        };
        if score >= MIN_SIMILARITY && better {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// `did you mean "x"?` for the best candidate, if any.
pub(crate) fn hint<'a, I>(input: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    did_you_mean(input, candidates).map(|c| format!("did you mean \"{c}\"?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let service_keys = [
            "name", "tier", "regions", "primary", "cluster", "rpo", "rto", "health", "postgres",
        ];
        assert_eq!(did_you_mean("colour", service_keys), Some("cluster"));
        assert_eq!(did_you_mean("regoins", service_keys), Some("regions"));
        assert_eq!(did_you_mean("hott", ["hot", "warm", "cold"]), Some("hot"));
        assert_eq!(did_you_mean("hto", ["hot", "warm", "cold"]), Some("hot"));
        assert_eq!(
            did_you_mean("us-eats", ["eu-west", "us-east"]),
            Some("us-east")
        );
        assert_eq!(did_you_mean("ap-south", ["eu-west", "us-east"]), None);
        assert_eq!(did_you_mean("zzz", ["hot", "warm", "cold"]), None);
    }
}
