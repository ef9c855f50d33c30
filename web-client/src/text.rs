//! Small pieces of English the pages show, kept where a host test reaches
//! them: counts with the right form of their noun.

/// `n` and its noun, singular for one: "1 fridge", "3 fridges".
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The landing page's line about the rooms the server keeps.
pub fn fridges_kept(stored: u64) -> String {
    let verb = if stored == 1 { "is" } else { "are" };
    format!(
        "{} {verb} kept on this server.",
        counted(stored, "fridge", "fridges")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_fridge_is_kept_and_two_fridges_are() {
        assert_eq!(fridges_kept(1), "1 fridge is kept on this server.");
        assert_eq!(fridges_kept(2), "2 fridges are kept on this server.");
        assert_eq!(counted(0, "word", "words"), "0 words");
    }
}
