//! What a user probably meant: the known word nearest to a mistyped one (`servics` ->
//! `services`, `1.5.1` -> `v1.5.1`), for error messages that say what to do next.

/// The candidate nearest to `word` by edit distance, when it is within a third of the word's
/// length (at least 1); ties go to the first in `candidates`' order.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let d = distance(word, candidate);
        if d <= limit && best.is_none_or(|(least, _)| d < least) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Edit distance counting a swap of two neighbours as one edit (`valeu` is one from `value`).
pub fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_word_within_a_third_of_its_length() {
        assert_eq!(distance("valeu", "value"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(nearest("servics", ["name", "services", "workers"]), Some("services"));
        assert_eq!(nearest("1.5.1", ["v1.4.0", "v1.5.1", "latest"]), Some("v1.5.1"));
        assert_eq!(nearest("foo", ["services", "name"]), None);
        assert_eq!(nearest("ab", ["ac", "ab"]), Some("ab"), "the nearest, not the first within reach");
        assert_eq!(nearest("ax", ["ab", "ac"]), Some("ab"), "ties go to the first");
        // A third of 9 characters is 3 edits, and no more.
        assert_eq!(nearest("abcdefghi", ["abcdefxyz"]), Some("abcdefxyz"));
        assert_eq!(nearest("abcdefghi", ["abcdewxyz"]), None);
    }
}
